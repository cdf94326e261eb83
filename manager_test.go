package autorefresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore counts the calls to a MemoryStore.
type countingStore struct {
	MemoryStore
	loads, saves, clears atomic.Int64
	saveErr              error
}

func (s *countingStore) Load(ctx context.Context) (Tokens, error) {
	s.loads.Add(1)
	return s.MemoryStore.Load(ctx)
}

func (s *countingStore) Save(ctx context.Context, t Tokens) error {
	s.saves.Add(1)
	if s.saveErr != nil {
		return s.saveErr
	}
	return s.MemoryStore.Save(ctx, t)
}

func (s *countingStore) Clear(ctx context.Context) error {
	s.clears.Add(1)
	return s.MemoryStore.Clear(ctx)
}

func TestLoadsStoreOnce(t *testing.T) {
	srv := newProtoServer(t)
	store := &countingStore{}
	store.Save(context.Background(), srv.issue())
	store.saves.Store(0)
	c := NewClient(nil, &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 4 {
				if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
					t.Errorf("status = %d; want 200", code)
				}
			}
		})
	}
	wg.Wait()
	if n := store.loads.Load(); n != 1 {
		t.Errorf("store loads = %d; want 1", n)
	}
}

func TestConcurrent403sShareOneRefresh(t *testing.T) {
	checkGoroutines(t)
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	tr, _ := srv.transport(srv.stale())
	c := NewClient(nil, tr)
	const n = 500
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range n {
		wg.Go(func() {
			if code, _ := get(t, c, srv.URL+"/api/x"); code == 200 {
				ok.Add(1)
			}
		})
	}
	// Let the refresh finish once every request is waiting for it or has
	// been refused.
	for srv.api403s.Load() < n && tr.Stats().Waits < n {
		time.Sleep(time.Millisecond)
	}
	close(srv.refreshGate)
	wg.Wait()
	if got := ok.Load(); got != n {
		t.Errorf("successful requests = %d; want %d", got, n)
	}
	if got := srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}
	if got := srv.reuses.Load(); got != 0 {
		t.Errorf("refresh token reuses = %d; want 0", got)
	}
}

// gatedServer wraps srv's handler so that requests to /api/slow are held
// until release is closed, then answered by srv as they were sent.
func holdSlow(srv *protoServer, arrived chan<- struct{}, release <-chan struct{}) {
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" && srv.apiCalls.Load() == 0 {
			arrived <- struct{}{}
			<-release
			srv.expireAll() // its token is stale by now
		}
		h.ServeHTTP(w, r)
	})
}

func TestLate403ReplaysWithCurrentToken(t *testing.T) {
	srv := newProtoServer(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	holdSlow(srv, arrived, release)
	tok := srv.issue()
	tr, _ := srv.transport(tok)
	c := NewClient(nil, tr)

	slow := make(chan int)
	go func() {
		code, _ := get(t, c, srv.URL+"/api/slow")
		slow <- code
	}()
	<-arrived // the slow request is on the server with the first token
	srv.expireAll()
	if code, _ := get(t, c, srv.URL+"/api/fast"); code != 200 {
		t.Fatalf("fast request status = %d; want 200", code)
	}
	// Keep the refreshed token valid when the slow request is refused.
	cur, _ := tr.Tokens(context.Background())
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("accessToken") == tok.AccessToken {
			srv.api403s.Add(1)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if r.Header.Get("accessToken") == cur.AccessToken {
			w.WriteHeader(200)
		}
	})
	close(release)
	if code := <-slow; code != 200 {
		t.Errorf("slow request status = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

func TestRefreshOutlivesCallerContext(t *testing.T) {
	checkGoroutines(t)
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	tr, store := srv.transport(srv.stale())
	c := NewClient(nil, tr)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/x", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	for srv.refreshCalls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan int)
	go func() {
		code, _ := get(t, c, srv.URL+"/api/x")
		second <- code
	}()
	for tr.Stats().Waits < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first request error = %v; want context.Canceled", err)
	}
	close(srv.refreshGate)
	if code := <-second; code != 200 {
		t.Errorf("second request status = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	if saved, _ := store.Load(context.Background()); !srv.valid(saved.AccessToken) {
		t.Error("refreshed tokens were not saved")
	}
}

func TestRefreshTimeout(t *testing.T) {
	checkGoroutines(t)
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	defer close(srv.refreshGate)
	stale := srv.stale()
	tr, store := srv.transport(stale)
	tr.RefreshTimeout = 50 * time.Millisecond
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v; want a *RefreshError wrapping context.DeadlineExceeded", err)
	}
	if errors.Is(err, ErrSessionExpired) {
		t.Error("a timeout ended the session")
	}
	if saved, _ := store.Load(context.Background()); saved != stale {
		t.Errorf("store holds %v; want the old tokens kept", saved)
	}
}

// fakeClock is a settable clock for Transport.now.
type fakeClock struct{ t atomic.Pointer[time.Time] }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) set(t time.Time) { c.t.Store(&t) }

func (c *fakeClock) now() time.Time { return *c.t.Load() }

func (c *fakeClock) add(d time.Duration) { c.set(c.now().Add(d)) }

func TestRefreshAheadOfExpiry(t *testing.T) {
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration // 0: opaque token
		expiry   time.Duration // Tokens.Expiry after issued, when set
		early    time.Duration
		at       time.Duration // request time after issued
		want     int64         // refresh calls
	}{
		{"fresh", 10 * time.Minute, 0, 0, time.Minute, 0},
		{"just before default window", 10 * time.Minute, 0, 0, 10*time.Minute - 31*time.Second, 0},
		{"inside default window", 10 * time.Minute, 0, 0, 10*time.Minute - 29*time.Second, 1},
		{"expired", 10 * time.Minute, 0, 0, 11 * time.Minute, 1},
		{"long expired", 10 * time.Minute, 0, 0, 48 * time.Hour, 1},
		{"default window a quarter of a short life: outside", 40 * time.Second, 0, 0, 29 * time.Second, 0},
		{"default window a quarter of a short life: inside", 40 * time.Second, 0, 0, 31 * time.Second, 1},
		{"custom window capped at half life: outside", 40 * time.Second, 0, 30 * time.Second, 19 * time.Second, 0},
		{"custom window capped at half life: inside", 40 * time.Second, 0, 30 * time.Second, 21 * time.Second, 1},
		{"custom window: outside", 10 * time.Minute, 0, 2 * time.Minute, 7 * time.Minute, 0},
		{"custom window: inside", 10 * time.Minute, 0, 2 * time.Minute, 8*time.Minute + time.Second, 1},
		{"early refresh off: before expiry", 10 * time.Minute, 0, -1, 10*time.Minute - time.Second, 0},
		{"early refresh off: expired", 10 * time.Minute, 0, -1, 10*time.Minute + time.Second, 1},
		{"opaque token never expires", 0, 0, 0, 365 * 24 * time.Hour, 0},
		{"opaque token with Expiry: fresh", 0, 10 * time.Minute, 0, time.Minute, 0},
		{"opaque token with Expiry: inside window", 0, 10 * time.Minute, 0, 10*time.Minute - 10*time.Second, 1},
		{"Expiry wins over exp claim", time.Hour, 10 * time.Minute, 0, 10*time.Minute - 10*time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newProtoServer(t)
			clock := newFakeClock(issued)
			srv.jwtTTL, srv.jwtNow = tt.lifetime, clock.now
			tok := srv.issue()
			if tt.expiry != 0 {
				tok.Expiry = issued.Add(tt.expiry)
			}
			tr, _ := srv.transport(tok)
			tr.now, tr.EarlyRefresh = clock.now, tt.early
			if _, err := tr.Tokens(context.Background()); err != nil { // loaded when issued
				t.Fatal(err)
			}
			clock.add(tt.at)
			if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
				t.Errorf("status = %d; want 200", code)
			}
			// A token that is due but good is refreshed in the background.
			waitFor(t, "the refreshes to end", func() bool {
				st := tr.Stats()
				return st.Refreshes+st.RefreshFailures >= tt.want
			})
			if n := srv.refreshCalls.Load(); n != tt.want {
				t.Errorf("refresh calls = %d; want %d", n, tt.want)
			}
			if n := srv.api403s.Load(); n != 0 {
				t.Errorf("403s = %d; want 0 (no request should be refused)", n)
			}
			if tt.want == 1 && tr.Stats().ProactiveRefreshes != 1 {
				t.Errorf("proactive refreshes = %d; want 1", tr.Stats().ProactiveRefreshes)
			}
		})
	}
}

