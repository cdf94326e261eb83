package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tests of the refresh engine (refresh.go) for tokens that are due for an
// early refresh: the refresh runs in the background while requests go on
// with the token they hold, only requests whose token expired or was
// refused wait for it, and the early window is sized to the token and to
// the refresh.

// dueEnv is a protoServer whose access tokens are JWTs that live ten
// minutes on a fake clock, and a Transport that has loaded a pair issued at
// the start, with the clock moved inside the default early window (10 s
// before expiry, the window being 30 s).
type dueEnv struct {
	srv    *protoServer
	clock  *fakeClock
	tr     *Transport
	store  *countingStore
	events *eventRecorder
	tok    Tokens    // the pair the Transport holds
	exp    time.Time // its expiry

	gateOnce sync.Once
}

func newDueEnv(t *testing.T, configure ...func(*Transport)) *dueEnv {
	t.Helper()
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &dueEnv{srv: newProtoServer(t), clock: newFakeClock(issued), store: &countingStore{}, events: &eventRecorder{}}
	e.srv.jwtTTL, e.srv.jwtNow = 10*time.Minute, e.clock.now
	e.srv.refreshGate = make(chan struct{})
	// Closed before the server, so that no refresh handler holds its
	// Close up.
	t.Cleanup(e.openGate)
	e.tok = e.srv.issue()
	e.exp = issued.Add(10 * time.Minute)
	e.store.MemoryStore.Save(context.Background(), e.tok)
	e.tr = &Transport{
		Store:     e.store,
		Refresher: &Endpoint{URL: e.srv.URL + "/auth/refreshtoken"},
		OnRefresh: e.events.record,
		now:       e.clock.now,
	}
	for _, f := range configure {
		f(e.tr)
	}
	if _, err := e.tr.Tokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clock.set(e.exp.Add(-10 * time.Second))
	return e
}

// openGate lets the refreshes held at the endpoint go on.
func (e *dueEnv) openGate() { e.gateOnce.Do(func() { close(e.srv.refreshGate) }) }

// goGetStatus sends a GET for url through c in a goroutine, and returns the
// channel that gets its status (0 for an error).
func goGetStatus(t *testing.T, c *http.Client, url string) <-chan int {
	codes := make(chan int, 1)
	go func() {
		code, _ := get(t, c, url)
		codes <- code
	}()
	return codes
}

