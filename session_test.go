package autorefresh

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	testUser     = "alice"
	testPassword = "secret-password-1"
)

// sessionServer adds the session routes to a protoServer:
// POST /auth/login checks {"username","password"} and returns a new pair,
// GET /auth/check answers 200 for a valid access token and 403 otherwise.
type sessionServer struct {
	*protoServer
	URL string

	loginStatus  atomic.Int64           // non-zero: login answers this status
	loginBody    atomic.Pointer[string] // set: login answers 200 with this body
	checkStatus  atomic.Int64           // non-zero: check answers this status
	checkRefusal atomic.Int64           // non-zero: check refuses tokens with this status, not 403
	checkError   atomic.Pointer[string] // set: check answers with this Bearer error code

	logins, checks atomic.Int64
	loginHeaders   atomic.Pointer[http.Header]
}

func newSessionServer(t *testing.T) *sessionServer {
	t.Helper()
	s := &sessionServer{protoServer: newProtoServer(t)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/login", s.serveLogin)
	mux.HandleFunc("GET /auth/check", s.serveCheck)
	mux.Handle("/", s.protoServer.Config.Handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *sessionServer) serveLogin(w http.ResponseWriter, r *http.Request) {
	s.logins.Add(1)
	h := r.Header.Clone()
	s.loginHeaders.Store(&h)
	if code := s.loginStatus.Load(); code != 0 {
		http.Error(w, "login refused", int(code))
		return
	}
	if body := s.loginBody.Load(); body != nil {
		io.WriteString(w, *body)
		return
	}
	var creds struct{ Username, Password string }
	if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&creds) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if creds.Username != testUser || creds.Password != testPassword {
		http.Error(w, "wrong password "+creds.Password, http.StatusUnauthorized)
		return
	}
	tok := s.issue()
	json.NewEncoder(w).Encode(map[string]string{"accessToken": tok.AccessToken, "refreshToken": tok.RefreshToken})
}

func (s *sessionServer) serveCheck(w http.ResponseWriter, r *http.Request) {
	s.checks.Add(1)
	if e := s.checkError.Load(); e != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="test", error="`+*e+`"`)
	}
	if code := s.checkStatus.Load(); code != 0 {
		http.Error(w, "check answers "+r.Header.Get("accessToken"), int(code))
		return
	}
	if !s.valid(r.Header.Get("accessToken")) {
		code := http.StatusForbidden
		if c := s.checkRefusal.Load(); c != 0 {
			code = int(c)
		}
		http.Error(w, "refused", code)
		return
	}
	io.WriteString(w, `{"user":"alice"}`)
}

func (s *sessionServer) transport(tok Tokens) (*Transport, *MemoryStore) {
	store := NewMemoryStore(tok)
	return &Transport{Store: store, Refresher: &Endpoint{URL: s.URL + "/auth/refreshtoken"}}, store
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// assertNoSecrets fails if err's text holds any of the secrets.
func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func TestLoginSavesTokens(t *testing.T) {
	srv := newSessionServer(t)
	old := srv.stale()
	tr, store := srv.transport(old)
	c := &http.Client{Transport: tr}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
		t.Fatalf("before login: status %d; want 200 after a refresh", code)
	}
	cur, _ := tr.Tokens(t.Context())

	if err := tr.Login(t.Context(), srv.URL+"/auth/login", credentials{testUser, testPassword}); err != nil {
		t.Fatalf("Login: %v", err)
	}
	h := *srv.loginHeaders.Load()
	if got := h.Get("accessToken") + h.Get("refreshToken"); got != "" {
		t.Errorf("login request carried the old tokens")
	}
	stored, err := store.Load(t.Context())
	if err != nil {
		t.Fatalf("store Load after Login: %v", err)
	}
	if stored.AccessToken == cur.AccessToken || !srv.valid(stored.AccessToken) {
		t.Errorf("store does not hold the pair from the login")
	}
	if got, _ := tr.Tokens(t.Context()); got != stored {
		t.Errorf("Tokens after Login differ from the stored pair")
	}
	refreshes := srv.refreshCalls.Load()
	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("after login: status %d; want 200", code)
	}
	if got := srv.refreshCalls.Load(); got != refreshes {
		t.Errorf("refresh calls after login = %d; want %d", got, refreshes)
	}
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name     string
		status   int    // login answers this status
		body     string // login answers 200 with this body
		creds    any
		rejected bool
		code     int // want SessionError.StatusCode
	}{
		{name: "wrong password", creds: credentials{testUser, "wrong-password-2"}, rejected: true, code: 401},
		{name: "400", status: 400, creds: credentials{testUser, testPassword}, rejected: true, code: 400},
		{name: "403", status: 403, creds: credentials{testUser, testPassword}, rejected: true, code: 403},
		{name: "500", status: 500, creds: credentials{testUser, testPassword}, code: 500},
		{name: "503", status: 503, creds: credentials{testUser, testPassword}, code: 503},
		{name: "redirect", status: 307, creds: credentials{testUser, testPassword}, code: 307},
		{name: "malformed", body: `{"accessToken": "tok-secret-3"`, creds: credentials{testUser, testPassword}, code: 200},
		{name: "wrong type", body: `{"accessToken": 42}`, creds: credentials{testUser, testPassword}, code: 200},
		{name: "bad expiry", body: `{"accessToken":"tok-secret-3","expiry":"tok-secret-3"}`, creds: credentials{testUser, testPassword}, code: 200},
		{name: "no access token", body: `{"refreshToken": "tok-secret-3"}`, creds: credentials{testUser, testPassword}, code: 200},
		{name: "oversized", body: `{"accessToken":"tok-secret-3","x":"` + strings.Repeat("a", DefaultMaxResponseBytes) + `"}`,
			creds: credentials{testUser, testPassword}, code: 200},
		{name: "unencodable", creds: func() {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSessionServer(t)
			srv.loginStatus.Store(int64(tt.status))
			if tt.body != "" {
				srv.loginBody.Store(&tt.body)
			}
			before := srv.issue()
			tr, store := srv.transport(before)

			err := tr.Login(t.Context(), srv.URL+"/auth/login", tt.creds)
			if err == nil {
				t.Fatal("Login: got nil error; want one")
			}
			if got := errors.Is(err, ErrLoginRejected); got != tt.rejected {
				t.Errorf("errors.Is(%v, ErrLoginRejected) = %v; want %v", err, got, tt.rejected)
			}
			var se *SessionError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SessionError", err)
			}
			if se.StatusCode != tt.code || se.Op != "login" {
				t.Errorf("SessionError{Op: %q, StatusCode: %d}; want {login, %d}", se.Op, se.StatusCode, tt.code)
			}
			assertNoSecrets(t, err, testPassword, "wrong-password-2", "tok-secret-3", before.AccessToken, before.RefreshToken)
			if got, err := store.Load(t.Context()); err != nil || got != before {
				t.Errorf("store after a failed Login changed (err %v)", err)
			}
			if got, _ := tr.Tokens(t.Context()); got != before {
				t.Errorf("Tokens after a failed Login changed")
			}
		})
	}
}

func TestLoginNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	tr := &Transport{Store: new(MemoryStore)}
	err := tr.Login(t.Context(), url+"/auth/login", credentials{testUser, testPassword})
	var se *SessionError
	if !errors.As(err, &se) || se.StatusCode != 0 || se.Err == nil {
		t.Errorf("Login to a closed server: got %v; want a *SessionError with a cause and no status", err)
	}
	if errors.Is(err, ErrLoginRejected) {
		t.Errorf("a network error is ErrLoginRejected")
	}
	if _, err := tr.Tokens(t.Context()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("Tokens after a failed Login: %v; want ErrNoTokens", err)
	}
}

func TestSessionURLRule(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://auth.example.com/login", true},
		{"http://127.0.0.1:8080/login", true},
		{"http://localhost/login", true},
		{"http://app.localhost/login", true},
		{"http://[::1]:9000/login", true},
		{"http://auth.example.com/login", false},
		{"http://user:pw-secret-4@auth.example.com/login", false},
		{"ftp://127.0.0.1/login", false},
		{"/auth/login", false},
		{"http://%zz/login-pw-secret-4", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := checkSecureURL(tt.url, false, "credentials")
			if (err == nil) != tt.ok {
				t.Errorf("checkSecureURL(%q) = %v; want ok %v", tt.url, err, tt.ok)
			}
			assertNoSecrets(t, err, "pw-secret-4")
		})
	}

	// Login and Resume refuse before sending anything.
	var sent atomic.Int64
	tr := &Transport{
		Store: NewMemoryStore(Tokens{AccessToken: "A", RefreshToken: "R"}),
		Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent.Add(1)
			return nil, errors.New("sent")
		}),
	}
	if err := tr.Login(t.Context(), "http://auth.example.com/login", credentials{testUser, testPassword}); err == nil {
		t.Errorf("Login over plain http to a remote host: got nil error")
	}
	if err := tr.Resume(t.Context(), "http://auth.example.com/check"); err == nil || errors.Is(err, ErrSessionExpired) {
		t.Errorf("Resume over plain http to a remote host: got %v; want a transient error", err)
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("requests sent = %d; want 0", n)
	}
	if _, err := tr.Tokens(t.Context()); err != nil {
		t.Errorf("Tokens after refused Resume: %v; want the tokens kept", err)
	}
}

func TestResume(t *testing.T) {
	type outcome int
	const (
		ok outcome = iota
		noTokens
		expired
		transient
	)
	tests := []struct {
		name        string
		tokens      func(*sessionServer) Tokens
		setup       func(*sessionServer, *Transport)
		want        outcome
		wantStatus  int   // SessionError.StatusCode
		wantRefresh int64 // refresh endpoint calls
		checks      int64 // check endpoint calls
	}{
		{name: "valid", tokens: (*sessionServer).issue, want: ok, checks: 1},
		{name: "nothing stored", tokens: func(*sessionServer) Tokens { return Tokens{} }, want: noTokens},
		{name: "stale access token", tokens: (*sessionServer).stale, want: ok, wantRefresh: 1, checks: 2},
		{name: "refresh token rejected", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, _ *Transport) { s.refreshStatus.Store(401) },
			want:  expired, wantRefresh: 1, checks: 1},
		{name: "unknown refresh token", tokens: func(*sessionServer) Tokens {
			return Tokens{AccessToken: "acc-unknown-6", RefreshToken: "ref-unknown-6"}
		},
			want: expired, wantRefresh: 1, checks: 1},
		{name: "refresh endpoint down", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, _ *Transport) { s.refreshStatus.Store(503) },
			want:  transient, wantRefresh: 1, checks: 1},
		{name: "check refuses a fresh token", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(403) },
			want:  expired, wantStatus: 403, wantRefresh: 1, checks: 2},
		// Resume follows the refusal policy of requests: with the default
		// scheme, a 401 without invalid_token does not refuse the token,
		// so the session is kept (and not refreshed).
		{name: "check answers 401", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(401) },
			want:  transient, wantStatus: 401, checks: 1},
		{name: "check refuses a stale token with 401", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, _ *Transport) { s.checkRefusal.Store(401) },
			want:  transient, wantStatus: 401, checks: 1},
		{name: "check refuses with 401, refresh token rejected", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, _ *Transport) { s.checkRefusal.Store(401); s.refreshStatus.Store(403) },
			want:  transient, wantStatus: 401, checks: 1},
		{name: "no refresher, 401", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, tr *Transport) { s.checkRefusal.Store(401); tr.Refresher = nil },
			want:  transient, wantStatus: 401, checks: 1},
		{name: "no refresher", tokens: (*sessionServer).stale,
			setup: func(_ *sessionServer, tr *Transport) { tr.Refresher = nil },
			want:  expired, wantStatus: 403, checks: 1},
		{name: "custom ShouldRefresh status", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, tr *Transport) {
				s.checkStatus.Store(419)
				tr.ShouldRefresh = func(r *http.Response) bool { return r.StatusCode == 419 }
			},
			want: expired, wantStatus: 419, wantRefresh: 1, checks: 2},
		{name: "check answers 403 insufficient_scope", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) {
				s.checkStatus.Store(403)
				s.checkError.Store(ptr("insufficient_scope"))
			},
			want: transient, wantStatus: 403, checks: 1},
		{name: "check answers 401 invalid_request", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) {
				s.checkStatus.Store(401)
				s.checkError.Store(ptr("invalid_request"))
			},
			want: transient, wantStatus: 401, checks: 1},
		{name: "check answers 401 invalid_token", tokens: (*sessionServer).stale,
			setup: func(s *sessionServer, _ *Transport) {
				s.checkRefusal.Store(401)
				s.checkError.Store(ptr("invalid_token"))
			},
			want: ok, wantRefresh: 1, checks: 2},
		{name: "check answers 500", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(500) },
			want:  transient, wantStatus: 500, checks: 1},
		{name: "check answers 503", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(503) },
			want:  transient, wantStatus: 503, checks: 1},
		{name: "check answers 404", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(404) },
			want:  transient, wantStatus: 404, checks: 1},
		{name: "check redirects", tokens: (*sessionServer).issue,
			setup: func(s *sessionServer, _ *Transport) { s.checkStatus.Store(302) },
			want:  transient, wantStatus: 302, checks: 1},
		{name: "host not in Hosts", tokens: (*sessionServer).issue,
			setup: func(_ *sessionServer, tr *Transport) { tr.Hosts = []string{"api.example.com"} },
			want:  transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSessionServer(t)
			before := tt.tokens(srv)
			tr, store := srv.transport(before)
			if tt.setup != nil {
				tt.setup(srv, tr)
			}

			err := tr.Resume(t.Context(), srv.URL+"/auth/check")

			assertNoSecrets(t, err, before.AccessToken, before.RefreshToken)
			if got := srv.refreshCalls.Load(); got != tt.wantRefresh {
				t.Errorf("refresh calls = %d; want %d", got, tt.wantRefresh)
			}
			if got := srv.checks.Load(); got != tt.checks {
				t.Errorf("check calls = %d; want %d", got, tt.checks)
			}
			switch tt.want {
			case ok:
				checkResumed(t, srv, store, err)
			case noTokens:
				if !errors.Is(err, ErrNoTokens) {
					t.Errorf("Resume: %v; want ErrNoTokens", err)
				}
			case expired:
				checkResumeError(t, err, tt.wantStatus, true)
				checkSessionCleared(t, tr, store)
			case transient:
				checkResumeError(t, err, tt.wantStatus, false)
				checkTokensKept(t, tr, store, before)
			}
		})
	}
}

// checkResumed checks a Resume that succeeded: the store holds a valid pair.
func checkResumed(t *testing.T, srv *sessionServer, store *MemoryStore, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Resume: %v; want nil", err)
	}
	if stored, loadErr := store.Load(t.Context()); loadErr != nil || !srv.valid(stored.AccessToken) {
		t.Errorf("store does not hold a valid pair after Resume (err %v)", loadErr)
	}
}

// checkResumeError checks that a failed Resume returned a *SessionError
// with wantStatus, which is ErrSessionExpired exactly when wantExpired.
func checkResumeError(t *testing.T, err error, wantStatus int, wantExpired bool) {
	t.Helper()
	var se *SessionError
	if !errors.As(err, &se) {
		t.Fatalf("Resume: %v; want a *SessionError", err)
	}
	if se.Op != "resume" || se.StatusCode != wantStatus {
		t.Errorf("SessionError{Op: %q, StatusCode: %d}; want {resume, %d}", se.Op, se.StatusCode, wantStatus)
	}
	if got := errors.Is(err, ErrSessionExpired); got != wantExpired {
		t.Errorf("errors.Is(%v, ErrSessionExpired) = %v; want %v", err, got, wantExpired)
	}
}

// checkSessionCleared checks that the store and the Transport hold no
// tokens after the session expired.
func checkSessionCleared(t *testing.T, tr *Transport, store *MemoryStore) {
	t.Helper()
	_, loadErr := store.Load(t.Context())
	_, tokErr := tr.Tokens(t.Context())
	if !errors.Is(loadErr, ErrNoTokens) || !errors.Is(tokErr, ErrNoTokens) {
		t.Errorf("after expiry: store Load err %v, Tokens err %v; want ErrNoTokens for both", loadErr, tokErr)
	}
}

// checkTokensKept checks that a transient failure kept the tokens, in the
// store and in the Transport.
func checkTokensKept(t *testing.T, tr *Transport, store *MemoryStore, before Tokens) {
	t.Helper()
	if stored, loadErr := store.Load(t.Context()); loadErr != nil || stored != before {
		t.Errorf("store after a transient failure changed (err %v)", loadErr)
	}
	if _, tokErr := tr.Tokens(t.Context()); tokErr != nil {
		t.Errorf("Tokens after a transient failure: %v; want the tokens kept", tokErr)
	}
}

func ptr[T any](v T) *T { return &v }

func TestResumeRefreshFailureIsRefreshError(t *testing.T) {
	srv := newSessionServer(t)
	tr, _ := srv.transport(srv.stale())
	srv.refreshStatus.Store(502)
	err := tr.Resume(t.Context(), srv.URL+"/auth/check")
	var re *RefreshError
	if !errors.As(err, &re) || re.StatusCode != 502 {
		t.Errorf("Resume with the refresh endpoint answering 502: %v; want a *RefreshError with status 502", err)
	}
}

func TestResumeNetworkErrorKeepsTokens(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	tok := Tokens{AccessToken: "acc-secret-5", RefreshToken: "ref-secret-5"}
	store := NewMemoryStore(tok)
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: url + "/auth/refreshtoken"}}
	err := tr.Resume(t.Context(), url+"/auth/check")
	if err == nil || errors.Is(err, ErrSessionExpired) {
		t.Fatalf("Resume against a closed server: %v; want a transient error", err)
	}
	assertNoSecrets(t, err, tok.AccessToken, tok.RefreshToken)
	if got, err := store.Load(t.Context()); err != nil || got != tok {
		t.Errorf("store after a network error changed (err %v)", err)
	}
}

func TestResumeCancelledKeepsTokens(t *testing.T) {
	srv := newSessionServer(t)
	tok := srv.stale()
	tr, store := srv.transport(tok)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tr.Resume(ctx, srv.URL+"/auth/check"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resume with a cancelled context: %v; want context.Canceled", err)
	}
	if got, err := store.Load(t.Context()); err != nil || got != tok {
		t.Errorf("store after a cancelled Resume changed (err %v)", err)
	}
}

// Many goroutines resume and send requests at once with a stale access
// token: the single-use refresh token is spent exactly once.
func TestConcurrentResumeSharesOneRefresh(t *testing.T) {
	checkGoroutines(t)
	srv := newSessionServer(t)
	tr, store := srv.transport(srv.stale())
	c := &http.Client{Transport: tr}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range 2 * n {
		wg.Go(func() {
			<-start
			if i%2 == 0 {
				errs <- tr.Resume(t.Context(), srv.URL+"/auth/check")
				return
			}
			if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
				t.Errorf("request status %d; want 200", code)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Resume: %v", err)
		}
	}
	if got := srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}
	if got := srv.reuses.Load(); got != 0 {
		t.Errorf("refresh token reuses = %d; want 0", got)
	}
	if tok, err := store.Load(t.Context()); err != nil || !srv.valid(tok.AccessToken) {
		t.Errorf("store does not hold a valid pair (err %v)", err)
	}
}

func TestLogout(t *testing.T) {
	srv := newSessionServer(t)
	tr, store := srv.transport(Tokens{})
	if err := tr.Login(t.Context(), srv.URL+"/auth/login", credentials{testUser, testPassword}); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); err != nil {
		t.Fatalf("Resume after Login: %v", err)
	}
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, ErrNoTokens) {
		t.Errorf("store Load after Logout: %v; want ErrNoTokens", err)
	}
	if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); !errors.Is(err, ErrNoTokens) {
		t.Errorf("Resume after Logout: %v; want ErrNoTokens", err)
	}
	c := &http.Client{Transport: tr}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusForbidden {
		t.Errorf("request after Logout: status %d; want 403", code)
	}
	if got := srv.refreshCalls.Load(); got != 0 {
		t.Errorf("refresh calls = %d; want 0", got)
	}
}

func TestAllowHTTPForLoginAndResume(t *testing.T) {
	for _, allow := range []bool{false, true} {
		var sent atomic.Int64
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent.Add(1)
			body := `{"accessToken":"a","refreshToken":"r"}`
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
		})
		tr := &Transport{Base: base, Store: &MemoryStore{}, AllowHTTP: allow}
		ctx := context.Background()
		loginErr := tr.Login(ctx, "http://auth.intranet.example/login", map[string]string{"username": "u"})
		resumeErr := tr.Resume(ctx, "http://auth.intranet.example/check")
		if allow {
			if loginErr != nil || resumeErr != nil || sent.Load() != 2 {
				t.Errorf("AllowHTTP: login %v, resume %v, %d requests; want both to work", loginErr, resumeErr, sent.Load())
			}
		} else if loginErr == nil || resumeErr == nil || sent.Load() != 0 {
			t.Errorf("without AllowHTTP: login %v, resume %v, %d requests; want both refused before sending", loginErr, resumeErr, sent.Load())
		}
	}
}

func TestResumeKeepsLoginMadeDuringCheck(t *testing.T) {
	srv := newProtoServer(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var checks atomic.Int64
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/check" {
			h.ServeHTTP(w, r)
			return
		}
		// Refused before and after the refresh; the check after the
		// refresh waits until a login has happened.
		if checks.Add(1) == 2 {
			close(entered)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		http.Error(w, "refused", http.StatusForbidden)
	})
	tr, store := srv.transport(srv.issue())
	done := make(chan error, 1)
	go func() { done <- tr.Resume(context.Background(), srv.URL+"/auth/check") }()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("Resume returned %v before its check after the refresh", err)
	}
	login := srv.issue()
	if err := tr.SetTokens(context.Background(), login); err != nil {
		t.Fatalf("SetTokens: %v", err)
	}
	close(release)
	<-done // what it reports about the session it checked is not the point here
	if got, err := tr.Tokens(context.Background()); err != nil || got != login {
		t.Errorf("Tokens() after Resume = %v, %v; want the login made meanwhile", got, err)
	}
	if got, err := store.Load(context.Background()); err != nil || got != login {
		t.Errorf("store after Resume = %v, %v; want the login made meanwhile", got, err)
	}
}

// failClearStore is a MemoryStore whose Clear fails, like a token file in
// a read-only directory.
type failClearStore struct{ MemoryStore }

var errClearFailed = errors.New("clear failed: read-only file system")

func (*failClearStore) Clear(context.Context) error { return errClearFailed }

func TestFailedLogoutIsNotUndone(t *testing.T) {
	srv := newProtoServer(t)
	var mu sync.Mutex
	var sent []string // access and refresh token headers seen by the API
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("accessToken"), r.Header.Get("refreshToken"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	})
	old := srv.issue()
	store := &failClearStore{}
	store.MemoryStore.Save(context.Background(), old)
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	c := NewClient(nil, tr)
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Fatalf("status before Logout = %d; want 200", code)
	}
	if err := tr.Logout(context.Background()); err == nil {
		t.Fatal("Logout = nil; want the store's error")
	}
	mu.Lock()
	sent = nil
	mu.Unlock()
	for i := range 3 {
		if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusForbidden {
			t.Errorf("request %d after the failed Logout: status %d; want 403, sent without tokens", i, code)
		}
	}
	mu.Lock()
	for _, v := range sent {
		if v == old.AccessToken || v == old.RefreshToken {
			t.Errorf("a request after the failed Logout carried the old tokens")
			break
		}
	}
	mu.Unlock()
	if n := srv.refreshCalls.Load(); n != 0 {
		t.Errorf("refresh calls = %d; want 0", n)
	}

	login := srv.issue()
	if err := tr.SetTokens(context.Background(), login); err != nil {
		t.Fatalf("SetTokens: %v", err)
	}
	mu.Lock()
	sent = nil
	mu.Unlock()
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status after SetTokens = %d; want 200", code)
	}
	mu.Lock()
	if len(sent) != 2 || sent[0] != login.AccessToken || sent[1] != login.RefreshToken {
		t.Errorf("request after SetTokens carried other tokens than the new pair")
	}
	mu.Unlock()
}

// TestResumeDoesNotRefreshNewLogin has Resume's check refuse the stored
// pair with a 401 (which DefaultShouldRefresh leaves to Resume) after a
// login replaced that pair: the refusal is about the old pair, so the new
// one is not refreshed, and it is not cleared.
func TestResumeDoesNotRefreshNewLogin(t *testing.T) {
	srv := newProtoServer(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var checks atomic.Int64
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/check" {
			h.ServeHTTP(w, r)
			return
		}
		if checks.Add(1) == 1 {
			close(entered)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		if !srv.valid(r.Header.Get("accessToken")) {
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	})
	tr, store := srv.transport(srv.issue())
	done := make(chan error, 1)
	go func() { done <- tr.Resume(context.Background(), srv.URL+"/auth/check") }()
	<-entered
	login := srv.issue()
	if err := tr.SetTokens(context.Background(), login); err != nil {
		t.Fatalf("SetTokens: %v", err)
	}
	close(release)
	<-done
	if n := srv.refreshCalls.Load(); n != 0 {
		t.Errorf("refresh calls = %d; want 0: the refusal was about the pair the login replaced", n)
	}
	if got, err := tr.Tokens(context.Background()); err != nil || got != login {
		t.Errorf("Tokens() after Resume = %v, %v; want the login made meanwhile", got, err)
	}
	if got, err := store.Load(context.Background()); err != nil || got != login {
		t.Errorf("store after Resume = %v, %v; want the login made meanwhile", got, err)
	}
}

func TestResumeStalledRefusalDoesNotHang(t *testing.T) {
	srv := newProtoServer(t)
	stallRefusals(t, srv, func(r *http.Request) bool { return r.URL.Path == "/auth/check" })
	tr, _ := srv.transport(srv.stale())
	var err error
	within(t, "Resume", func() { err = tr.Resume(context.Background(), srv.URL+"/auth/check") })
	if !errors.Is(err, ErrSessionExpired) {
		t.Errorf("Resume = %v; want ErrSessionExpired: the check refused the tokens after a refresh", err)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

func TestLoginRefusesInvalidToken(t *testing.T) {
	for name, bad := range badTokens {
		for _, field := range []string{"access", "refresh"} {
			t.Run(name+" in "+field, func(t *testing.T) {
				srv := newSessionServer(t)
				answer := map[string]string{"accessToken": "new-access", "refreshToken": "new-refresh"}
				answer[field+"Token"] = bad
				b, _ := json.Marshal(answer)
				body := string(b)
				srv.loginBody.Store(&body)
				old := srv.issue()
				tr, store := srv.transport(old)
				err := tr.Login(context.Background(), srv.URL+"/auth/login", credentials{testUser, testPassword})
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("Login: error = %v; want ErrInvalidToken", err)
				}
				if got, err := tr.Tokens(context.Background()); err != nil || got != old {
					t.Errorf("Tokens() = %v, %v; want the old pair kept", got, err)
				}
				if got, err := store.Load(context.Background()); err != nil || got != old {
					t.Errorf("store holds %v, %v; want the old pair kept", got, err)
				}
			})
		}
	}
}

// TestResumeBearer403KeepsSession: with BearerScheme, Resume follows the
// refusal policy of requests (BearerShouldRefresh): a 403 from the check
// endpoint that does not name invalid_token is about the rights of a good
// token, not about the token, so Resume returns a *SessionError with the
// status, keeps the tokens and does not refresh; a 403 that names
// invalid_token is refreshed, and ends the session when it comes back.
func TestResumeBearer403KeepsSession(t *testing.T) {
	tests := []struct {
		name, challenge string
		wantExpired     bool
		wantRefresh     int64
	}{
		{"403 without challenge", "", false, 0},
		{"403 insufficient_scope", `Bearer realm="api", error="insufficient_scope"`, false, 0},
		{"403 invalid_token", `Bearer realm="api", error="invalid_token"`, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.apiChallenge.Store(&tt.challenge)
			tok := srv.issue()
			store := NewMemoryStore(tok)
			tr := &Transport{Store: store, Refresher: srv.refresher(testNow), Scheme: BearerScheme}
			err := tr.Resume(context.Background(), srv.URL+"/api/check")
			var se *SessionError
			if !errors.As(err, &se) || se.StatusCode != 403 {
				t.Fatalf("Resume: %v; want a *SessionError with status 403", err)
			}
			if got := errors.Is(err, ErrSessionExpired); got != tt.wantExpired {
				t.Errorf("errors.Is(%v, ErrSessionExpired) = %v; want %v", err, got, tt.wantExpired)
			}
			if n := srv.tokenCalls.Load(); n != tt.wantRefresh {
				t.Errorf("token calls = %d; want %d", n, tt.wantRefresh)
			}
			if tt.wantExpired {
				return
			}
			if got, err := store.Load(context.Background()); err != nil || got != tok {
				t.Errorf("store holds %v, %v; want the tokens kept", got, err)
			}
			if got, err := tr.Tokens(context.Background()); err != nil || got != tok {
				t.Errorf("Tokens() = %v, %v; want the tokens kept", got, err)
			}
		})
	}
}

// TestLoginWithoutStoreSendsNothing: a Transport without a Store returns
// ErrNoStore from every method (see ErrNoStore). Login must say so before
// it sends the credentials: otherwise the server starts a session whose
// tokens are then thrown away, and a refusal of the credentials hides the
// configuration error behind ErrLoginRejected.
func TestLoginWithoutStoreSendsNothing(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusUnauthorized} {
		var logins atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			logins.Add(1)
			w.WriteHeader(status)
			io.WriteString(w, `{"accessToken":"a","refreshToken":"r"}`)
		}))
		err := (&Transport{}).Login(context.Background(), srv.URL, map[string]string{"username": testUser, "password": testPassword})
		srv.Close()
		if !errors.Is(err, ErrNoStore) {
			t.Errorf("login answered %d: error = %v; want ErrNoStore", status, err)
		}
		if n := logins.Load(); n != 0 {
			t.Errorf("login answered %d: login requests = %d; want 0", status, n)
		}
	}
}