func TestRefreshAheadUnderLoadSeesNo403(t *testing.T) {
	srv := newProtoServer(t)
	clock := newFakeClock(time.Now())
	srv.jwtTTL, srv.jwtNow = time.Minute, clock.now
	tr, _ := srv.transport(srv.issue())
	tr.now = clock.now
	c := NewClient(nil, tr)
	const lifetimes = 5
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 10 * lifetimes {
				if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
					t.Errorf("status = %d; want 200", code)
				}
			}
		})
	}
	for range 10 * lifetimes {
		clock.add(6 * time.Second) // ten ticks per token lifetime
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if n := srv.api403s.Load(); n != 0 {
		t.Errorf("403s = %d; want 0", n)
	}
	if n := srv.reuses.Load(); n != 0 {
		t.Errorf("refresh token reuses = %d; want 0", n)
	}
	// Each token is refreshed once, 30 s before its expiry: at most one
	// refresh per 30 s of clock.
	if n := srv.refreshCalls.Load(); n < 1 || n > 2*lifetimes {
		t.Errorf("refresh calls = %d; want between 1 and %d", n, 2*lifetimes)
	}
}

func TestRefreshAheadFailure(t *testing.T) {
	issued := time.Now()
	tests := []struct {
		name    string
		at      time.Duration
		wantErr bool
	}{
		{"token still valid: sent as is", 9*time.Minute + 50*time.Second, false},
		{"token expired: error", 11 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newProtoServer(t)
			clock := newFakeClock(issued)
			srv.jwtTTL, srv.jwtNow = 10*time.Minute, clock.now
			tok := srv.issue()
			srv.refreshStatus.Store(503)
			tr, store := srv.transport(tok)
			tr.now = clock.now
			clock.add(tt.at)
			resp, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
			if tt.wantErr {
				var re *RefreshError
				if !errors.As(err, &re) || re.StatusCode != 503 {
					t.Errorf("error = %v; want a *RefreshError with status 503", err)
				}
			} else if err != nil || resp.StatusCode != 200 {
				t.Errorf("got %v, %v; want 200 with the still-valid token", resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if saved, _ := store.Load(context.Background()); saved != tok {
				t.Error("a transient refresh failure changed the store")
			}
		})
	}
}

func TestRefreshRejectedEndsSession(t *testing.T) {
	checkGoroutines(t)
	srv := newProtoServer(t)
	srv.refreshStatus.Store(401)
	srv.refreshGate = make(chan struct{})
	stale := srv.stale()
	store := &countingStore{}
	store.Save(context.Background(), stale)
	var events []RefreshEvent
	tr := &Transport{
		Store:     store,
		Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		OnRefresh: func(e RefreshEvent) { events = append(events, e) },
	}
	c := NewClient(nil, tr)

	// A request on the server with the old token, refused after the end.
	arrived, release := make(chan struct{}), make(chan struct{})
	holdSlow(srv, arrived, release)
	late := make(chan error)
	goGet(c, srv.URL+"/api/slow", late)
	<-arrived

	const n = 50
	errs := make(chan error, n)
	for range n {
		goGet(c, srv.URL+"/api/x", errs)
	}
	waitFor(t, "every request to wait on the refresh", func() bool { return tr.Stats().Waits >= n })
	close(srv.refreshGate)
	for range n {
		if err := <-errs; !errors.Is(err, ErrSessionExpired) {
			t.Errorf("error = %v; want ErrSessionExpired", err)
		}
	}
	close(release)
	if err := <-late; !errors.Is(err, ErrSessionExpired) {
		t.Errorf("late 403 error = %v; want ErrSessionExpired", err)
	}
	if got := srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}
	if got := store.clears.Load(); got != 1 {
		t.Errorf("store clears = %d; want 1", got)
	}
	if _, err := store.Load(context.Background()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("store Load error = %v; want ErrNoTokens", err)
	}
	checkSessionEndedByStatus(t, events, 401)
	// Afterwards requests go out without tokens and their 403s come back.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Accesstoken"]; ok {
			t.Error("request after the session ended carried an access token")
		}
		w.WriteHeader(http.StatusForbidden)
	})
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 403 {
		t.Errorf("status after the session ended = %d; want 403", code)
	}
	if got := srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls after the session ended = %d; want 1", got)
	}
}

// goGet sends a GET in the background, closes the response body and sends
// the error to errc.
func goGet(c *http.Client, url string, errc chan<- error) {
	go func() {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
}

// checkSessionEndedByStatus checks that events is one refresh event that
// ended the session, with a *RefreshError of the given status.
func checkSessionEndedByStatus(t *testing.T, events []RefreshEvent, status int) {
	t.Helper()
	if len(events) != 1 || !events[0].SessionEnded || !errors.Is(events[0].Err, ErrSessionExpired) {
		t.Errorf("refresh events = %+v; want one that ended the session", events)
	}
	var re *RefreshError
	if err := events[0].Err; !errors.As(err, &re) || re.StatusCode != status {
		t.Errorf("event error = %v; want a *RefreshError with status %d", err, status)
	}
}

func TestRefreshWithoutNewRefreshTokenKeepsOld(t *testing.T) {
	srv := newProtoServer(t)
	srv.noRotate.Store(true)
	stale := srv.stale()
	tr, store := srv.transport(stale)
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Fatalf("status = %d; want 200", code)
	}
	saved, _ := store.Load(context.Background())
	if saved.RefreshToken != stale.RefreshToken {
		t.Error("the refresh token was lost; want the old one kept")
	}
	if saved.AccessToken == stale.AccessToken || !srv.valid(saved.AccessToken) {
		t.Error("store does not hold the new access token")
	}
	// The kept refresh token still works.
	srv.expireAll()
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after second refresh = %d; want 200", code)
	}
}

