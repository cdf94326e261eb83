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
	"strconv"
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

	// helperFailSaves, if set to n > 0, makes a refresh child fail its
	// first n attempts to save each pair.
	helperFailSaves = "AUTOREFRESH_TEST_FAIL_SAVES"
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

// helperRoles are the bodies of the helper processes by role. Files for
// some systems add roles of their own.
var helperRoles = map[string]func() error{
	"refresh": refreshChild,
	"locker":  lockerChild,
}

// TestHelperProcess is not a test: it is the body of the helper processes,
// and does nothing unless helperEnv is set.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		return
	}
	err := fmt.Errorf("unknown helper role %q", role)
	if body, ok := helperRoles[role]; ok {
		err = body()
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
	FailedSaves int      // saves that failed (injected with helperFailSaves)
	StoreErrors int      // refresh events that reported an error of the store
	Ended       int      // refreshes that ended the session
}

func tokenHash(access string) string {
	sum := sha256.Sum256([]byte(access))
	return hex.EncodeToString(sum[:6])
}

// refreshChild loads the shared token file, says "ready", waits for "go" on
// stdin, then sends requests until it has used minGenerations access tokens
// or a request failed, and prints its childResult as JSON.
func refreshChild() error {
	c := newRefreshClient(childStore())
	// Every child holds the same tokens before any of them refreshes.
	if err := c.observe(); err != nil {
		return err
	}
	fmt.Println("ready")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); line != "go\n" {
		return fmt.Errorf("waiting for go: %q, %v", line, err)
	}
	c.run(minGenerations, maxRequests)
	if err := c.settle(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(c.result())
}

// childStore returns the store of a refresh child: the shared FileStore,
// without its lock if helperNoLock is set, or failing the first attempts to
// save each pair if helperFailSaves is set.
func childStore() autorefresh.TokenStore {
	fs := autorefresh.NewFileStore(os.Getenv(helperFile))
	if os.Getenv(helperNoLock) != "" {
		return unlockedStore{fs}
	}
	if n, _ := strconv.Atoi(os.Getenv(helperFailSaves)); n > 0 {
		return &failingSaves{FileStore: fs, fail: failEachPair(n)}
	}
	return fs
}

// refreshClient is a helper process's Transport, with what it counts.
type refreshClient struct {
	tr     *autorefresh.Transport
	client *http.Client
	base   string
	res    childResult
	seen   map[string]bool // hashes of the access tokens used

	// Refreshes ahead of expiry run in the background, beside the
	// requests: count them with atomics.
	adopted, refreshed, proactiveEnded, storeErrors, ended atomic.Int64
}

func newRefreshClient(store autorefresh.TokenStore) *refreshClient {
	c := &refreshClient{base: os.Getenv(helperURL), seen: map[string]bool{}}
	c.tr = &autorefresh.Transport{
		Store:     store,
		Refresher: &autorefresh.Endpoint{URL: c.base + "/auth/refreshtoken"},
		OnRefresh: c.count,
	}
	c.client = &http.Client{Transport: c.tr}
	return c
}

// count counts a refresh event.
func (c *refreshClient) count(ev autorefresh.RefreshEvent) {
	switch {
	case ev.Err != nil:
	case ev.Adopted:
		c.adopted.Add(1)
	default:
		c.refreshed.Add(1)
	}
	if ev.Proactive {
		c.proactiveEnded.Add(1)
	}
	if ev.StoreErr != nil {
		c.storeErrors.Add(1)
	}
	if ev.SessionEnded {
		c.ended.Add(1)
	}
}

// observe records the access token in use.
func (c *refreshClient) observe() error {
	tok, err := c.tr.Tokens(context.Background())
	if err != nil {
		return err
	}
	if h := tokenHash(tok.AccessToken); !c.seen[h] {
		c.seen[h] = true
		c.res.Generations = append(c.res.Generations, h)
	}
	return nil
}

func (c *refreshClient) fail(err error) {
	c.res.Failures++
	if c.res.FirstError == "" {
		c.res.FirstError = err.Error()
	}
}

// run sends requests until generations access tokens were used, limit
// requests were sent, or one failed.
func (c *refreshClient) run(generations, limit int) {
	for len(c.res.Generations) < generations && c.res.Requests < limit && c.res.Failures == 0 {
		c.res.Requests++
		resp, err := c.client.Get(c.base + "/api/me")
		if err != nil {
			c.fail(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			c.fail(fmt.Errorf("GET /api/me: status %d", resp.StatusCode))
			return
		}
		if err := c.observe(); err != nil {
			c.fail(err)
			return
		}
		time.Sleep(requestPause)
	}
}

// settle lets a refresh still running in the background end, so that its
// call is counted.
func (c *refreshClient) settle() error {
	for deadline := time.Now().Add(time.Minute); c.tr.Stats().ProactiveRefreshes != c.proactiveEnded.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("a refresh in the background did not end within a minute")
		}
	}
	return nil
}

