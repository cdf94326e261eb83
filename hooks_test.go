package autorefresh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds. It fails the test if that takes
// absurdly long, so that a bug hangs no test run; it asserts nothing about
// speed.
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

// eventRecorder collects the RefreshEvents of a Transport.
type eventRecorder struct {
	mu     sync.Mutex // guards events
	events []RefreshEvent
}

func (r *eventRecorder) record(e RefreshEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *eventRecorder) all() []RefreshEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RefreshEvent(nil), r.events...)
}

// checkNoSecrets fails if s contains any of secrets.
func checkNoSecrets(t *testing.T, what, s string, secrets []string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s contains the token value %q: %s", what, sec, s)
		}
	}
}

// gatedBearer returns a Transport with BearerScheme and an OAuth2
// refresher for srv, whose token endpoint is held until the returned
// channel is closed. Its clock is testNow plus *offset.
func gatedBearer(t *testing.T, srv *oauthServer, tok Tokens, offset *atomic.Int64) (*Transport, *MemoryStore, *eventRecorder, *atomic.Int64) {
	t.Helper()
	now := func() time.Time { return testNow.Add(time.Duration(offset.Load())) }
	o := srv.refresher(testNow)
	o.now = now
	store := NewMemoryStore(tok)
	rec, replays := &eventRecorder{}, &atomic.Int64{}
	tr := &Transport{
		Store:     store,
		Refresher: o,
		Scheme:    BearerScheme,
		OnRefresh: rec.record,
		OnReplay:  func(*http.Request) { replays.Add(1) },
		now:       now,
	}
	return tr, store, rec, replays
}

// fire sends n concurrent GETs through c and returns their statuses and
// errors once all are done. Before that, it waits until all n requests
// wait on the Transport's refresh, then opens gate.
func fire(t *testing.T, c *http.Client, tr *Transport, url string, n int, gate chan struct{}) (codes []int, errs []error) {
	t.Helper()
	wait := startGets(c, url, n)
	waitFor(t, "every request to wait on the refresh", func() bool { return tr.Stats().Waits >= int64(n) })
	close(gate)
	return wait()
}