func TestTransientRefreshFailure(t *testing.T) {
	tests := []struct {
		name       string
		breakIt    func(*protoServer)
		wantStatus int
	}{
		{"500", func(s *protoServer) { s.refreshStatus.Store(500) }, 500},
		{"502", func(s *protoServer) { s.refreshStatus.Store(502) }, 502},
		{"429", func(s *protoServer) { s.refreshStatus.Store(429) }, 429},
		{"malformed JSON", func(s *protoServer) { b := `{"accessToken": "x"`; s.refreshBody.Store(&b) }, 200},
		{"not JSON", func(s *protoServer) { b := `<html>maintenance</html>`; s.refreshBody.Store(&b) }, 200},
		{"no access token", func(s *protoServer) { b := `{"refreshToken": "r"}`; s.refreshBody.Store(&b) }, 200},
		{"oversized", func(s *protoServer) {
			b := `{"accessToken": "` + strings.Repeat("x", 2<<20) + `"}`
			s.refreshBody.Store(&b)
		}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newProtoServer(t)
			stale := srv.stale()
			tr, store := srv.transport(stale)
			c := NewClient(nil, tr)
			tt.breakIt(srv)
			_, err := c.Get(srv.URL + "/api/x")
			var re *RefreshError
			if !errors.As(err, &re) || re.StatusCode != tt.wantStatus {
				t.Fatalf("error = %v; want a *RefreshError with status %d", err, tt.wantStatus)
			}
			if errors.Is(err, ErrSessionExpired) {
				t.Error("a transient failure ended the session")
			}
			if saved, _ := store.Load(context.Background()); saved != stale {
				t.Error("a transient failure changed the store")
			}
			// The server recovers; so does the next request.
			srv.refreshStatus.Store(0)
			srv.refreshBody.Store(nil)
			if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
				t.Errorf("status after recovery = %d; want 200", code)
			}
		})
	}
}

func TestRefreshNetworkError(t *testing.T) {
	srv := newProtoServer(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	stale := srv.stale()
	store := NewMemoryStore(stale)
	ep := &Endpoint{URL: dead.URL + "/auth/refreshtoken"}
	tr := &Transport{Store: store, Refresher: ep}
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) || re.StatusCode != 0 || errors.Is(err, ErrSessionExpired) {
		t.Fatalf("error = %v; want a transient *RefreshError without status", err)
	}
	ep.URL = srv.URL + "/auth/refreshtoken" // the endpoint is back
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after recovery = %d; want 200", code)
	}
}

func TestRefreshAheadBacksOffAfterFailure(t *testing.T) {
	srv := newProtoServer(t)
	issued := time.Now()
	clock := newFakeClock(issued)
	srv.jwtTTL, srv.jwtNow = 10*time.Minute, clock.now
	tr, _ := srv.transport(srv.issue())
	tr.now = clock.now
	c := NewClient(nil, tr)
	srv.refreshStatus.Store(503)
	expiry := issued.Add(10 * time.Minute)
	steps := []struct {
		at    time.Time
		heal  bool
		calls int64
	}{
		{expiry.Add(-20 * time.Second), false, 1}, // due: tried, failed, sent with the old token
		{expiry.Add(-19 * time.Second), false, 1}, // backing off
		{expiry.Add(-16 * time.Second), false, 1},
		{expiry.Add(-14 * time.Second), false, 2}, // 5 s later: tried again
		{expiry.Add(-13 * time.Second), true, 2},  // healed, but still backing off
		{expiry.Add(-8 * time.Second), false, 3},  // tried and refreshed
		{expiry.Add(time.Minute), false, 3},       // the new token is good
	}
	for i, st := range steps {
		clock.set(st.at)
		if st.heal {
			srv.refreshStatus.Store(0)
		}
		if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
			t.Errorf("step %d: status = %d; want 200", i, code)
		}
		// The refresh ahead of expiry runs in the background.
		waitFor(t, "the refreshes to end", func() bool {
			s := tr.Stats()
			return s.Refreshes+s.RefreshFailures >= st.calls
		})
		if n := srv.refreshCalls.Load(); n != st.calls {
			t.Errorf("step %d: refresh calls = %d; want %d", i, n, st.calls)
		}
	}
	// An expired token is refreshed before it is sent, whatever the
	// back-off ahead of expiry; after one failure the next request tries
	// again at once.
	srv.refreshStatus.Store(503)
	clock.set(time.Now().Add(time.Hour))
	_, err := c.Get(srv.URL + "/api/x")
	if err == nil {
		t.Fatal("request with an expired token and a failing endpoint succeeded")
	}
	clock.add(time.Millisecond)
	c.Get(srv.URL + "/api/x")
	if n := srv.refreshCalls.Load(); n != 5 {
		t.Errorf("refresh calls with an expired token = %d; want 5 (a first failure is tried again at once)", n)
	}
}

// lockingStore is a MemoryStore that implements Locker in process.
type lockingStore struct {
	MemoryStore
	mu    sync.Mutex
	locks atomic.Int64
}

func (s *lockingStore) Lock(ctx context.Context) (func(), error) {
	s.locks.Add(1)
	s.mu.Lock()
	return s.mu.Unlock, nil
}

func TestLockerAdoptsOrRefreshesStoredPair(t *testing.T) {
	for _, expired := range []bool{false, true} {
		name := map[bool]string{false: "fresh pair adopted", true: "expired pair refreshed"}[expired]
		t.Run(name, func(t *testing.T) {
			srv := newProtoServer(t)
			mine := srv.stale()
			// Another process refreshed: its pair is in the store, and
			// my refresh token is spent.
			theirs := srv.issue()
			srv.mu.Lock()
			srv.refresh[mine.RefreshToken] = true
			srv.mu.Unlock()
			if expired {
				theirs.Expiry = time.Now().Add(-time.Second)
				srv.mu.Lock()
				delete(srv.access, theirs.AccessToken)
				srv.mu.Unlock()
			}
			store := &lockingStore{}
			var events []RefreshEvent
			tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"},
				OnRefresh: func(e RefreshEvent) { events = append(events, e) }}
			if err := tr.SetTokens(context.Background(), mine); err != nil {
				t.Fatal(err)
			}
			store.MemoryStore.Save(context.Background(), theirs)
			store.locks.Store(0) // SetTokens took it once

			if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
				t.Errorf("status = %d; want 200", code)
			}
			if n := srv.reuses.Load(); n != 0 {
				t.Errorf("refresh token reuses = %d; want 0", n)
			}
			wantCalls := map[bool]int64{false: 0, true: 1}[expired]
			if n := srv.refreshCalls.Load(); n != wantCalls {
				t.Errorf("refresh calls = %d; want %d", n, wantCalls)
			}
			if n := store.locks.Load(); n != 1 {
				t.Errorf("locks = %d; want 1", n)
			}
			if len(events) != 1 || events[0].Adopted == expired || events[0].Err != nil {
				t.Errorf("events = %+v; want one successful event with Adopted = %v", events, !expired)
			}
		})
	}
}