// goGetErr is goGetStatus for a request that is expected to fail: the channel
// gets its error, or nil after a response.
func goGetErr(c *http.Client, url string) <-chan error {
	errs := make(chan error, 1)
	go func() {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	return errs
}

// receive waits for a value of ch, for at most a minute, so that a bug
// hangs no test run; it asserts nothing about speed.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// TestDueTokenGoesOutWhileRefreshRuns: a request whose token is due for an
// early refresh but still valid gets its response while the refresh it
// started is held at the endpoint; a request whose token has expired waits
// for that same refresh, and goes out once, with the new token.
func TestDueTokenGoesOutWhileRefreshRuns(t *testing.T) {
	e := newDueEnv(t)
	c := NewClient(nil, e.tr)

	due := goGetStatus(t, c, e.srv.URL+"/api/x")
	if code := receive(t, due, "the response of a request with a due but valid token, while its refresh is held"); code != 200 {
		t.Fatalf("status of the request with a due token = %d; want 200", code)
	}
	waitFor(t, "the refresh to reach the endpoint", func() bool { return e.srv.refreshCalls.Load() == 1 })
	if n := e.tr.Stats().Waits; n != 0 {
		t.Errorf("requests that waited for the refresh = %d; want 0", n)
	}

	// The token expires, and the server refuses it from now on.
	e.clock.set(e.exp.Add(time.Second))
	e.srv.expireAll()
	expired := goGetStatus(t, c, e.srv.URL+"/api/x")
	waitFor(t, "the request with an expired token to wait for the refresh", func() bool { return e.tr.Stats().Waits == 1 })
	select {
	case code := <-expired:
		t.Fatalf("the request with an expired token returned %d while the refresh was held; want it to wait", code)
	default:
	}
	e.openGate()
	if code := receive(t, expired, "the request with an expired token"); code != 200 {
		t.Errorf("status of the request with an expired token = %d; want 200", code)
	}
	if n := e.srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	// Sent once, with the new token: never refused, never replayed.
	if n, r := e.srv.api403s.Load(), e.tr.Stats().Replays; n != 0 || r != 0 {
		t.Errorf("403s = %d, replays = %d; want 0 and 0", n, r)
	}
	if saved, _ := e.store.Load(context.Background()); saved == e.tok || !e.srv.valid(saved.AccessToken) {
		t.Error("the store does not hold the refreshed pair")
	}
}

// TestManyDueRequestsShareOneBackgroundRefresh sends 200 requests at once
// whose token is due but valid: every one of them is answered while the
// refresh is held, and the endpoint is called once.
func TestManyDueRequestsShareOneBackgroundRefresh(t *testing.T) {
	const n = 200
	e := newDueEnv(t)
	c := NewClient(nil, e.tr)
	burst := func() <-chan int {
		ok := make(chan int, 1)
		go func() {
			var wg sync.WaitGroup
			var good atomic.Int64
			for range n {
				wg.Go(func() {
					if code, _ := get(t, c, e.srv.URL+"/api/x"); code == 200 {
						good.Add(1)
					}
				})
			}
			wg.Wait()
			ok <- int(good.Load())
		}()
		return ok
	}
	if got := receive(t, burst(), "200 requests with a due token, while the refresh is held"); got != n {
		t.Errorf("successful requests while the refresh was held = %d; want %d", got, n)
	}
	waitFor(t, "the refresh to reach the endpoint", func() bool { return e.srv.refreshCalls.Load() >= 1 })
	if got := e.srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}
	e.openGate()
	waitFor(t, "the refresh to end", func() bool { return e.tr.Stats().Refreshes == 1 })

	// The new token is not due: no more refreshes.
	if got := receive(t, burst(), "200 requests with the new token"); got != n {
		t.Errorf("successful requests with the new token = %d; want %d", got, n)
	}
	st := e.tr.Stats()
	if got := e.srv.refreshCalls.Load(); got != 1 || st.ProactiveRefreshes != 1 {
		t.Errorf("refresh calls = %d, proactive refreshes = %d; want 1 and 1", got, st.ProactiveRefreshes)
	}
	if st.Waits != 0 || e.srv.api403s.Load() != 0 {
		t.Errorf("requests that waited = %d, 403s = %d; want 0 and 0", st.Waits, e.srv.api403s.Load())
	}
}

// idle waits until no refresh of s runs in the background. A background
// refresh is marked started before the request that starts it goes out,
// and unmarked after its result was applied, hooks and counters included.
func idle(t *testing.T, s *state) {
	t.Helper()
	waitFor(t, "the background refresh to end", func() bool { return !s.started.Load() })
}

