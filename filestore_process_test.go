package autorefresh_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// The helper processes of these tests are this test binary, run again with
// -test.run=^TestHelperProcess$ and helperEnv naming their role.
const (
	helperEnv    = "AUTOREFRESH_TEST_HELPER"
	helperFile   = "AUTOREFRESH_TEST_TOKEN_FILE"
	helperURL    = "AUTOREFRESH_TEST_SERVER_URL"
	helperNoLock = "AUTOREFRESH_TEST_NO_LOCK"
)

// Settings of the multi-process refresh test.
const (
	children       = 8
	accessTTL      = 400 * time.Millisecond // refreshed ahead at half its life
	minGenerations = 4                      // tokens each child must have used: 3 refreshes
	maxRequests    = 2000                   // per child, a bound in case tokens stop changing
	requestPause   = 5 * time.Millisecond   // between a child's requests, to spare the CPUs
)

// helperCommand returns a command that runs this test binary as a helper
// process of the given role.
func helperCommand(t *testing.T, role string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestHelperProcess is not a test: it is the body of the helper processes,
// and does nothing unless helperEnv is set.
func TestHelperProcess(t *testing.T) {
	var err error
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "refresh":
		err = refreshChild()
	case "locker":
		err = lockerChild()
	default:
		err = fmt.Errorf("unknown helper role %q", os.Getenv(helperEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// unlockedStore is a FileStore without its Lock method, so that a
// Transport does not coordinate refreshes across processes.
type unlockedStore struct{ s *autorefresh.FileStore }

func (u unlockedStore) Load(ctx context.Context) (autorefresh.Tokens, error) { return u.s.Load(ctx) }
func (u unlockedStore) Save(ctx context.Context, t autorefresh.Tokens) error { return u.s.Save(ctx, t) }
func (u unlockedStore) Clear(ctx context.Context) error                      { return u.s.Clear(ctx) }

// childResult is what a refresh child reports on its last line of output.
// It holds hashes of the access tokens, never the tokens.
type childResult struct {
	Requests    int      // requests sent
	Failures    int      // requests that failed or were not answered 200
	FirstError  string   // the first failure
	Generations []string // hashes of the access tokens used, in order
	Refreshes   int      // refreshes this process made at the endpoint
	Adopted     int      // refreshes this process took from the file
}

func tokenHash(access string) string {
	sum := sha256.Sum256([]byte(access))
	return hex.EncodeToString(sum[:6])
}

// refreshChild loads the shared token file, says "ready", waits for "go" on
// stdin, then sends requests until it has used minGenerations access tokens
// or a request failed, and prints its childResult as JSON.
func refreshChild() error {
	var store autorefresh.TokenStore = autorefresh.NewFileStore(os.Getenv(helperFile))
	if os.Getenv(helperNoLock) != "" {
		store = unlockedStore{store.(*autorefresh.FileStore)}
	}
	base := os.Getenv(helperURL)
	var res childResult
	// Refreshes ahead of expiry run in the background, beside the
	// requests: count them with atomics.
	var adopted, refreshed, proactiveEnded atomic.Int64
	tr := &autorefresh.Transport{
		Store:     store,
		Refresher: &autorefresh.Endpoint{URL: base + "/auth/refreshtoken"},
		OnRefresh: func(ev autorefresh.RefreshEvent) {
			switch {
			case ev.Err != nil:
			case ev.Adopted:
				adopted.Add(1)
			default:
				refreshed.Add(1)
			}
			if ev.Proactive {
				proactiveEnded.Add(1)
			}
		},
	}
	client := &http.Client{Transport: tr}
	ctx := context.Background()
	seen := map[string]bool{}
	observe := func() error {
		tok, err := tr.Tokens(ctx)
		if err != nil {
			return err
		}
		if h := tokenHash(tok.AccessToken); !seen[h] {
			seen[h] = true
			res.Generations = append(res.Generations, h)
		}
		return nil
	}
	// Every child holds the same tokens before any of them refreshes.
	if err := observe(); err != nil {
		return err
	}
	fmt.Println("ready")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); line != "go\n" {
		return fmt.Errorf("waiting for go: %q, %v", line, err)
	}

	fail := func(err error) {
		res.Failures++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
	}
	for len(res.Generations) < minGenerations && res.Requests < maxRequests && res.Failures == 0 {
		res.Requests++
		resp, err := client.Get(base + "/api/me")
		if err != nil {
			fail(err)
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fail(fmt.Errorf("GET /api/me: status %d", resp.StatusCode))
			break
		}
		if err := observe(); err != nil {
			fail(err)
			break
		}
		time.Sleep(requestPause)
	}
	// Let a refresh still running in the background end, so that its
	// call is counted.
	for deadline := time.Now().Add(time.Minute); tr.Stats().ProactiveRefreshes != proactiveEnded.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("a refresh in the background did not end within a minute")
		}
	}
	res.Adopted, res.Refreshes = int(adopted.Load()), int(refreshed.Load())
	return json.NewEncoder(os.Stdout).Encode(res)
}

// refreshRun is the outcome of runRefreshChildren.
type refreshRun struct {
	results []childResult
	stats   autorefreshtest.Stats
}

// runRefreshChildren runs the refresh children against one server and one
// token file, with or without the file lock.
func runRefreshChildren(t *testing.T, lock bool) refreshRun {
	t.Helper()
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: accessTTL})
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := autorefresh.NewFileStore(path).Save(context.Background(), srv.Issue("alice")); err != nil {
		t.Fatal(err)
	}

	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
	}
	var kids []child
	t.Cleanup(func() {
		for _, k := range kids {
			k.stdin.Close()
			k.cmd.Process.Kill()
			k.cmd.Wait()
		}
	})
	env := []string{helperFile + "=" + path, helperURL + "=" + srv.URL}
	if !lock {
		env = append(env, helperNoLock+"=1")
	}
	for range children {
		cmd := helperCommand(t, "refresh", env...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		kids = append(kids, child{cmd, stdin, bufio.NewScanner(stdout)})
	}
	for i, k := range kids {
		if !k.out.Scan() || k.out.Text() != "ready" {
			t.Fatalf("child %d: got %q; want ready (%v)", i, k.out.Text(), k.out.Err())
		}
	}
	for _, k := range kids {
		io.WriteString(k.stdin, "go\n")
	}
	run := refreshRun{}
	for i, k := range kids {
		var res childResult
		if !k.out.Scan() {
			t.Fatalf("child %d ended without a result: %v", i, k.out.Err())
		}
		if err := json.Unmarshal(k.out.Bytes(), &res); err != nil {
			t.Fatalf("child %d: %v in %q", i, err, k.out.Text())
		}
		if err := k.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
		run.results = append(run.results, res)
	}
	kids = nil
	run.stats = srv.Stats()
	return run
}