// sessionChange is a login or a logout made while a refresh is in flight.
type sessionChange struct {
	name          string
	refreshStatus int64                                           // non-zero: the refresh endpoint answers with it
	act           func(context.Context, *Transport, Tokens) error // logs in with (or ignores) the given pair
	check         func(*testing.T, afterChange)
}

// afterChange is what the store, the Transport and the request in flight
// hold once a sessionChange and the refresh are over.
type afterChange struct {
	locker           bool   // the store is a Locker
	bob              Tokens // the pair of the login
	stored, mem      Tokens
	storeErr, memErr error
	code             int // the status of the request in flight; 0 if it failed
}

func TestLoginAndLogoutDuringRefresh(t *testing.T) {
	login := func(ctx context.Context, tr *Transport, bob Tokens) error { return tr.SetTokens(ctx, bob) }
	logout := func(ctx context.Context, tr *Transport, _ Tokens) error { return tr.Logout(ctx) }
	changes := []sessionChange{
		{name: "logout", act: logout, check: checkLoggedOut},
		{name: "login", act: login, check: checkLoggedIn},
		{name: "login during a rejected refresh", refreshStatus: 401, act: login, check: checkLoggedIn},
	}
	for _, locker := range []bool{false, true} {
		for _, change := range changes {
			t.Run(fmt.Sprintf("%s, Locker %v", change.name, locker), func(t *testing.T) {
				checkGoroutines(t)
				change.check(t, changeDuringRefresh(t, change, locker))
			})
		}
	}
}

// changeDuringRefresh makes change while a request waits on a refresh of a
// stale pair, and reports the state once both are over. Without a Locker,
// the change must not wait for the refresh; with one, it happens after it.
func changeDuringRefresh(t *testing.T, change sessionChange, locker bool) afterChange {
	t.Helper()
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	if change.refreshStatus != 0 {
		srv.refreshStatus.Store(change.refreshStatus)
	}
	var store TokenStore = &MemoryStore{}
	if locker {
		store = &lockingStore{}
	}
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	ctx := context.Background()
	if err := tr.SetTokens(ctx, srv.stale()); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan int)
	go func() {
		resp, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
		if err != nil { // expected after a logout or a rejection
			inFlight <- 0
			return
		}
		resp.Body.Close()
		inFlight <- resp.StatusCode
	}()
	waitFor(t, "the refresh to start", func() bool { return srv.refreshCalls.Load() != 0 })
	bob := srv.issue()
	done := make(chan error)
	go func() { done <- change.act(ctx, tr, bob) }()
	if !locker {
		if err := <-done; err != nil { // not held up by the refresh
			t.Fatal(err)
		}
	}
	close(srv.refreshGate)
	if locker {
		if err := <-done; err != nil { // after the refresh, under the store's lock
			t.Fatal(err)
		}
	}
	got := afterChange{locker: locker, bob: bob, code: <-inFlight}
	got.stored, got.storeErr = store.Load(ctx)
	got.mem, got.memErr = tr.Tokens(ctx)
	return got
}

// checkLoggedOut checks that neither the store nor the Transport holds
// tokens after a logout.
func checkLoggedOut(t *testing.T, got afterChange) {
	t.Helper()
	if !errors.Is(got.storeErr, ErrNoTokens) || !errors.Is(got.memErr, ErrNoTokens) {
		t.Errorf("after logout: store %v, %v; memory %v, %v; want no tokens in either", got.stored, got.storeErr, got.mem, got.memErr)
	}
}

// checkLoggedIn checks that the store and the Transport hold the login's
// pair and, without a Locker, that the request in flight was replayed with
// it.
func checkLoggedIn(t *testing.T, got afterChange) {
	t.Helper()
	if got.stored != got.bob || got.mem != got.bob {
		t.Errorf("after login: store holds bob = %v, memory holds bob = %v; want both", got.stored == got.bob, got.mem == got.bob)
	}
	if !got.locker && got.code != 200 {
		t.Errorf("request in flight during the login: status %d; want 200 (replayed with the new tokens)", got.code)
	}
}

func TestLoginInAnotherTransportIsPickedUp(t *testing.T) {
	srv := newProtoServer(t)
	store := &MemoryStore{} // shared, as a file would be between processes
	mine := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	c := NewClient(nil, mine)
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 403 {
		t.Fatalf("status before any login = %d; want 403", code)
	}
	other := &Transport{Store: store}
	if err := other.SetTokens(context.Background(), srv.issue()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/echo", noGetBody{strings.NewReader("payload")})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "POST /api/echo payload" {
		t.Errorf("after a login elsewhere: got %d %q; want 200 with the body replayed", resp.StatusCode, body)
	}
	if n := srv.refreshCalls.Load(); n != 0 {
		t.Errorf("refresh calls = %d; want 0", n)
	}
}

func TestRefresherPanicFailsTheRefresh(t *testing.T) {
	srv := newProtoServer(t)
	calls := 0
	tr := &Transport{
		Store: NewMemoryStore(srv.stale()),
		Refresher: RefreshFunc(func(ctx context.Context, cur Tokens) (Tokens, error) {
			calls++
			if calls == 1 {
				panic("bug in a refresher")
			}
			return (&Endpoint{URL: srv.URL + "/auth/refreshtoken"}).Refresh(ctx, cur)
		}),
	}
	c := NewClient(nil, tr)
	_, err := c.Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) || errors.Is(err, ErrSessionExpired) {
		t.Fatalf("error = %v; want a transient *RefreshError", err)
	}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after the panic = %d; want 200", code)
	}
}

func TestClockAheadOfIssuerDoesNotRefreshEveryRequest(t *testing.T) {
	srv := newProtoServer(t)
	issuer := time.Now()
	srv.jwtTTL, srv.jwtNow = time.Minute, func() time.Time { return issuer }
	clock := newFakeClock(issuer.Add(2 * time.Minute)) // two minutes ahead
	tr, _ := srv.transport(srv.issue())
	tr.now = clock.now
	c := NewClient(nil, tr)
	for range 20 {
		if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
			t.Fatalf("status = %d; want 200", code)
		}
	}
	// The loaded token looks expired: one refresh. The new one looks
	// expired as well, so its refusal, not the clock, will tell.
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	srv.expireAll()
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after the token expired = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 2 {
		t.Errorf("refresh calls after the token expired = %d; want 2", n)
	}
}