// startGets sends n concurrent GETs through c. The function it returns
// waits for them all and returns their statuses and errors.
func startGets(c *http.Client, url string, n int) (wait func() (codes []int, errs []error)) {
	codes, errs := make([]int, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := c.Get(url)
			errs[i] = err
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	return func() ([]int, []error) {
		wg.Wait()
		return codes, errs
	}
}

// checkAllOK fails the test at the first request that did not get a 200;
// note says when they should have.
func checkAllOK(t *testing.T, codes []int, errs []error, note string) {
	t.Helper()
	for i := range codes {
		if errs[i] != nil || codes[i] != 200 {
			t.Fatalf("request %d: got %d, %v; want 200%s", i, codes[i], errs[i], note)
		}
	}
}

// onlyEvent returns the one event rec recorded. It fails the test if rec
// recorded none or several.
func onlyEvent(t *testing.T, rec *eventRecorder) RefreshEvent {
	t.Helper()
	events := rec.all()
	if len(events) != 1 {
		t.Fatalf("OnRefresh calls = %d; want 1", len(events))
	}
	return events[0]
}

// checkExpiries checks the expiries of the pair before and after a
// successful refresh that ev reports.
func checkExpiries(t *testing.T, ev RefreshEvent, oldExpiry, newExpiry time.Time) {
	t.Helper()
	if !ev.OldExpiry.Equal(oldExpiry) {
		t.Errorf("OldExpiry = %v; want %v", ev.OldExpiry, oldExpiry)
	}
	if !ev.NewExpiry.Equal(newExpiry) {
		t.Errorf("NewExpiry = %v; want %v (expires_in after the refresh)", ev.NewExpiry, newExpiry)
	}
}

func TestHooksAndStatsOnSharedRefresh(t *testing.T) {
	const n = 200
	srv := newOAuthServer(t)
	srv.gate = make(chan struct{})
	stale := srv.stale()
	stale.Expiry = testNow.Add(10 * time.Minute) // refused early, e.g. revoked
	var offset atomic.Int64
	tr, store, rec, replays := gatedBearer(t, srv, stale, &offset)

	codes, errs := fire(t, NewClient(nil, tr), tr, srv.URL+"/api/x", n, srv.gate)
	checkAllOK(t, codes, errs, "")
	if got := srv.tokenCalls.Load(); got != 1 {
		t.Errorf("token calls = %d; want 1", got)
	}
	want := Stats{Requests: n, Refreshes: 1, Replays: n, Waits: n}
	if got := tr.Stats(); got != want {
		t.Errorf("stats = %+v; want %+v", got, want)
	}
	if got := replays.Load(); got != tr.Stats().Replays {
		t.Errorf("OnReplay calls = %d; want Stats().Replays = %d", got, tr.Stats().Replays)
	}
	ev := onlyEvent(t, rec)
	if ev.Proactive || ev.Err != nil || ev.SessionEnded || ev.Adopted || ev.StoreErr != nil {
		t.Errorf("event = %+v; want a reactive success", ev)
	}
	checkExpiries(t, ev, stale.Expiry, testNow.Add(time.Hour))
	if ev.Duration <= 0 {
		t.Errorf("Duration = %v; want > 0 (the refresh was held)", ev.Duration)
	}
	secrets := srv.issued()
	checkNoSecrets(t, "event %+v", fmt.Sprintf("%+v", ev), secrets)
	checkNoSecrets(t, "event %#v", fmt.Sprintf("%#v", ev), secrets)
	if saved, _ := store.Load(context.Background()); !srv.valid(saved.AccessToken) {
		t.Errorf("store holds %v; want the new pair", saved)
	}
}

func TestHooksAndStatsOnProactiveRefresh(t *testing.T) {
	const n = 200
	srv := newOAuthServer(t)
	srv.gate = make(chan struct{})
	t.Cleanup(func() { closeOnce(srv.gate) })
	tok := srv.issue()
	tok.Expiry = testNow.Add(2 * time.Minute)
	var offset atomic.Int64
	tr, _, rec, replays := gatedBearer(t, srv, tok, &offset)
	if _, err := tr.Tokens(context.Background()); err != nil { // load at testNow
		t.Fatal(err)
	}
	offset.Store(int64(100 * time.Second)) // due (2m - 30s), not expired

	// The token is due but good: every request goes out at once with it,
	// while the one refresh they started waits at the token endpoint.
	codes, errs := startGets(NewClient(nil, tr), srv.URL+"/api/x", n)()
	checkAllOK(t, codes, errs, " while the refresh is held")
	if got := srv.tokenCalls.Load(); got != 1 {
		t.Errorf("token calls while the refresh is held = %d; want 1", got)
	}
	close(srv.gate)
	waitFor(t, "the background refresh to end", func() bool { return len(rec.all()) == 1 })
	if got := srv.tokenCalls.Load(); got != 1 {
		t.Errorf("token calls = %d; want 1", got)
	}
	if got := srv.api401s.Load(); got != 0 {
		t.Errorf("refused API calls = %d; want 0", got)
	}
	want := Stats{Requests: n, Refreshes: 1, ProactiveRefreshes: 1}
	if got := tr.Stats(); got != want {
		t.Errorf("stats = %+v; want %+v (no request waited)", got, want)
	}
	if got := replays.Load(); got != 0 {
		t.Errorf("OnReplay calls = %d; want 0", got)
	}
	ev := onlyEvent(t, rec)
	if !ev.Proactive || ev.Err != nil || ev.SessionEnded {
		t.Errorf("event = %+v; want a proactive success", ev)
	}
	checkExpiries(t, ev, tok.Expiry, testNow.Add(100*time.Second+time.Hour))
	checkNoSecrets(t, "event %+v", fmt.Sprintf("%+v", ev), srv.issued())
}

// closeOnce closes ch unless it is closed already.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func TestHooksAndStatsOnFailedRefresh(t *testing.T) {
	tests := []struct {
		name        string
		spend       bool // the refresh token was used already: invalid_grant
		badClient   bool // the client secret is wrong: invalid_client
		wantEnded   bool
		wantErrCode string
	}{
		{name: "invalid_grant", spend: true, wantEnded: true, wantErrCode: "invalid_grant"},
		{name: "invalid_client", badClient: true, wantErrCode: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 100
			srv := newOAuthServer(t)
			srv.clientID, srv.clientSecret = "client", "secret"
			srv.gate = make(chan struct{})
			stale := srv.stale()
			if tt.spend {
				srv.mu.Lock()
				srv.refresh[stale.RefreshToken] = true
				srv.mu.Unlock()
			}
			var offset atomic.Int64
			tr, store, rec, replays := gatedBearer(t, srv, stale, &offset)
			if tt.badClient {
				tr.Refresher.(*OAuth2).ClientSecret = "wrong"
			}

			_, errs := fire(t, NewClient(nil, tr), tr, srv.URL+"/api/x", n, srv.gate)
			checkRefreshErrors(t, errs, tt.wantErrCode, tt.wantEnded)
			want := Stats{Requests: n, RefreshFailures: 1, Waits: n}
			if got := tr.Stats(); got != want {
				t.Errorf("stats = %+v; want %+v", got, want)
			}
			if got := replays.Load(); got != 0 {
				t.Errorf("OnReplay calls = %d; want 0", got)
			}
			ev := onlyEvent(t, rec)
			if ev.SessionEnded != tt.wantEnded || ev.Err == nil || errors.Is(ev.Err, ErrSessionExpired) != tt.wantEnded {
				t.Errorf("event = %+v; want Err set and SessionEnded %v", ev, tt.wantEnded)
			}
			if !ev.NewExpiry.IsZero() || ev.Duration <= 0 {
				t.Errorf("event = %+v; want no NewExpiry and Duration > 0", ev)
			}
			// The server echoes the refresh token in its invalid_grant
			// description.
			secrets := append(srv.issued(), srv.clientSecret, "wrong")
			checkNoSecrets(t, "event %+v", fmt.Sprintf("%+v", ev), secrets)
			checkNoSecrets(t, "error", errs[0].Error(), secrets)
			_, err := store.Load(context.Background())
			if ended := errors.Is(err, ErrNoTokens); ended != tt.wantEnded {
				t.Errorf("store load error = %v; want cleared = %v", err, tt.wantEnded)
			}
		})
	}
}