// TestBackgroundRefreshFailureBacksOff: a refresh ahead of expiry that
// fails is not tried again, however many requests find the token due,
// until its back-off (five seconds, or half the time left) has passed;
// every request goes out with the good token meanwhile.
func TestBackgroundRefreshFailureBacksOff(t *testing.T) {
	e := newDueEnv(t)
	e.openGate()
	e.srv.refreshStatus.Store(503)
	c := NewClient(nil, e.tr)
	s := e.tr.m.cur.Load()
	burst := func(at time.Duration) {
		t.Helper()
		e.clock.set(e.exp.Add(-at))
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if code, _ := get(t, c, e.srv.URL+"/api/x"); code != 200 {
					t.Errorf("%v before expiry: status = %d; want 200", at, code)
				}
			})
		}
		wg.Wait()
		idle(t, s)
	}
	steps := []struct {
		before time.Duration // the time left on the token
		calls  int64         // refresh calls after the requests
	}{
		{20 * time.Second, 1},                   // due: one refresh, failed
		{19 * time.Second, 1},                   // backing off
		{15*time.Second + time.Millisecond, 1},  // still backing off (5 s)
		{15*time.Second - time.Millisecond, 2},  // tried again, failed
		{10*time.Second + time.Millisecond, 2},  // backing off: 5 s
		{10*time.Second - time.Millisecond, 3},  // tried again, failed
		{5*time.Second + 2*time.Millisecond, 3}, // backing off: half the 10 s left
		{5*time.Second - 2*time.Millisecond, 4}, // tried again
		{2500 * time.Millisecond, 4},            // backing off: half the 5 s left
		{2400 * time.Millisecond, 5},            // tried again
	}
	for _, st := range steps {
		burst(st.before)
		if n := e.srv.refreshCalls.Load(); n != st.calls {
			t.Errorf("%v before expiry: refresh calls = %d; want %d", st.before, n, st.calls)
		}
	}
	if n := e.tr.Stats().Waits; n != 0 {
		t.Errorf("requests that waited for a refresh = %d; want 0", n)
	}
	for i, ev := range e.events.all() {
		var re *RefreshError
		if !ev.Proactive || ev.SessionEnded || !errors.As(ev.Err, &re) || re.StatusCode != 503 {
			t.Errorf("event %d = %+v; want a proactive failure with status 503 that did not end the session", i, ev)
		}
	}
	if saved, _ := e.store.Load(context.Background()); saved != e.tok {
		t.Error("a failed refresh changed the store")
	}
}

// TestSessionEndDuringBackgroundRefresh rejects the refresh token while a
// refresh started ahead of expiry is under way: the requests refused with
// the old token meanwhile (waiting for that refresh, or answered after it)
// fail with ErrSessionExpired, the store is cleared once, and later
// requests go out without tokens.
func TestSessionEndDuringBackgroundRefresh(t *testing.T) {
	checkGoroutines(t)
	e := newDueEnv(t)
	e.srv.refreshStatus.Store(401)
	api := holdOldToken(e.srv)
	c := NewClient(nil, e.tr)

	if code := receive(t, goGetStatus(t, c, e.srv.URL+"/api/x"), "a request with a due token"); code != 200 {
		t.Fatalf("status of the request with a due token = %d; want 200", code)
	}
	waitFor(t, "the refresh to reach the endpoint", func() bool { return e.srv.refreshCalls.Load() == 1 })
	slow := goGetErr(c, e.srv.URL+"/api/slow")
	<-api.arrived

	// The server refuses the old token now: these requests are refused
	// and wait for the refresh under way.
	e.srv.expireAll()
	const n = 50
	var refused []<-chan error
	for range n {
		refused = append(refused, goGetErr(c, e.srv.URL+"/api/x"))
	}
	waitFor(t, "the refused requests to wait for the refresh", func() bool { return e.tr.Stats().Waits == n })
	e.openGate()
	for _, ch := range refused {
		err := receive(t, ch, "a refused request")
		var re *RefreshError
		if !errors.Is(err, ErrSessionExpired) || !errors.As(err, &re) || re.StatusCode != 401 {
			t.Errorf("refused request: error = %v; want a *RefreshError with status 401 wrapping ErrSessionExpired", err)
		}
	}
	close(api.release)
	if err := receive(t, slow, "the request refused after the end"); !errors.Is(err, ErrSessionExpired) {
		t.Errorf("request refused after the end: error = %v; want ErrSessionExpired", err)
	}
	checkEnded(t, e)

	// A later request goes out without tokens, and its refusal comes back.
	if code := receive(t, goGetStatus(t, c, e.srv.URL+"/api/after"), "a request after the end"); code != 403 {
		t.Errorf("status after the end = %d; want 403", code)
	}
	if n := api.withToken.Load(); n != 0 {
		t.Errorf("requests after the end that carried an access token = %d; want 0", n)
	}
	if n := e.srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls after the end = %d; want 1", n)
	}
}