// gateStore is a MemoryStore whose Clear, once armed, signals entered and
// waits for release.
type gateStore struct {
	MemoryStore
	armed            atomic.Bool
	entered, release chan struct{}
}

func (s *gateStore) Clear(ctx context.Context) error {
	if s.armed.Load() {
		close(s.entered)
		<-s.release
	}
	return s.MemoryStore.Clear(ctx)
}

func TestLogoutIsNotUndoneByRefusedRequest(t *testing.T) {
	srv := newProtoServer(t)
	store := &gateStore{entered: make(chan struct{}), release: make(chan struct{})}
	store.MemoryStore.Save(context.Background(), srv.issue())
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	ctx := context.Background()
	if _, err := tr.Tokens(ctx); err != nil {
		t.Fatal(err)
	}
	store.armed.Store(true)
	logout := make(chan error)
	go func() { logout <- tr.Logout(ctx) }()
	<-store.entered // memory cleared, store not yet
	codes := make(chan int)
	go func() {
		code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x") // no tokens: refused
		codes <- code
	}()
	time.Sleep(20 * time.Millisecond) // let it reach the store, if it can
	close(store.release)
	if err := <-logout; err != nil {
		t.Fatal(err)
	}
	if code := <-codes; code != 403 {
		t.Errorf("request during the logout: status %d; want its 403", code)
	}
	if tok, err := tr.Tokens(ctx); !errors.Is(err, ErrNoTokens) {
		t.Errorf("after Logout: Tokens() = %v, %v; want ErrNoTokens", tok, err)
	}
}

func TestHangingEarlyRefreshDoesNotHoldGoodTokens(t *testing.T) {
	checkGoroutines(t)
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	defer close(srv.refreshGate)
	issued := time.Now()
	clock := newFakeClock(issued)
	srv.jwtTTL, srv.jwtNow = 2*time.Minute, clock.now
	tr, _ := srv.transport(srv.issue())
	tr.now, tr.EarlyRefresh, tr.RefreshTimeout = clock.now, 90*time.Second, 3*time.Second
	clock.add(time.Minute) // due, a minute left
	c := NewClient(nil, tr)
	for i, timeout := range []time.Duration{500 * time.Millisecond, 10 * time.Second, 10 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/x", nil)
		resp, err := c.Do(req)
		cancel()
		if err != nil {
			t.Fatalf("request %d: %v; want it sent with its still-good token", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d: status %d; want 200", i, resp.StatusCode)
		}
	}
	// The refresh started in the background reaches the endpoint, and
	// hangs there.
	waitFor(t, "the refresh to reach the endpoint", func() bool { return srv.refreshCalls.Load() >= 1 })
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1 (still under way)", n)
	}
}

func TestRefresherGoexitDoesNotHang(t *testing.T) {
	srv := newProtoServer(t)
	tr := &Transport{
		Store:          NewMemoryStore(srv.stale()),
		Refresher:      RefreshFunc(func(context.Context, Tokens) (Tokens, error) { runtime.Goexit(); return Tokens{}, nil }),
		RefreshTimeout: 100 * time.Millisecond,
	}
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) {
		t.Errorf("error = %v; want a *RefreshError", err)
	}
}

type panickyStore struct{ MemoryStore }

func (*panickyStore) Load(context.Context) (Tokens, error) { panic("store bug") }

func TestStoreLoadPanicIsAnError(t *testing.T) {
	srv := newProtoServer(t)
	_, err := NewClient(nil, &Transport{Store: &panickyStore{}}).Get(srv.URL + "/api/x")
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("error = %v; want one saying that Store.Load panicked", err)
	}
}