// checkRefreshErrors fails the test at the first error that is not a
// *RefreshError with code, ending the session exactly when ended.
func checkRefreshErrors(t *testing.T, errs []error, code string, ended bool) {
	t.Helper()
	for i, err := range errs {
		var re *RefreshError
		if !errors.As(err, &re) || re.ErrorCode != code || errors.Is(err, ErrSessionExpired) != ended {
			t.Fatalf("request %d: error = %v; want a *RefreshError %s (session ended: %v)", i, err, code, ended)
		}
	}
}

func TestLoggerNeverLogsTokens(t *testing.T) {
	handlers := map[string]func(io.Writer) slog.Handler{
		"json": func(b io.Writer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true})
		},
		"text": func(b io.Writer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			srv := newOAuthServer(t)
			srv.clientID, srv.clientSecret = "client", "the-client-secret"
			var offset atomic.Int64
			tr, _, _, _ := gatedBearer(t, srv, srv.stale(), &offset)
			var mu sync.Mutex // guards buf
			tr.Logger = slog.New(h(&lockedWriter{mu: &mu, w: &buf}))
			c := NewClient(nil, tr)
			ctx := context.Background()

			// A refused token: refresh and replay.
			if code, _ := get(t, c, srv.URL+"/api/a"); code != 200 {
				t.Fatalf("status = %d; want 200", code)
			}
			// Ahead of expiry.
			offset.Store(int64(time.Hour))
			if code, _ := get(t, c, srv.URL+"/api/b"); code != 200 {
				t.Fatalf("status = %d; want 200", code)
			}
			// A transient failure whose description quotes the tokens.
			cur, _ := tr.Tokens(ctx)
			body := fmt.Sprintf(`{"error":"invalid_request","error_description":"bad %s for %s"}`, cur.RefreshToken, cur.AccessToken)
			srv.tokenStatus.Store(400)
			srv.tokenBody.Store(&body)
			srv.expireAll()
			if _, err := c.Get(srv.URL + "/api/c"); err == nil {
				t.Fatal("request succeeded; want the refresh error")
			}
			// The end of the session, once the back-off after the
			// failure has passed.
			srv.tokenBody.Store(nil)
			srv.tokenStatus.Store(0)
			srv.mu.Lock()
			clear(srv.refresh)
			srv.mu.Unlock()
			var err error
			waitFor(t, "the refresh after the back-off", func() bool {
				_, err = c.Get(srv.URL + "/api/d")
				return !errors.Is(err, ErrBackoff)
			})
			if !errors.Is(err, ErrSessionExpired) {
				t.Fatalf("error = %v; want ErrSessionExpired", err)
			}

			mu.Lock()
			out := buf.String()
			mu.Unlock()
			for _, msg := range []string{"refreshing tokens", "refreshed tokens", "replaying request", "refresh failed", "invalid_grant", "invalid_request"} {
				if !strings.Contains(out, msg) {
					t.Errorf("log lacks %q:\n%s", msg, out)
				}
			}
			checkNoSecrets(t, "log", out, append(srv.issued(), srv.clientSecret))
		})
	}
}

// lockedWriter serialises writes to w: the Transport may log from several
// goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestFailedProactiveRefreshIsNotRetriedByEveryRequest: while the token
// endpoint fails transiently and the access token is still valid, requests
// ahead of expiry do not each start a new refresh and wait for it.
func TestFailedProactiveRefreshIsNotRetriedByEveryRequest(t *testing.T) {
	srv := newOAuthServer(t)
	body := `{"error":"temporarily_unavailable"}`
	srv.tokenStatus.Store(503)
	srv.tokenBody.Store(&body)
	tok := srv.issue()
	tok.Expiry = testNow.Add(2 * time.Minute)
	var offset atomic.Int64
	tr, _, _, _ := gatedBearer(t, srv, tok, &offset)
	if _, err := tr.Tokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(100 * time.Second)) // due, 20s before expiry
	c := NewClient(nil, tr)
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status = %d; want 200 with the still valid token", code)
	}
	// The refresh runs in the background; once it failed, the requests
	// that follow do not try again.
	waitFor(t, "the refresh in the background to fail", func() bool { return tr.Stats().RefreshFailures == 1 })
	for range 5 {
		if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
			t.Errorf("status = %d; want 200 with the still valid token", code)
		}
	}
	if n := srv.tokenCalls.Load(); n != 1 {
		t.Errorf("token calls = %d; want 1 (no retry by every request while the token is valid)", n)
	}
}