// heldAPI is the state of the handler that holdOldToken installs.
type heldAPI struct {
	arrived, release chan struct{}
	withToken        atomic.Int64 // /api/after requests that carried an access token
}

// holdOldToken makes srv hold the first request to /api/slow (signalling
// arrived) until release is closed, and then refuse it with 403; and count
// the requests to /api/after that carry an access token.
func holdOldToken(srv *protoServer) *heldAPI {
	api := &heldAPI{arrived: make(chan struct{}), release: make(chan struct{})}
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/slow":
			close(api.arrived)
			<-api.release
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		case "/api/after":
			if r.Header.Get("accessToken") != "" {
				api.withToken.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})
	return api
}

// checkEnded checks that the session of e ended once: one refresh call, one
// clear, nothing stored or held, and one refresh event that ended it.
func checkEnded(t *testing.T, e *dueEnv) {
	t.Helper()
	if n := e.srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	if n := e.store.clears.Load(); n != 1 {
		t.Errorf("store clears = %d; want 1", n)
	}
	if _, err := e.store.Load(context.Background()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("store Load: %v; want ErrNoTokens", err)
	}
	if _, err := e.tr.Tokens(context.Background()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("Tokens: %v; want ErrNoTokens", err)
	}
	evs := e.events.all()
	if len(evs) != 1 || !evs[0].Proactive || !evs[0].SessionEnded || !errors.Is(evs[0].Err, ErrSessionExpired) {
		t.Errorf("events = %+v; want one proactive refresh that ended the session", evs)
	}
}