// result returns what the child reports.
func (c *refreshClient) result() childResult {
	res := c.res
	res.Adopted, res.Refreshes = int(c.adopted.Load()), int(c.refreshed.Load())
	res.Ended, res.StoreErrors = int(c.ended.Load()), int(c.storeErrors.Load())
	if fs, ok := c.tr.Store.(*failingSaves); ok {
		res.FailedSaves = int(fs.failed.Load())
	}
	return res
}

// refreshRun is the outcome of runRefreshChildren.
type refreshRun struct {
	results []childResult
	stats   autorefreshtest.Stats
}

// childOptions configure the refresh children of runRefreshChildren.
type childOptions struct {
	noLock    bool          // hide the file lock
	failSaves func(int) int // how many attempts to save each pair child i fails; nil: none
}

// child is a running helper process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// runRefreshChildren runs the refresh children against one server and one
// token file.
func runRefreshChildren(t *testing.T, opts childOptions) refreshRun {
	t.Helper()
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: accessTTL})
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := autorefresh.NewFileStore(path).Save(context.Background(), srv.Issue("alice")); err != nil {
		t.Fatal(err)
	}
	var kids []child
	t.Cleanup(func() {
		for _, k := range kids {
			k.stdin.Close()
			k.cmd.Process.Kill()
			k.cmd.Wait()
		}
	})
	for i := range children {
		env := []string{helperFile + "=" + path, helperURL + "=" + srv.URL}
		if opts.noLock {
			env = append(env, helperNoLock+"=1")
		}
		if opts.failSaves != nil {
			env = append(env, helperFailSaves+"="+strconv.Itoa(opts.failSaves(i)))
		}
		kids = append(kids, startChild(t, "refresh", env))
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
		run.results = append(run.results, k.result(t, i))
	}
	kids = nil
	run.stats = srv.Stats()
	return run
}

// startChild starts a helper process of the given role, with pipes to its
// standard input and output.
func startChild(t *testing.T, role string, env []string) child {
	t.Helper()
	cmd := helperCommand(t, role, env...)
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
	return child{cmd, stdin, bufio.NewScanner(stdout)}
}

// result reads the childResult that child i prints last, and waits for it
// to exit.
func (k child) result(t *testing.T, i int) childResult {
	t.Helper()
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
	return res
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
	checkProcessRun(t, runRefreshChildren(t, childOptions{}))
}

// TestFileStoreProcessesWithFailedSaves runs the processes of
// TestFileStoreProcesses with saves that fail: every child fails its first
// attempt to save each new pair, and the children with an odd index their
// second attempt as well, as a disk that is full for a moment would. The
// Transport tries again under the lock, so no other process ever reads a
// spent pair: no refresh token is used twice and no session ends.
func TestFileStoreProcessesWithFailedSaves(t *testing.T) {
	if !autorefresh.CrossProcessLock {
		autorefresh.CannotRun(t, "FileStore.Lock does not exclude other processes on %s", runtime.GOOS)
	}
	run := runRefreshChildren(t, childOptions{failSaves: func(i int) int { return 1 + i%2 }})
	checkProcessRun(t, run)
	failed := 0
	for _, r := range run.results {
		failed += r.FailedSaves
	}
	// Every refresh at the endpoint saved a new pair, and its first
	// attempt failed.
	if int64(failed) < run.stats.Refreshes {
		t.Errorf("refreshes whose save failed first = %d; want %d, every one", failed, run.stats.Refreshes)
	}
}

// checkProcessRun checks the outcome of refresh children that share the
// file lock: no failed request, no rejected refresh, one refresh call per
// expiry crossed, and enough expiries crossed.
func checkProcessRun(t *testing.T, run refreshRun) {
	t.Helper()
	generations := map[string]bool{}
	refreshes, adopted, requests := 0, 0, 0
	for i, r := range run.results {
		if r.Failures != 0 || r.Ended != 0 {
			t.Errorf("child %d: %d failed requests, %d sessions ended; the first failure: %s", i, r.Failures, r.Ended, r.FirstError)
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
	run := runRefreshChildren(t, childOptions{noLock: true})
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
