package autorefresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

func init() { helperRoles["efbig"] = efbigChild }

// efbigChild loads the shared token file, then lowers its file size limit
// (RLIMIT_FSIZE) below the size of a token file, ignoring SIGXFSZ so that a
// write past the limit fails with EFBIG instead of killing the process: from
// then on every save fails, as on a full disk. It checks that a save does
// fail with EFBIG, then sends requests until it has used minGenerations
// access tokens or a request failed, and prints its childResult as JSON.
func efbigChild() error {
	store := autorefresh.NewFileStore(os.Getenv(helperFile))
	c := newRefreshClient(store)
	if err := c.observe(); err != nil {
		return err
	}
	signal.Ignore(syscall.SIGXFSZ)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return err
	}
	lim.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return err
	}
	tok, err := c.tr.Tokens(context.Background())
	if err != nil {
		return err
	}
	if err := store.Save(context.Background(), tok); !errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("a save under the file size limit: %v; want EFBIG", err)
	}
	c.run(minGenerations, maxRequests)
	if err := c.settle(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(c.result())
}

// TestFileStoreSaveFailsWithEFBIG runs a process whose every save of the
// token file fails with EFBIG (its file size limit is lower than a token
// file), against a server whose refresh tokens are single-use and whose
// sessions are revoked on reuse, for several token lifetimes. The process
// keeps each new pair in memory and refreshes it, never the pair in the
// file, which it spent long ago: no refresh is rejected, no request fails,
// and every refresh reports its failed save.
func TestFileStoreSaveFailsWithEFBIG(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: time.Second, RevokeOnReuse: true})
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "tokens.json")
	first := srv.Issue("alice")
	if err := autorefresh.NewFileStore(path).Save(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	k := startChild(t, "efbig", []string{helperFile + "=" + path, helperURL + "=" + srv.URL})
	t.Cleanup(func() { k.stdin.Close(); k.cmd.Process.Kill(); k.cmd.Wait() })
	k.stdin.Close()
	res := k.result(t, 0)
	st := srv.Stats()
	t.Logf("%d requests, %d access tokens used, %d refreshes, %d store errors reported", res.Requests, len(res.Generations), res.Refreshes, res.StoreErrors)
	if res.Failures != 0 || res.Ended != 0 {
		t.Errorf("%d failed requests, %d sessions ended; want 0 and 0; the first failure: %s", res.Failures, res.Ended, res.FirstError)
	}
	if len(res.Generations) < minGenerations {
		t.Errorf("access tokens used = %d; want %d", len(res.Generations), minGenerations)
	}
	if st.RefreshRejections != 0 || st.ReuseRejections != 0 || st.Revocations != 0 {
		t.Errorf("server: %d refreshes rejected, %d of them reuses, %d sessions revoked; want 0, 0, 0",
			st.RefreshRejections, st.ReuseRejections, st.Revocations)
	}
	if res.StoreErrors < res.Refreshes || res.Refreshes < 1 {
		t.Errorf("refreshes = %d, of which %d reported a store error; want at least 1, all", res.Refreshes, res.StoreErrors)
	}
	if stored, err := autorefresh.NewFileStore(path).Load(context.Background()); err != nil || stored.RefreshToken != first.RefreshToken {
		t.Errorf("the file holds another pair than the first (%v); want it never written", err)
	}
}