// TestBackgroundRefreshEndsByItsTimeout starts a refresh in the background
// that hangs at the endpoint, and leaves the Transport idle: the refresh
// ends by its own timeout (RefreshTimeout), as a failure that keeps the
// tokens, and no goroutine is left behind.
func TestBackgroundRefreshEndsByItsTimeout(t *testing.T) {
	checkGoroutines(t)
	e := newDueEnv(t, func(tr *Transport) { tr.RefreshTimeout = 100 * time.Millisecond })
	// The gate stays closed: the refresh hangs until its context ends.
	if code, _ := get(t, NewClient(nil, e.tr), e.srv.URL+"/api/x"); code != 200 {
		t.Fatalf("status = %d; want 200", code)
	}
	waitFor(t, "the background refresh to end", func() bool { return len(e.events.all()) == 1 })
	ev := e.events.all()[0]
	if !ev.Proactive || ev.SessionEnded || !errors.Is(ev.Err, context.DeadlineExceeded) {
		t.Errorf("event = %+v; want a proactive refresh that failed with context.DeadlineExceeded", ev)
	}
	if got, err := e.tr.Tokens(context.Background()); err != nil || got != e.tok {
		t.Errorf("Tokens = %v, %v; want the old pair kept", got, err)
	}
	if n := e.srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

// TestBackgroundRefreshAdoptsStoredPair has two Transports, as two
// processes would, share a FileStore. Both find their token due; the first
// refreshes in the background, and the second, under the store's lock, finds
// the newer pair in the file and takes it without calling the endpoint.
func TestBackgroundRefreshAdoptsStoredPair(t *testing.T) {
	e := newDueEnv(t)
	e.openGate()
	path := tokenPath(t)
	if err := NewFileStore(path).Save(context.Background(), e.tok); err != nil {
		t.Fatal(err)
	}
	var trs [2]*Transport
	var recs [2]eventRecorder
	for i := range trs {
		trs[i] = &Transport{Store: NewFileStore(path), Refresher: &Endpoint{URL: e.srv.URL + "/auth/refreshtoken"},
			OnRefresh: recs[i].record, now: e.clock.now}
		if _, err := trs[i].Tokens(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The file records the expiry, so the life of the pair counts from
	// its load, 10 s before expiry: its window is a quarter of that.
	e.clock.set(e.exp.Add(-time.Second))
	for i, tr := range trs {
		s := tr.m.cur.Load()
		if code, _ := get(t, NewClient(nil, tr), e.srv.URL+"/api/x"); code != 200 {
			t.Errorf("transport %d: status = %d; want 200", i, code)
		}
		idle(t, s)
	}
	if n, r := e.srv.refreshCalls.Load(), e.srv.reuses.Load(); n != 1 || r != 0 {
		t.Errorf("refresh calls = %d, reuses = %d; want 1 and 0", n, r)
	}
	checkOneEvent(t, "first transport", recs[0].all(), false)
	checkOneEvent(t, "second transport", recs[1].all(), true)
	a, _ := trs[0].Tokens(context.Background())
	b, _ := trs[1].Tokens(context.Background())
	if a.AccessToken != b.AccessToken || a.RefreshToken != b.RefreshToken || a.AccessToken == e.tok.AccessToken {
		t.Error("the two transports do not hold the same, refreshed pair")
	}
}

// checkOneEvent checks that evs is one successful proactive refresh,
// adopted from the store or not.
func checkOneEvent(t *testing.T, who string, evs []RefreshEvent, adopted bool) {
	t.Helper()
	if len(evs) != 1 || evs[0].Adopted != adopted || evs[0].Err != nil || !evs[0].Proactive {
		t.Errorf("%s: events = %+v; want one successful proactive refresh with Adopted = %v", who, evs, adopted)
	}
}

// windowEnv drives a Transport tick by tick on a fake clock, to see when
// it refreshes. Its Refresher hands out opaque tokens that expire life
// after the fake time of the call, and takes took of real time to answer
// (the endpoint's latency, which the Transport measures); its base answers
// every request at once.
type windowEnv struct {
	clock *fakeClock
	tr    *Transport
	life  time.Duration
	took  time.Duration

	mu     sync.Mutex      // guards the fields below
	left   []time.Duration // the life left to the token at each refresh
	spent  map[string]bool // refresh tokens presented
	reused int             // refresh tokens presented twice
}

func newWindowEnv(t *testing.T, life, took, early time.Duration) *windowEnv {
	t.Helper()
	e := &windowEnv{clock: newFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), life: life, took: took, spent: map[string]bool{}}
	first := e.mint(e.clock.now())
	e.tr = &Transport{
		Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			closeBody(r)
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		}),
		Store:        NewMemoryStore(first),
		Refresher:    RefreshFunc(e.refresh),
		EarlyRefresh: early,
		now:          e.clock.now,
	}
	if _, err := e.tr.Tokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *windowEnv) mint(now time.Time) Tokens {
	return Tokens{AccessToken: "acc-" + randomString(), RefreshToken: "ref-" + randomString(), Expiry: now.Add(e.life)}
}

func (e *windowEnv) refresh(ctx context.Context, cur Tokens) (Tokens, error) {
	now := e.clock.now()
	e.mu.Lock()
	e.left = append(e.left, cur.Expiry.Sub(now))
	if e.spent[cur.RefreshToken] {
		e.reused++
	}
	e.spent[cur.RefreshToken] = true
	e.mu.Unlock()
	if e.took > 0 {
		time.Sleep(e.took) // the endpoint's latency, measured by the Transport
	}
	return e.mint(now), nil
}

// run moves the clock by tick, sends a request and lets the refresh it
// started end, until the clock has moved by span.
func (e *windowEnv) run(t *testing.T, span, tick time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://api.test/x", nil)
	for moved := time.Duration(0); moved < span; moved += tick {
		e.clock.add(tick)
		s := e.tr.m.cur.Load()
		resp, err := e.tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("at %v: %v", moved+tick, err)
		}
		resp.Body.Close()
		idle(t, s)
	}
	if n := e.tr.Stats().Waits; n != 0 {
		t.Errorf("requests that waited for a refresh = %d; want 0", n)
	}
	if e.reused != 0 {
		t.Errorf("tokens refreshed twice = %d; want 0", e.reused)
	}
}