func TestRefresherMayLogInAgainWithLockerStore(t *testing.T) {
	srv := newProtoServer(t)
	store := &lockingStore{}
	var tr *Transport
	tr = &Transport{
		Store: store,
		Refresher: RefreshFunc(func(ctx context.Context, cur Tokens) (Tokens, error) {
			// The refresh token is dead: log in again instead.
			if err := tr.SetTokens(ctx, srv.issue()); err != nil {
				return Tokens{}, err
			}
			return Tokens{}, &RefreshError{Err: errors.New("logged in again")}
		}),
		RefreshTimeout: 5 * time.Second,
	}
	if err := tr.SetTokens(context.Background(), srv.stale()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x")
	if code != 200 {
		t.Errorf("status = %d; want 200 with the new login", code)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %v: SetTokens inside the refresh waited for the store's lock", d)
	}
}

// setClock makes tr read the time from now: the one place where the tests
// of the defects issue reach into the Transport for its clock.
func setClock(tr *Transport, now func() time.Time) { tr.now = now }

// rotatingServer is a header-protocol server that rotates only the refresh
// token: every refresh spends the refresh token (a second use is refused
// with 401) and answers the same access token with a new expiry, an hour
// after now(). Its API takes the access token with the current refresh
// token, and refuses everything while expired is set, until a refresh.
type rotatingServer struct {
	*httptest.Server
	access string
	now    func() time.Time

	mu      sync.Mutex // guards current, spent and expired
	current string
	spent   map[string]bool
	expired bool

	refreshCalls, reuses atomic.Int64
}

func newRotatingServer(t *testing.T, now func() time.Time) *rotatingServer {
	t.Helper()
	s := &rotatingServer{access: "same-access-" + randomString(), now: now, current: "ref-" + randomString(), spent: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth/refreshtoken", func(w http.ResponseWriter, r *http.Request) {
		s.refreshCalls.Add(1)
		rt := r.Header.Get("refreshToken")
		s.mu.Lock()
		defer s.mu.Unlock()
		if rt != s.current {
			if s.spent[rt] {
				s.reuses.Add(1)
			}
			http.Error(w, "bad refresh token", http.StatusUnauthorized)
			return
		}
		s.spent[rt] = true
		s.current = "ref-" + randomString()
		s.expired = false
		json.NewEncoder(w).Encode(map[string]string{"accessToken": s.access, "refreshToken": s.current,
			"expiry": s.now().Add(time.Hour).Format(time.RFC3339Nano)})
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		ok := !s.expired && r.Header.Get("accessToken") == s.access && r.Header.Get("refreshToken") == s.current
		s.mu.Unlock()
		if !ok {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		io.WriteString(w, "ok")
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *rotatingServer) pair() Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Tokens{AccessToken: s.access, RefreshToken: s.current, Expiry: s.now().Add(time.Hour)}
}

// getAll sends a GET to url through each of trs at once, and returns the
// error of each, or one for a status other than 200.
func getAll(trs []*Transport, url string) []error {
	errs := make([]error, len(trs))
	var wg sync.WaitGroup
	for i, tr := range trs {
		wg.Go(func() {
			resp, err := NewClient(nil, tr).Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// TestSharedStoreNeverSpendsRefreshTokenTwice runs two Transports, as two
// processes would, on one FileStore against a server that rotates only the
// refresh token, and makes both need a refresh at once, many times over:
// by the clock (ahead of expiry) and by a refusal.
func TestSharedStoreNeverSpendsRefreshTokenTwice(t *testing.T) {
	const iterations = 40
	for _, mode := range []string{"expired by the clock", "refused"} {
		t.Run(mode, func(t *testing.T) {
			clock := newFakeClock(time.Now())
			srv := newRotatingServer(t, clock.now)
			path := tokenPath(t)
			if err := NewFileStore(path).Save(context.Background(), srv.pair()); err != nil {
				t.Fatal(err)
			}
			var trs [2]*Transport
			for i := range trs {
				trs[i] = &Transport{Store: NewFileStore(path), Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
				setClock(trs[i], clock.now)
			}
			failed := 0
			for it := range iterations {
				if mode == "refused" {
					srv.mu.Lock()
					srv.expired = true
					srv.mu.Unlock()
				} else {
					clock.add(2 * time.Hour)
				}
				for i, err := range getAll(trs[:], srv.URL+"/api/x") {
					if err != nil {
						failed++
						t.Errorf("iteration %d, transport %d: %v", it, i, err)
					}
				}
				if n := srv.reuses.Load(); n != 0 || failed != 0 {
					t.Fatalf("iteration %d: refresh token reuses = %d, failed requests = %d; want 0 and 0", it, n, failed)
				}
			}
			if n := srv.refreshCalls.Load(); n != iterations {
				t.Errorf("refresh calls = %d; want %d, one per expiry", n, iterations)
			}
			stored, err := NewFileStore(path).Load(context.Background())
			if want := srv.pair(); err != nil || stored.RefreshToken != want.RefreshToken {
				t.Errorf("stored pair = %v, %v; want the server's current refresh token", stored, err)
			}
		})
	}
}

func TestCorruptSharedFileIsOverwrittenByRefresh(t *testing.T) {
	srv := newProtoServer(t)
	path := tokenPath(t)
	store := NewFileStore(path)
	if err := store.Save(context.Background(), srv.issue()); err != nil {
		t.Fatal(err)
	}
	var events eventRecorder
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}, OnRefresh: events.record}
	c := NewClient(nil, tr)
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 { // the good tokens are loaded
		t.Fatalf("status = %d; want 200", code)
	}
	if err := os.WriteFile(path, []byte(`{"accessToken": "half a tok`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.expireAll() // the access token is refused from now on

	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status with a corrupt token file = %d; want 200", code)
	}
	cur, err := tr.Tokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := NewFileStore(path).Load(context.Background()); err != nil || stored.AccessToken != cur.AccessToken || stored.RefreshToken != cur.RefreshToken {
		t.Errorf("token file holds %v, %v; want the refreshed pair", stored, err)
	}
	evs := events.all()
	if len(evs) != 1 || evs[0].Err != nil || !errors.Is(evs[0].StoreErr, ErrCorruptFile) {
		t.Errorf("events = %+v; want one successful refresh whose StoreErr reports ErrCorruptFile", evs)
	}
}

// TestCorruptSharedFileStaleProcessDoesNotEndSession: process A refreshes
// and saves p1; process B, which holds p0 in memory (opaque tokens: it
// learns of p1 only when refused), finds the shared file corrupt at its
// next refresh, writes its spent p0 over it, refreshes p0, is rejected, and
// deletes the file: a logout for every process. A, holding the good p1,
// then ends its session at its next refresh. Issue 10 item 8: the process
// that holds good tokens refreshes with them and overwrites the corrupt
// file; a process whose pair was spent must not end the others' session.
func TestCorruptSharedFileStaleProcessDoesNotEndSession(t *testing.T) {
	srv := newProtoServer(t)
	path := tokenPath(t)
	p0 := srv.issue()
	if err := NewFileStore(path).Save(context.Background(), p0); err != nil {
		t.Fatal(err)
	}
	expire := func(access string) {
		srv.mu.Lock()
		delete(srv.access, access)
		srv.mu.Unlock()
	}
	process := func() (*Transport, *http.Client) {
		tr := &Transport{Store: NewFileStore(path), Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
		return tr, NewClient(nil, tr)
	}
	trA, a := process()
	_, b := process()
	for _, c := range []*http.Client{a, b} {
		if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
			t.Fatalf("first request: status %d; want 200", code)
		}
	}
	expire(p0.AccessToken)
	if code, _ := get(t, a, srv.URL+"/api/x"); code != 200 { // A refreshes p0 into p1
		t.Fatalf("A after p0 expired: status %d; want 200", code)
	}
	p1, _ := trA.Tokens(context.Background())

	if err := os.WriteFile(path, []byte(`{"accessToken": "half a tok`), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Get(srv.URL + "/api/x") // B, refused with p0
	if err == nil {
		resp.Body.Close()
	}
	t.Logf("B with the spent p0 and a corrupt file: %v", err)

	expire(p1.AccessToken)
	resp, err = a.Get(srv.URL + "/api/x")
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("A after p1 expired: %v; want 200 (A's refresh token was never spent, nobody logged out)", err)
	}
	if _, err := NewFileStore(path).Load(context.Background()); err != nil {
		t.Errorf("token file: %v; want A's pair", err)
	}
}

// TestRefusalOfOldSessionKeepsNewLogin sends a request with one pair, logs
// in with another while the request is on the server, then refuses the
// request: the refusal is about the old pair, so nothing is refreshed or
// cleared, and the request is sent again with the new pair.
func TestRefusalOfOldSessionKeepsNewLogin(t *testing.T) {
	for _, kind := range []string{"MemoryStore", "Locker"} {
		t.Run(kind, func(t *testing.T) {
			srv := newProtoServer(t)
			arrived, release := make(chan struct{}), make(chan struct{})
			old := srv.issue()
			h := srv.Config.Handler
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("accessToken") == old.AccessToken {
					arrived <- struct{}{}
					<-release
					srv.api403s.Add(1)
					http.Error(w, "forbidden", http.StatusForbidden)
					return
				}
				h.ServeHTTP(w, r)
			})
			var store TokenStore = NewMemoryStore(old)
			if kind == "Locker" {
				ls := &lockingStore{}
				ls.MemoryStore.Save(context.Background(), old)
				store = ls
			}
			tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
			codes := make(chan int, 1)
			go func() {
				resp, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
			<-arrived
			login := srv.issue()
			if err := tr.SetTokens(context.Background(), login); err != nil {
				t.Fatal(err)
			}
			close(release)
			if code := <-codes; code != 200 {
				t.Errorf("status = %d; want 200, sent again with the new login", code)
			}
			if n := srv.refreshCalls.Load(); n != 0 {
				t.Errorf("refresh calls = %d; want 0", n)
			}
			if got, err := tr.Tokens(context.Background()); err != nil || got != login {
				t.Errorf("Tokens() = %v, %v; want the new login", got, err)
			}
			if got, err := store.Load(context.Background()); err != nil || got != login {
				t.Errorf("store holds %v, %v; want the new login", got, err)
			}
		})
	}
}

// TestRejectedRefreshKeepsNewerLogin rejects the refresh of one pair after
// a login has replaced it: the session that ended is the old one, and the
// login survives in memory and in the store.
func TestRejectedRefreshKeepsNewerLogin(t *testing.T) {
	for _, kind := range []string{"MemoryStore", "FileStore"} {
		t.Run(kind, func(t *testing.T) {
			srv := newProtoServer(t)
			old := srv.stale()
			var store TokenStore = NewMemoryStore(old)
			if kind == "FileStore" {
				fs := NewFileStore(tokenPath(t))
				if err := fs.Save(context.Background(), old); err != nil {
					t.Fatal(err)
				}
				store = fs
			}
			entered, release := make(chan struct{}), make(chan struct{})
			tr := &Transport{Store: store, Refresher: RefreshFunc(func(ctx context.Context, cur Tokens) (Tokens, error) {
				close(entered)
				<-release
				return Tokens{}, &RefreshError{StatusCode: 401, Err: ErrSessionExpired}
			})}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := NewClient(nil, tr).Get(srv.URL + "/api/x"); err == nil {
					resp.Body.Close()
				}
			}()
			<-entered
			login := srv.issue()
			set := make(chan error, 1)
			go func() { set <- tr.SetTokens(context.Background(), login) }() // a Locker makes it wait for the refresh
			if kind == "MemoryStore" {
				if err := <-set; err != nil {
					t.Fatal(err)
				}
				set <- nil
			}
			close(release)
			<-done
			if err := <-set; err != nil {
				t.Fatal(err)
			}
			if got, err := tr.Tokens(context.Background()); err != nil || got != login {
				t.Errorf("Tokens() = %v, %v; want the new login", got, err)
			}
			if got, err := store.Load(context.Background()); err != nil || got.AccessToken != login.AccessToken || got.RefreshToken != login.RefreshToken {
				t.Errorf("store holds %v, %v; want the new login", got, err)
			}
		})
	}
}

// TestRefreshBacksOffWhileEndpointIsDown has 50 workers send requests with
// an expired access token for 3 s while the refresh endpoint is down, then
// brings it back.
func TestRefreshBacksOffWhileEndpointIsDown(t *testing.T) {
	const (
		workers = 50
		outage  = 3 * time.Second
	)
	for _, fault := range []string{"503", "connection refused"} {
		t.Run(fault, func(t *testing.T) {
			srv := newProtoServer(t)
			var down atomic.Bool
			var attempts atomic.Int64
			base := downBase(t, &down, &attempts, fault == "connection refused")
			tok := srv.issue()
			tok.Expiry = time.Now().Add(-time.Minute)
			store := NewMemoryStore(tok)
			tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken", Base: base}}
			c := NewClient(nil, tr)

			down.Store(true)
			if fault == "503" {
				srv.refreshStatus.Store(503)
			}
			h := hammer(c, srv.URL+"/api/x", workers, outage)
			if n := attempts.Load(); n > 20 {
				t.Errorf("refresh attempts during a %v outage with %d workers = %d; want at most 20", outage, workers, n)
			}
			if h.backoffs == 0 {
				t.Errorf("none of %d failed requests matched ErrBackoff and *RefreshError; want the requests held back to say so", h.failures)
			}
			for _, err := range h.unexpected[:min(3, len(h.unexpected))] {
				t.Errorf("error = %v; want a transient *RefreshError", err)
			}
			if got, err := store.Load(context.Background()); err != nil || got != tok {
				t.Errorf("store holds %v, %v; want the tokens kept", got, err)
			}

			// The endpoint is back: requests succeed again once the back-off
			// (capped at about a second) has passed.
			down.Store(false)
			srv.refreshStatus.Store(0)
			awaitSuccess(t, c, srv.URL+"/api/x", 5*time.Second)
		})
	}
}

// downBase returns a base for a refresh Endpoint that counts its requests
// and, while down is set and refuse is true, sends them to a closed port.
func downBase(t *testing.T, down *atomic.Bool, attempts *atomic.Int64, refuse bool) http.RoundTripper {
	t.Helper()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := closed.Addr().String()
	closed.Close()
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		if down.Load() && refuse {
			r = r.Clone(r.Context())
			r.URL.Host = refusing
		}
		return http.DefaultTransport.RoundTrip(r)
	})
}

// hammerResult counts the outcomes of hammer.
type hammerResult struct {
	failures, backoffs int64
	unexpected         []error // errors that are not a transient *RefreshError
}

// hammer has workers send GETs to url through c for d, and classifies
// their failures.
func hammer(c *http.Client, url string, workers int, d time.Duration) hammerResult {
	var mu sync.Mutex // guards res
	var res hammerResult
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					resp.Body.Close()
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				var re *RefreshError
				mu.Lock()
				res.failures++
				switch {
				case errors.Is(err, ErrBackoff) && errors.As(err, &re):
					res.backoffs++
				case errors.As(err, &re) && !errors.Is(err, ErrSessionExpired):
				default:
					res.unexpected = append(res.unexpected, err)
				}
				mu.Unlock()
				time.Sleep(time.Millisecond) // pace the loop; not a wait for anything
			}
		})
	}
	time.Sleep(d) // the length of the run, not a wait for an event
	close(stop)
	wg.Wait()
	return res
}

