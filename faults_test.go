package autorefresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// The fault matrix: for each fault, 200 workers send requests through one
// Transport for a while with short-lived tokens (several expiries), first
// while the fault is on, then after it is healed. Each case states what may
// fail while the fault is on, and every case checks that:
//   - no request gets another request's response,
//   - no goroutine is left behind,
//   - no refresh token is used twice (except where the fault is a reuse),
//   - once healed (where the fault heals), no request fails.

// The token lifetime is long enough that a request delayed by a loaded
// machine (200 workers under -race on two shared cores) still arrives
// before the token it carries expires: a refreshed token has at least half
// its lifetime left.
const (
	faultWorkers = 200
	faultTTL     = 3 * time.Second
	faultPhase   = 3 * time.Second // a token lifetime: two refreshes ahead of expiry per phase
)

// outcome counts what happened to the requests of one phase.
type outcome struct {
	mu       sync.Mutex
	requests int
	ok       int
	mixups   int            // a response that echoed another request's body
	failures map[string]int // by class
}

func (o *outcome) add(class string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests++
	switch class {
	case "ok":
		o.ok++
	case "mixup":
		o.mixups++
	default:
		o.failures[class]++
	}
}

func (o *outcome) failed() int { return o.requests - o.ok }

func (o *outcome) String() string {
	return fmt.Sprintf("%d requests, %d ok, %d mixed up, failures %v", o.requests, o.ok, o.mixups, o.failures)
}

// classify names the kind of a request's failure.
func classify(err error) string {
	var re *autorefresh.RefreshError
	switch {
	case errors.Is(err, autorefresh.ErrSessionExpired):
		return "session expired"
	case errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &re):
		return "caller deadline"
	case errors.As(err, &re):
		return "refresh error"
	}
	return "other: " + err.Error()
}

// recordingStore is a MemoryStore that counts Saves and Clears and can be
// made to fail its Saves.
type recordingStore struct {
	autorefresh.MemoryStore
	saves, clears atomic.Int64
	failSaves     atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (s *recordingStore) Save(ctx context.Context, t autorefresh.Tokens) error {
	s.saves.Add(1)
	if s.failSaves.Load() {
		return errDiskFull
	}
	return s.MemoryStore.Save(ctx, t)
}

func (s *recordingStore) Clear(ctx context.Context) error {
	s.clears.Add(1)
	return s.MemoryStore.Clear(ctx)
}

// events collects the Transport's refresh events.
type events struct {
	mu   sync.Mutex
	list []autorefresh.RefreshEvent
}

func (e *events) add(ev autorefresh.RefreshEvent) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *events) count(f func(autorefresh.RefreshEvent) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.list {
		if f(ev) {
			n++
		}
	}
	return n
}

// faultEnv is what a case sees.
type faultEnv struct {
	srv    *autorefreshtest.Server
	tr     *autorefresh.Transport
	store  *recordingStore
	events *events
	// callerTimeout, if set, bounds each request of the fault phase.
	callerTimeout time.Duration
	// apiBefore is the server's count of API calls when the fault phase
	// starts.
	apiBefore int64
}

// drive runs faultWorkers workers for d and returns their outcome.
func (env *faultEnv) drive(t *testing.T, d time.Duration, timeout time.Duration) *outcome {
	client := autorefresh.NewClient(http.DefaultClient, env.tr)
	o := &outcome{failures: map[string]int{}}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range faultWorkers {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				o.add(echo(client, env.srv.URL, fmt.Sprintf("worker %d request %d", w, i), w%2 == 0, timeout))
			}
		})
	}
	wg.Wait()
	return o
}

// echo posts body to /api/echo and checks that the answer echoes it. Half
// the requests have a body without GetBody, so that replays use the buffer.
func echo(c *http.Client, base, body string, rewindable bool, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var r io.Reader = strings.NewReader(body)
	if !rewindable {
		r = struct{ io.Reader }{r}
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/echo", r)
	resp, err := c.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	var got struct{ Body string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return "other: " + err.Error()
	}
	if got.Body != body {
		return "mixup"
	}
	return "ok"
}

// faultCheck checks the outcome of a fault matrix case's fault phase.
type faultCheck func(*testing.T, *faultEnv, *outcome)

// faultCase is one row of the fault matrix.
type faultCase struct {
	name   string
	opts   autorefreshtest.Options
	setup  func(*faultEnv) // before the fault phase
	inject func(*faultEnv) // starts the fault phase
	heal   func(*faultEnv) // nil: the fault does not heal, no second phase
	check  faultCheck
}

func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		autorefresh.CannotRun(t, "-short: the fault matrix takes about a minute")
	}
	for _, tt := range faultCases() {
		t.Run(tt.name, func(t *testing.T) { runFaultCase(t, tt) })
	}
}