// TestDefaultWindowRenewsEachTokenOnce: with EarlyRefresh unset and a quick
// refresh, each token is refreshed once: the first when a quarter of its
// life is left (no refresh was measured yet), the others when a tenth is
// left (at most DefaultEarlyRefresh), so that the refreshes over a span are
// no more than one per nine tenths of a lifetime.
func TestDefaultWindowRenewsEachTokenOnce(t *testing.T) {
	tests := []struct {
		life, first, window time.Duration
	}{
		{2 * time.Second, 500 * time.Millisecond, 200 * time.Millisecond},
		{40 * time.Second, 10 * time.Second, 4 * time.Second},
		{10 * time.Minute, DefaultEarlyRefresh, DefaultEarlyRefresh},
	}
	const lifetimes = 6
	for _, tt := range tests {
		t.Run(tt.life.String(), func(t *testing.T) {
			e := newWindowEnv(t, tt.life, 0, 0)
			tick := tt.life / 200
			e.run(t, lifetimes*tt.life, tick)
			for i, left := range e.left {
				want := tt.window
				if i == 0 {
					want = tt.first
				}
				if left > want || left <= want-tick {
					t.Errorf("refresh %d with %v left; want it within one tick (%v) of %v", i, left, tick, want)
				}
			}
			// Each refresh gives life - window more: every token is
			// renewed once in its life.
			period := tt.life - tt.window
			if n, most := len(e.left), int(lifetimes*tt.life/period); n < lifetimes || n > most {
				t.Errorf("refreshes over %d lifetimes = %d; want %d to %d", lifetimes, n, lifetimes, most)
			}
		})
	}
}

// TestDefaultWindowCoversSlowRefresh: with EarlyRefresh unset, once a
// refresh took d, the next token is refreshed at least 1.5d before its
// expiry, so that a refresh in the background ends before it, even when a
// tenth of the lifetime is shorter; but never more than half its life
// before, so that it is still renewed once.
func TestDefaultWindowCoversSlowRefresh(t *testing.T) {
	tests := []struct {
		name       string
		life, took time.Duration
	}{
		// A tenth is 100 ms; one and a half refreshes are over 225 ms.
		{"one and a half refreshes", time.Second, 150 * time.Millisecond},
		// A tenth is 40 ms; one and a half refreshes are over 225 ms;
		// half the life is 200 ms.
		{"capped at half the life", 400 * time.Millisecond, 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const tick = 5 * time.Millisecond
			e := newWindowEnv(t, tt.life, tt.took, 0)
			e.run(t, 5*tt.life, tick)
			if len(e.left) < 3 {
				t.Fatalf("refreshes = %d; want at least 3", len(e.left))
			}
			// Before any refresh was measured: a quarter of the life.
			if left, w := e.left[0], tt.life/4; left > w || left <= w-tick {
				t.Errorf("first refresh with %v left; want within one tick of %v", left, w)
			}
			least := min(tt.took*3/2, tt.life/2) - tick
			for i, left := range e.left[1:] {
				if left <= least || left > tt.life/2 {
					t.Errorf("refresh %d with %v left, after a refresh that took over %v; want more than %v and at most %v",
						i+1, left, tt.took, least, tt.life/2)
				}
			}
		})
	}
}