// awaitSuccess sends GETs to url through c until one is answered 200, and
// fails the test if none is within limit.
func awaitSuccess(t *testing.T, c *http.Client, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests still fail %v after the endpoint came back: %v", limit, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRefusalWithOtherTokenRefreshesDuringBackoff: a refused request whose
// token is not the one whose refresh failed refreshes at once.
func TestRefusalWithOtherTokenRefreshesDuringBackoff(t *testing.T) {
	srv := newProtoServer(t)
	tok := srv.issue()
	tok.Expiry = time.Now().Add(-time.Minute)
	tr, _ := srv.transport(tok)
	c := NewClient(nil, tr)
	srv.refreshStatus.Store(503)
	for range 2 {
		if resp, err := c.Get(srv.URL + "/api/x"); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d with an expired token and the endpoint down; want an error", resp.StatusCode)
		}
	}
	srv.refreshStatus.Store(0)
	if err := tr.SetTokens(context.Background(), srv.stale()); err != nil {
		t.Fatal(err)
	}
	calls := srv.refreshCalls.Load()
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status = %d; want 200 after an immediate refresh", code)
	}
	if n := srv.refreshCalls.Load() - calls; n != 1 {
		t.Errorf("refresh calls for the refused request = %d; want 1", n)
	}
}

// TestLoginDoesNotWaitForAHangingClear: with a store that is not a Locker,
// writes to the store are serialized by the manager's writeMu, which is
// held across the store's Save or Clear and taken without regard to the
// caller's context. A Logout whose Clear hangs (a network store that does
// not answer) makes every later SetTokens and Login hang too, past their
// own deadlines: "logouts and logins do not block behind each other's I/O"
// (issue 11), and a call with a deadline returns by it.
func TestLoginDoesNotWaitForAHangingClear(t *testing.T) {
	srv := newProtoServer(t)
	store := &gateStore{entered: make(chan struct{}), release: make(chan struct{})}
	store.MemoryStore.Save(context.Background(), srv.issue())
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	if _, err := tr.Tokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.armed.Store(true)
	logout := make(chan error, 1)
	go func() { logout <- tr.Logout(context.Background()) }()
	<-store.entered // the Clear hangs
	defer func() {
		close(store.release)
		<-logout
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr.SetTokens(ctx, srv.issue()) }()
	select {
	case err := <-done:
		t.Logf("SetTokens: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("SetTokens with a 200 ms deadline still blocked after 5 s behind a Logout whose Clear hangs")
	}
}

// flakyClearStore is a MemoryStore whose Clear fails while failing is set.
type flakyClearStore struct {
	*MemoryStore
	failing atomic.Bool
}

func (s *flakyClearStore) Clear(ctx context.Context) error {
	if s.failing.Load() {
		return errors.New("store unreachable")
	}
	return s.MemoryStore.Clear(ctx)
}

// TestEndedSessionPicksUpNewLoginAfterFailedClear: a refresh is rejected and
// the store's Clear fails once (a Redis blip, a read-only file system for a
// moment). The ended state is then recorded as "not saved", the mark that
// keeps a failed Logout from being undone, and reload never reads the store
// again: when the user logs in again through another process or replica,
// this Transport keeps sending requests without tokens, refused, until it
// is restarted. The Transport's doc: after the session ended, "when such a
// request is refused, the Store is read again, in case another process has
// logged in meanwhile"; only a Logout whose clear failed is an exception.
func TestEndedSessionPicksUpNewLoginAfterFailedClear(t *testing.T) {
	srv := newProtoServer(t)
	store := &flakyClearStore{MemoryStore: NewMemoryStore(srv.stale())}
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	c := NewClient(nil, tr)

	srv.refreshStatus.Store(http.StatusUnauthorized)
	store.failing.Store(true)
	if _, err := c.Get(srv.URL + "/api/x"); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("request whose refresh is rejected: %v; want ErrSessionExpired", err)
	}
	store.failing.Store(false)
	srv.refreshStatus.Store(0)

	// Another process logs in and saves its pair.
	if err := store.MemoryStore.Save(context.Background(), srv.issue()); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("status after another process logged in = %d; want 200 (the store read again)", code)
	}
}