func faultCases() []faultCase {
	return []faultCase{
		{
			name:   "healthy",
			inject: func(*faultEnv) {},
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				if o.failed() != 0 {
					t.Errorf("outcome: %v; want no failures", o)
				}
			},
		},
		{
			name:   "refresh slower than RefreshTimeout",
			setup:  func(env *faultEnv) { env.tr.RefreshTimeout = 500 * time.Millisecond },
			inject: func(env *faultEnv) { env.srv.SetRefreshLatency(5 * time.Second) },
			heal:   func(env *faultEnv) { env.srv.SetRefreshLatency(0) },
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				onlyTransient("refresh error")(t, env, o)
				if n := env.events.count(func(e autorefresh.RefreshEvent) bool { return errors.Is(e.Err, context.DeadlineExceeded) }); n == 0 {
					t.Error("no refresh timed out")
				}
			},
		},
		{
			name:   "5xx for a while",
			inject: func(env *faultEnv) { env.srv.FailRefresh(20, 503) },
			heal:   func(env *faultEnv) { env.srv.FailRefresh(0, 0) },
			check:  faultsHit(onlyTransient("refresh error")),
		},
		{
			name:   "connection dropped mid-response",
			inject: func(env *faultEnv) { env.srv.SetRefreshFault(autorefreshtest.FaultDropConnection, 5) },
			heal:   func(env *faultEnv) { env.srv.ResetFaults() },
			check:  faultsHit(onlyTransient("refresh error")),
		},
		{
			name:   "malformed JSON",
			inject: func(env *faultEnv) { env.srv.SetRefreshFault(autorefreshtest.FaultMalformedJSON, 5) },
			heal:   func(env *faultEnv) { env.srv.ResetFaults() },
			check:  faultsHit(onlyTransient("refresh error")),
		},
		{
			name:   "JSON without an access token",
			inject: func(env *faultEnv) { env.srv.SetRefreshFault(autorefreshtest.FaultNoAccessToken, 5) },
			heal:   func(env *faultEnv) { env.srv.ResetFaults() },
			check:  faultsHit(onlyTransient("refresh error")),
		},
		{
			name:   "10 MiB response",
			inject: func(env *faultEnv) { env.srv.SetRefreshFault(autorefreshtest.FaultHugeBody, -1) },
			heal:   func(env *faultEnv) { env.srv.ResetFaults() },
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				faultsHit(onlyTransient("refresh error"))(t, env, o)
				if n := env.events.count(func(e autorefresh.RefreshEvent) bool {
					return e.Err != nil && strings.Contains(e.Err.Error(), "larger than")
				}); n == 0 {
					t.Error("no refresh failed for its size; want the read bounded")
				}
			},
		},
		{
			name: "refresh rejected",
			inject: func(env *faultEnv) {
				env.srv.SetRefreshLatency(300 * time.Millisecond)
				env.srv.RevokeAll()
			},
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				// The API refuses the tokens at once and the refresh is
				// slowed down, so every worker's next request is refused
				// and waits for it.
				sessionEnds(faultWorkers)(t, env, o)
				if n := env.srv.Stats().RefreshRejections; n != 1 {
					t.Errorf("refresh rejections = %d; want 1 (one call for everyone)", n)
				}
			},
		},
		{
			name: "refresh token reused by another client",
			opts: autorefreshtest.Options{RevokeOnReuse: true},
			inject: func(env *faultEnv) {
				// Another client holding the same pair refreshes first.
				env.srv.SetRefreshLatency(300 * time.Millisecond)
				refreshElsewhere(env)
			},
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				// The tokens stay good until the refresh ahead of expiry,
				// in the background, is refused as a reuse: only the
				// requests sent with them and refused after it fail
				// with ErrSessionExpired.
				sessionEnds(1)(t, env, o)
				if n := env.srv.Stats().ReuseRejections; n != 1 {
					t.Errorf("reuse rejections = %d; want 1", n)
				}
			},
		},
		{
			name:   "API refuses every request even after refresh",
			inject: func(env *faultEnv) { env.srv.SetAPIReject(true) },
			heal:   func(env *faultEnv) { env.srv.SetAPIReject(false) },
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				eachSentTwiceWithSharedRefreshes(t, env, o)
				onlyTransient("status 403")(t, env, o)
			},
		},
		{
			name: "callers give up while waiting for the shared refresh",
			inject: func(env *faultEnv) {
				env.srv.SetRefreshLatency(200 * time.Millisecond)
				env.callerTimeout = 50 * time.Millisecond
			},
			heal: func(env *faultEnv) { env.srv.SetRefreshLatency(0); env.callerTimeout = 0 },
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				onlyTransient("caller deadline")(t, env, o)
				if n := env.events.count(func(e autorefresh.RefreshEvent) bool { return e.Err != nil }); n != 0 {
					t.Errorf("%d refreshes failed; want every shared refresh to complete though its callers left", n)
				}
				cancelledCallerLeavesAtOnce(t, env.srv)
			},
		},
		{
			name:   "store Save fails",
			inject: func(env *faultEnv) { env.store.failSaves.Store(true) },
			heal:   func(env *faultEnv) { env.store.failSaves.Store(false) },
			check: func(t *testing.T, env *faultEnv, o *outcome) {
				if o.failed() != 0 {
					t.Errorf("outcome: %v; want no failures (the new tokens are used in memory)", o)
				}
				reported := env.events.count(func(e autorefresh.RefreshEvent) bool { return errors.Is(e.StoreErr, errDiskFull) })
				if reported == 0 {
					t.Error("no refresh event reported the failed Save")
				}
			},
		},
	}
}