// TestEarlyRefreshSetIsTakenAtItsWord: EarlyRefresh, when set, is the
// window, capped at half the lifetime, whatever the refreshes take.
func TestEarlyRefreshSetIsTakenAtItsWord(t *testing.T) {
	tests := []struct {
		name              string
		life, took, early time.Duration
		window, tick      time.Duration
	}{
		{"as set", 40 * time.Second, 0, 5 * time.Second, 5 * time.Second, 100 * time.Millisecond},
		{"shorter than twice a slow refresh", 40 * time.Second, 150 * time.Millisecond, 200 * time.Millisecond,
			200 * time.Millisecond, 50 * time.Millisecond},
		{"capped at half the life", 40 * time.Second, 0, 30 * time.Second, 20 * time.Second, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWindowEnv(t, tt.life, tt.took, tt.early)
			e.run(t, 3*tt.life, tt.tick)
			if len(e.left) < 3 {
				t.Fatalf("refreshes = %d; want at least 3", len(e.left))
			}
			for i, left := range e.left {
				if left > tt.window || left <= tt.window-tt.tick {
					t.Errorf("refresh %d with %v left; want within one tick (%v) of %v", i, left, tt.tick, tt.window)
				}
			}
		})
	}
}

// ctxSaveStore is a MemoryStore whose Save honours its context, as a store
// over the network does (Redis with ContextTimeoutEnabled): it fails when
// the context is done. It records whether every Save had a deadline.
type ctxSaveStore struct {
	MemoryStore
	saves, unbounded atomic.Int64
}

func (s *ctxSaveStore) Save(ctx context.Context, t Tokens) error {
	s.saves.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		s.unbounded.Add(1)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemoryStore.Save(ctx, t)
}

// ctxSaveLocker is a ctxSaveStore that is a Locker, in process.
type ctxSaveLocker struct {
	ctxSaveStore
	mu sync.Mutex
}

func (s *ctxSaveLocker) Lock(ctx context.Context) (func(), error) {
	s.mu.Lock()
	return s.mu.Unlock, nil
}

// TestSaveOutlivesRefreshTimeout: a refresh whose answer arrives when
// RefreshTimeout has run out still has its new pair saved, by a store
// whose Save gives up when its context is done: the save gets a bounded
// time of its own, since the pair may hold the only copy of a rotated
// refresh token.
func TestSaveOutlivesRefreshTimeout(t *testing.T) {
	for _, locker := range []bool{false, true} {
		t.Run(fmt.Sprintf("Locker %v", locker), func(t *testing.T) {
			srv := newProtoServer(t)
			var store interface {
				TokenStore
				counts() (saves, unbounded int64)
			} = &ctxSaveStore{}
			if locker {
				store = &ctxSaveLocker{}
			}
			stale := srv.stale()
			store.Save(context.Background(), stale)
			var fresh Tokens
			var events eventRecorder
			tr := &Transport{
				Store:          store,
				RefreshTimeout: 50 * time.Millisecond,
				OnRefresh:      events.record,
				// The answer comes when the refresh's time is up.
				Refresher: RefreshFunc(func(ctx context.Context, cur Tokens) (Tokens, error) {
					<-ctx.Done()
					fresh = srv.issue()
					return fresh, nil
				}),
			}
			if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
				t.Errorf("status = %d; want 200", code)
			}
			if got, err := store.Load(context.Background()); err != nil || got != fresh {
				t.Errorf("store holds %v, %v; want the refreshed pair", got, err)
			}
			if evs := events.all(); len(evs) != 1 || evs[0].Err != nil || evs[0].StoreErr != nil {
				t.Errorf("events = %+v; want one successful refresh without a store error", evs)
			}
			if saves, unbounded := store.counts(); saves != 2 || unbounded != 1 {
				t.Errorf("saves = %d, without a deadline = %d; want 2 and 1 (the set-up)", saves, unbounded)
			}
		})
	}
}

func (s *ctxSaveStore) counts() (saves, unbounded int64) { return s.saves.Load(), s.unbounded.Load() }