// TestDefaultEarlyWindowAsDocumented: the README ("Ahead of time, without
// waiting") and CHANGELOG say the default window is "a quarter of the
// token's lifetime (at most 30 s) but at least twice the last refresh's
// duration"; the code (and the doc of EarlyRefresh) use a tenth of the
// lifetime and one and a half times the last refresh once a refresh was
// measured. A 100 s token after a 10 s refresh is refreshed 15 s before
// expiry, where the README promises at least 25 s. One of them is wrong;
// users size timeouts and lifetimes by the README.
func TestDefaultEarlyWindowAsDocumented(t *testing.T) {
	var tr Transport
	tr.init()
	tr.m.lastRefresh.Store(int64(10 * time.Second))
	const life = 100 * time.Second
	readme := max(min(life/10, DefaultEarlyRefresh), 10*time.Second*3/2) // "a tenth ... at most 30 s, at least one and a half times the last refresh"
	if got := tr.m.window(life); got != readme {
		t.Errorf("window for a %v token after a 10 s refresh = %v; the README says %v", life, got, readme)
	}
}

// TestSetTokensOfThePairBeingRefreshed: while a refresh of pair P is on the
// wire (the server is about to spend P's refresh token and answer Q),
// the application calls SetTokens(P) with the very pair being refreshed (it
// re-applies the tokens it keeps, on a resume or a config reload). SetTokens
// wins, as documented for a new login, so Q, the only copy of the rotated
// refresh token, is dropped, and the Transport goes on with P, whose refresh
// token is spent: the next refusal refreshes P again (a reuse; with reuse
// detection the whole grant is revoked) and the session ends. A refresh
// must not be undone by a SetTokens of the pair it refreshed: it is no new
// session, and the Transport knows that P is spent.
func TestSetTokensOfThePairBeingRefreshed(t *testing.T) {
	for _, locker := range []bool{false, true} {
		t.Run(fmt.Sprintf("Locker %v", locker), func(t *testing.T) {
			srv := newProtoServer(t)
			srv.refreshGate = make(chan struct{})
			var store TokenStore = &MemoryStore{}
			if locker {
				store = &lockingStore{}
			}
			tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
			ctx := context.Background()
			p := srv.stale()
			if err := tr.SetTokens(ctx, p); err != nil {
				t.Fatal(err)
			}
			c := NewClient(nil, tr)
			inFlight := make(chan int)
			go func() {
				code, _ := get(t, c, srv.URL+"/api/x")
				inFlight <- code
			}()
			waitFor(t, "the refresh to start", func() bool { return srv.refreshCalls.Load() != 0 })
			done := make(chan error)
			go func() { done <- tr.SetTokens(ctx, p) }() // the same pair
			if !locker {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			close(srv.refreshGate)
			if locker {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("request in flight: %d", <-inFlight)

			code, _ := get(t, c, srv.URL+"/api/x")
			if code != http.StatusOK {
				t.Errorf("next request: status %d; want 200", code)
			}
			if n := srv.reuses.Load(); n != 0 {
				t.Errorf("refresh token reuses = %d; want 0", n)
			}
		})
	}
}

// TestDefaultEarlyWindowAsREADMEStates holds the default early-refresh
// window to what the README ("Ahead of time, without waiting") and
// Transport.EarlyRefresh's doc promise: a quarter of the token's lifetime (at
// most 30 s) before any refresh was measured, then a tenth of the lifetime
// but at least one and a half times the last refresh's duration, capped at
// half the lifetime.
func TestDefaultEarlyWindowAsREADMEStates(t *testing.T) {
	tests := []struct {
		name        string
		life        time.Duration
		lastRefresh time.Duration // 0: none measured yet
		want        time.Duration
	}{
		{"before any refresh", 40 * time.Second, 0, 10 * time.Second},
		{"capped at 30 s", 10 * time.Minute, 0, 30 * time.Second},
		{"after a fast refresh", 40 * time.Second, time.Millisecond, 4 * time.Second},
		{"after a slow refresh", 40 * time.Second, 8 * time.Second, 12 * time.Second},
		{"capped at half the lifetime", 2 * time.Second, 800 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{Store: NewMemoryStore(Tokens{})}
			m := tr.manager()
			m.lastRefresh.Store(int64(tt.lastRefresh))
			if got := m.window(tt.life); got != tt.want {
				t.Errorf("window(%v) after a refresh of %v = %v; want %v", tt.life, tt.lastRefresh, got, tt.want)
			}
		})
	}
}