// TestFileStoreProcesses runs 8 processes that share one token file and one
// server whose refresh tokens are single-use, each through its own
// Transport and FileStore, across several token lifetimes. With the file
// lock, every token is refreshed by exactly one process and the others take
// the new tokens from the file.
//
// Each refresh ends one access token's life, so the number of expiries the
// processes crossed is the number of distinct access tokens they used, less
// the first. The server must have been called exactly that many times: the
// count is taken from the tokens used rather than from the clock, so no
// tolerance is needed.
func TestFileStoreProcesses(t *testing.T) {
	if !autorefresh.CrossProcessLock {
		autorefresh.CannotRun(t, "FileStore.Lock does not exclude other processes on %s", runtime.GOOS)
	}
	run := runRefreshChildren(t, true)
	generations := map[string]bool{}
	refreshes, adopted, requests := 0, 0, 0
	for i, r := range run.results {
		if r.Failures != 0 {
			t.Errorf("child %d: %d failed requests, the first: %s", i, r.Failures, r.FirstError)
		}
		if len(r.Generations) < minGenerations {
			t.Errorf("child %d used %d access tokens in %d requests; want %d", i, len(r.Generations), r.Requests, minGenerations)
		}
		for _, g := range r.Generations {
			generations[g] = true
		}
		refreshes += r.Refreshes
		adopted += r.Adopted
		requests += r.Requests
	}
	st := run.stats
	crossed := int64(len(generations) - 1)
	t.Logf("%d children, %d requests, %d access tokens used, %d refreshes at the server, %d taken from the file",
		children, requests, len(generations), refreshes, adopted)
	if st.ReuseRejections != 0 || st.RefreshRejections != 0 {
		t.Errorf("server rejected %d refreshes, %d of them for reuse; want 0", st.RefreshRejections, st.ReuseRejections)
	}
	if st.RefreshCalls != crossed || st.Refreshes != crossed {
		t.Errorf("server refresh calls = %d (%d successful); want %d, the expiries crossed", st.RefreshCalls, st.Refreshes, crossed)
	}
	if int64(refreshes) != st.Refreshes {
		t.Errorf("children refreshed %d times; the server counted %d", refreshes, st.Refreshes)
	}
	if crossed < minGenerations-1 {
		t.Errorf("expiries crossed = %d; want at least %d", crossed, minGenerations-1)
	}
}

// TestFileStoreProcessesWithoutLock runs the processes of
// TestFileStoreProcesses with a store that hides FileStore's Lock, to show
// that the lock is what keeps them correct. Every child has loaded the first
// tokens before any starts. Without the lock each still reads the file
// before it refreshes, but nothing stops two children from reading the same
// pair and both spending its refresh token: the server sees a reuse, revokes
// the session, and children fail.
func TestFileStoreProcessesWithoutLock(t *testing.T) {
	run := runRefreshChildren(t, false)
	failed := 0
	for _, r := range run.results {
		if r.Failures > 0 {
			failed++
		}
	}
	st := run.stats
	t.Logf("without the lock: %d of %d children failed, %d refresh calls, %d reuses rejected",
		failed, children, st.RefreshCalls, st.ReuseRejections)
	if st.ReuseRejections < 1 {
		t.Errorf("reuses rejected = %d; want at least 1", st.ReuseRejections)
	}
	if failed < 1 {
		t.Errorf("%d children failed; want at least 1", failed)
	}
}

// lockerChild takes the lock of the shared token file, says "locked" and
// holds it until stdin is closed.
func lockerChild() error {
	unlock, err := autorefresh.NewFileStore(os.Getenv(helperFile)).Lock(context.Background())
	if err != nil {
		return err
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	unlock()
	return nil
}

// TestFileStoreLockAcrossProcesses checks that a lock held by another
// process keeps Lock waiting until its context ends, and that it is free
// once that process released it.
func TestFileStoreLockAcrossProcesses(t *testing.T) {
	if !autorefresh.CrossProcessLock {
		autorefresh.CannotRun(t, "FileStore.Lock does not exclude other processes on %s", runtime.GOOS)
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	cmd := helperCommand(t, "locker", helperFile+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("child said %q (%v); want locked", line, err)
	}

	s := autorefresh.NewFileStore(path)
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			unlock, err := s.Lock(ctx)
			if err == nil {
				unlock()
			}
			errc <- err
		}()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock while another process holds the lock: error = %v; want context.Canceled", err)
		}
	}
	stdin.Close() // the child unlocks and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatalf("Lock after the other process ended: %v", err)
	}
	unlock()
}