// fileEnv is a protoServer whose access tokens are JWTs living ten minutes
// (their expiry is only in the "exp" claim: refresh answers carry none), and
// a Transport on a FileStore, which records that expiry in the file and
// returns it in Tokens.Expiry, that has refreshed once: the pair it holds
// is the one it saved.
func fileEnv(t *testing.T) (*protoServer, *Transport, *FileStore, *eventRecorder) {
	t.Helper()
	srv := newProtoServer(t)
	srv.jwtTTL = 10 * time.Minute
	store := NewFileStore(tokenPath(t))
	if err := store.Save(context.Background(), srv.issue()); err != nil {
		t.Fatal(err)
	}
	events := &eventRecorder{}
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}, OnRefresh: events.record}
	srv.expireAll()
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 || srv.refreshCalls.Load() != 1 {
		t.Fatalf("first refresh: status %d, %d refresh calls; want 200 and 1", code, srv.refreshCalls.Load())
	}
	return srv, tr, store, events
}

// TestRefusalAfterSaveToFileRefreshes: a Transport that saved its pair to a
// FileStore, and is refused, refreshes that pair: the file holding the same
// pair (with the expiry the file records) is not a newer pair saved by
// another holder.
func TestRefusalAfterSaveToFileRefreshes(t *testing.T) {
	srv, tr, _, events := fileEnv(t)
	srv.expireAll()
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after the second refusal = %d; want 200, refreshed and sent again", code)
	}
	if n := srv.refreshCalls.Load(); n != 2 {
		t.Errorf("refresh calls = %d; want 2", n)
	}
	for i, ev := range events.all() {
		if ev.Adopted {
			t.Errorf("event %d adopted the pair in the file, which is the Transport's own", i)
		}
	}
}

// TestRejectionAfterSaveToFileEndsSession: a Transport that saved its pair
// to a FileStore, and whose refresh token is then rejected, ends the session
// at once: the requests refused meanwhile fail with ErrSessionExpired and
// the file is removed.
func TestRejectionAfterSaveToFileEndsSession(t *testing.T) {
	srv, tr, store, _ := fileEnv(t)
	srv.expireAll()
	srv.refreshStatus.Store(401)
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	if !errors.Is(err, ErrSessionExpired) {
		t.Errorf("error = %v; want ErrSessionExpired", err)
	}
	if n := srv.refreshCalls.Load(); n != 2 {
		t.Errorf("refresh calls = %d; want 2", n)
	}
	if _, err := store.Load(context.Background()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("store Load: %v; want ErrNoTokens", err)
	}
}

// TestProactiveRefreshWithoutRefreshTokenKeepsValidToken: a pair without a
// refresh token (a server that issues none, an access token handed over
// from elsewhere) with an OAuth2 refresher. When the access token enters the
// early window there is nothing to refresh it with, so it is used until it
// expires or is refused, and no refresh is attempted.
func TestProactiveRefreshWithoutRefreshTokenKeepsValidToken(t *testing.T) {
	now := time.Now()
	access, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now.Add(-100 * time.Second)), ExpiresAt: jwt.NewNumericDate(now.Add(20 * time.Second)),
	}).SignedString([]byte("test key"))
	if err != nil {
		t.Fatal(err)
	}
	var withToken, tokenCalls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokenCalls.Add(1)
			http.Error(w, "unexpected", http.StatusInternalServerError)
			return
		}
		if r.Header.Get("Authorization") == "Bearer "+access {
			withToken.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	events := make(chan RefreshEvent, 4)
	tr := &Transport{Store: NewMemoryStore(Tokens{AccessToken: access}),
		Refresher: &OAuth2{TokenURL: srv.URL + "/token"},
		OnRefresh: func(e RefreshEvent) { events <- e }}
	c := NewClient(nil, tr)
	get(t, c, srv.URL+"/api/x") // due
	get(t, c, srv.URL+"/api/x")
	if len(events) != 0 || tokenCalls.Load() != 0 {
		t.Errorf("refresh events %d, token calls %d; want none: there is no refresh token", len(events), tokenCalls.Load())
	}
	if n := withToken.Load(); n != 2 {
		t.Errorf("requests that carried the access token, valid for 20 s more = %d of 2; want 2", n)
	}
	if _, err := tr.Tokens(t.Context()); err != nil {
		t.Errorf("Tokens after the background refresh: %v; want the still valid access token kept", err)
	}
}