// runFaultCase runs one case of the fault matrix: it primes a Transport,
// drives the load with the fault on, checks the outcome and, where the
// fault heals, drives the load again once healed.
func runFaultCase(t *testing.T, tt faultCase) {
	autorefresh.CheckGoroutines(t)
	env := newFaultEnv(t, tt.opts)
	if tt.setup != nil {
		tt.setup(env)
	}

	// Prime the transport, then break things and drive the load.
	if got := echo(autorefresh.NewClient(nil, env.tr), env.srv.URL, "prime", true, 5*time.Second); got != "ok" {
		t.Fatalf("priming request: %s", got)
	}
	env.apiBefore = env.srv.Stats().APICalls
	tt.inject(env)
	timeout := cmpOr(env.callerTimeout, 10*time.Second)
	during := env.drive(t, faultPhase, timeout)
	t.Logf("fault on: %v; server %+v; transport %+v", during, env.srv.Stats(), env.tr.Stats())
	if during.mixups != 0 {
		t.Errorf("%d responses belonged to another request", during.mixups)
	}
	tt.check(t, env, during)

	if tt.heal != nil {
		tt.heal(env)
		healedPhase(t, env)
	}
	if n := env.srv.Stats().ReuseRejections; n != 0 && !tt.opts.RevokeOnReuse {
		t.Errorf("refresh token reuses = %d; want 0", n)
	}
}

// newFaultEnv starts a test server with opts (and the matrix's token
// lifetime) and a Transport on a store holding a fresh pair.
func newFaultEnv(t *testing.T, opts autorefreshtest.Options) *faultEnv {
	t.Helper()
	opts.AccessTTL = faultTTL
	srv := autorefreshtest.NewServer(opts)
	t.Cleanup(srv.Close)
	env := &faultEnv{srv: srv, store: &recordingStore{}, events: &events{}}
	env.store.MemoryStore.Save(context.Background(), srv.Issue("alice"))
	base := &http.Transport{MaxIdleConnsPerHost: faultWorkers}
	t.Cleanup(base.CloseIdleConnections)
	env.tr = &autorefresh.Transport{
		Base:      base,
		Store:     env.store,
		Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		OnRefresh: env.events.add,
	}
	return env
}

// healedPhase drives the load once the fault is healed and checks that no
// request fails and that the store holds the pair in use.
func healedPhase(t *testing.T, env *faultEnv) {
	t.Helper()
	// A refresh held back after failures is tried again
	// within half a second: once one request went through,
	// none may fail.
	waitFor(t, "a request to succeed after healing", func() bool {
		return echo(autorefresh.NewClient(nil, env.tr), env.srv.URL, "probe", true, 10*time.Second) == "ok"
	})
	after := env.drive(t, faultPhase, 10*time.Second)
	t.Logf("healed: %v", after)
	if after.failed() != 0 {
		t.Errorf("after healing: %v; want no failures", after)
	}
	// Whatever the fault, the store ends up with the pair in use.
	mem, _ := env.tr.Tokens(context.Background())
	if stored, err := env.store.Load(context.Background()); err != nil || stored.AccessToken != mem.AccessToken {
		t.Errorf("after healing the store holds another pair than the one in use (%v)", err)
	}
}

// onlyTransient checks a case whose fault must not end the session:
// requests fail only with the given classes and the store is never cleared.
func onlyTransient(classes ...string) faultCheck {
	return func(t *testing.T, env *faultEnv, o *outcome) {
		t.Helper()
		allowed := map[string]bool{}
		for _, c := range classes {
			allowed[c] = true
		}
		for class, n := range o.failures {
			if !allowed[class] {
				t.Errorf("%d requests failed with %q; want only %v", n, class, classes)
			}
		}
		if n := env.store.clears.Load(); n != 0 {
			t.Errorf("store cleared %d times; want 0 (a transient fault must keep the session)", n)
		}
	}
}

// faultsHit makes a transient case fail unless its fault was injected
// at least once: a case whose fault never fired proves nothing.
func faultsHit(check faultCheck) faultCheck {
	return func(t *testing.T, env *faultEnv, o *outcome) {
		t.Helper()
		check(t, env, o)
		if n := env.srv.Stats().RefreshFaults; n == 0 {
			t.Error("the refresh endpoint never answered with the fault")
		}
	}
}

// sessionEnds checks a case whose refresh token is rejected: requests
// refused with the old tokens fail with ErrSessionExpired, at least
// minExpired of them, and the others go out without tokens.
func sessionEnds(minExpired int) faultCheck {
	return func(t *testing.T, env *faultEnv, o *outcome) {
		t.Helper()
		sessionEnded(t, env, o, minExpired)
	}
}

// refreshElsewhere spends the Transport's refresh token as another client
// holding the same pair would.
func refreshElsewhere(env *faultEnv) {
	tok, _ := env.tr.Tokens(context.Background())
	req, _ := http.NewRequest("GET", env.srv.URL+"/auth/refreshtoken", nil)
	req.Header["refreshToken"] = []string{tok.RefreshToken}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
}

// eachSentTwiceWithSharedRefreshes checks a case where the API refuses
// every request: each request of the fault phase is sent exactly twice
// (once replayed after a refresh), and the refreshes are shared.
func eachSentTwiceWithSharedRefreshes(t *testing.T, env *faultEnv, o *outcome) {
	t.Helper()
	if calls := env.srv.Stats().APICalls - env.apiBefore; calls != 2*int64(o.requests) {
		t.Errorf("API calls = %d for %d requests; want each sent exactly twice", calls, o.requests)
	}
	// Each refresh is shared by the requests refused with the
	// same tokens, so there are far fewer than requests.
	if n := env.srv.Stats().RefreshCalls; n > int64(o.requests/20)+2 {
		t.Errorf("refresh calls = %d for %d requests; want them shared (at most one per 20 requests)", n, o.requests)
	}
}

// cancelledCallerLeavesAtOnce checks, without load and on a Transport of
// its own, that a caller cancelled while it waits for a refresh leaves at
// once, before the refresh it waited for is done.
func cancelledCallerLeavesAtOnce(t *testing.T, srv *autorefreshtest.Server) {
	t.Helper()
	srv.SetRefreshLatency(time.Hour)
	own := &autorefresh.Transport{
		Store:          autorefresh.NewMemoryStore(srv.IssueTTL("alice", -time.Minute)),
		Refresher:      &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		RefreshTimeout: time.Second,
	}
	refreshCalls, refreshes := srv.Stats().RefreshCalls, srv.Stats().Refreshes
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/echo", nil)
		resp, err := autorefresh.NewClient(nil, own).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "the refresh to start", func() bool { return srv.Stats().RefreshCalls != refreshCalls })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v; want context.Canceled", err)
	}
	if n := srv.Stats().Refreshes; n != refreshes {
		t.Errorf("refreshes when the caller left = %d; want %d (it left before the refresh was done)", n, refreshes)
	}
}

// sessionEnded checks the end of a session in the fault matrix: requests
// fail only with ErrSessionExpired (at least minExpired of them) or with a
// 403 for going out without tokens, and the store was cleared once.
func sessionEnded(t *testing.T, env *faultEnv, o *outcome, minExpired int) {
	t.Helper()
	for class, n := range o.failures {
		if class != "session expired" && class != "status 403" {
			t.Errorf("%d requests failed with %q; want only session expired, or 403 without tokens", n, class)
		}
	}
	if n := o.failures["session expired"]; n < minExpired {
		t.Errorf("%d requests failed with ErrSessionExpired; want at least %d", n, minExpired)
	}
	if n := env.store.clears.Load(); n != 1 {
		t.Errorf("store cleared %d times; want exactly 1", n)
	}
	if n := env.events.count(func(e autorefresh.RefreshEvent) bool { return e.SessionEnded }); n != 1 {
		t.Errorf("session-ending refresh events = %d; want 1", n)
	}
	if _, err := env.store.Load(context.Background()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store Load after the session ended: %v; want ErrNoTokens", err)
	}
}

// waitFor polls cond every millisecond until it holds, for at most a
// minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d != 0 {
		return d
	}
	return def
}
