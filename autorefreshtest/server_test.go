package autorefreshtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

// setup starts a server that is closed when the test ends.
func setup(t *testing.T, opts autorefreshtest.Options) *autorefreshtest.Server {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	srv := autorefreshtest.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

// response is what a test needs of an HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into a map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decoding %d response %q: %v", r.status, r.body, err)
	}
	return m
}

// do sends a request with the given headers and body and reads the response.
func do(t *testing.T, srv *autorefreshtest.Server, method, path string, header http.Header, body string) response {
	t.Helper()
	resp, err := tryDo(context.Background(), srv, method, path, header, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func tryDo(ctx context.Context, srv *autorefreshtest.Server, method, path string, header http.Header, body string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, resp.Header, b}, nil
}

func login(t *testing.T, srv *autorefreshtest.Server, user, password string) response {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	return do(t, srv, "POST", "/auth/login", http.Header{"Content-Type": {"application/json"}}, string(body))
}

// refresh calls GET /auth/refreshtoken, sending the header names in lower
// case on the wire as some clients do.
func refresh(t *testing.T, srv *autorefreshtest.Server, tok autorefresh.Tokens) response {
	t.Helper()
	h := http.Header{"refreshtoken": {tok.RefreshToken}}
	if tok.AccessToken != "" {
		h["accesstoken"] = []string{tok.AccessToken}
	}
	return do(t, srv, "GET", "/auth/refreshtoken", h, "")
}

// tokensOf reads a custom {"accessToken","refreshToken"} body.
func tokensOf(t *testing.T, r response) autorefresh.Tokens {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d (%s); want 200", r.status, r.body)
	}
	var tok autorefresh.Tokens
	if err := json.Unmarshal(r.body, &tok); err != nil {
		t.Fatalf("decoding tokens: %v", err)
	}
	return tok
}

func api(t *testing.T, srv *autorefreshtest.Server, access string) int {
	t.Helper()
	return do(t, srv, "GET", "/api/echo", http.Header{"accessToken": {access}}, "").status
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func TestLogin(t *testing.T) {
	tests := []struct {
		name       string
		users      map[string]string
		body       string
		wantStatus int
	}{
		{"default user", nil, `{"username":"alice","password":"wonderland"}`, 200},
		{"wrong password", nil, `{"username":"alice","password":"nope"}`, 401},
		{"unknown user", nil, `{"username":"bob","password":"wonderland"}`, 401},
		{"bad JSON", nil, `{"username":`, 400},
		{"custom user", map[string]string{"bob": "builder"}, `{"username":"bob","password":"builder"}`, 200},
		{"default user replaced", map[string]string{"bob": "builder"}, `{"username":"alice","password":"wonderland"}`, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{Users: tt.users})
			r := do(t, srv, "POST", "/auth/login", nil, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d; want %d", r.status, tt.wantStatus)
			}
			st := srv.Stats()
			if tt.wantStatus != 200 {
				if st.Logins != 0 || st.LoginFailures != 1 {
					t.Errorf("Logins, LoginFailures = %d, %d; want 0, 1", st.Logins, st.LoginFailures)
				}
				return
			}
			tok := tokensOf(t, r)
			if tok.AccessToken == "" || tok.RefreshToken == "" {
				t.Fatalf("login answered %s; want both tokens", r.body)
			}
			if got := api(t, srv, tok.AccessToken); got != 200 {
				t.Errorf("API status with the login's access token = %d; want 200", got)
			}
			if st.Logins != 1 || st.LoginFailures != 0 {
				t.Errorf("Logins, LoginFailures = %d, %d; want 1, 0", st.Logins, st.LoginFailures)
			}
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	first := tokensOf(t, login(t, srv, "alice", "wonderland"))
	second := tokensOf(t, refresh(t, srv, first))
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh did not rotate the refresh token")
	}
	if second.AccessToken == first.AccessToken {
		t.Fatal("refresh returned the same access token")
	}
	if got := api(t, srv, second.AccessToken); got != 200 {
		t.Errorf("API status with the new access token = %d; want 200", got)
	}
	// The refresh token of the first pair is spent.
	if r := refresh(t, srv, first); r.status != http.StatusUnauthorized {
		t.Errorf("reuse of a spent refresh token: status = %d; want 401", r.status)
	}
	// Without RevokeOnReuse the session lives on, and the access token
	// header is optional.
	third := tokensOf(t, refresh(t, srv, autorefresh.Tokens{RefreshToken: second.RefreshToken}))
	st := srv.Stats()
	want := autorefreshtest.Stats{Logins: 1, RefreshCalls: 3, Refreshes: 2, RefreshRejections: 1,
		ReuseRejections: 1, APICalls: 1}
	if st != want {
		t.Errorf("Stats = %+v; want %+v", st, want)
	}
	if got := api(t, srv, third.AccessToken); got != 200 {
		t.Errorf("API status after the rejected reuse = %d; want 200", got)
	}
}

func TestRevokeOnReuse(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		t.Run(map[bool]string{false: "keep", true: "revoke"}[revoke], func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{RevokeOnReuse: revoke})
			other := srv.Issue("bob")
			first := srv.Issue("alice")
			second := tokensOf(t, refresh(t, srv, first))
			if r := refresh(t, srv, first); r.status != http.StatusUnauthorized {
				t.Fatalf("reuse: status = %d; want 401", r.status)
			}
			wantStatus, wantAPI := 200, 200
			if revoke {
				wantStatus, wantAPI = 401, 403
			}
			if got := api(t, srv, second.AccessToken); got != wantAPI {
				t.Errorf("API status with the family's access token = %d; want %d", got, wantAPI)
			}
			if r := refresh(t, srv, second); r.status != wantStatus {
				t.Errorf("refresh with the family's current token: status = %d; want %d", r.status, wantStatus)
			}
			if got := api(t, srv, other.AccessToken); got != 200 {
				t.Errorf("API status of another session = %d; want 200", got)
			}
			st := srv.Stats()
			if st.ReuseRejections != 1 {
				t.Errorf("ReuseRejections = %d; want 1", st.ReuseRejections)
			}
			if want := map[bool]int64{false: 0, true: 1}[revoke]; st.Revocations != want {
				t.Errorf("Revocations = %d; want %d", st.Revocations, want)
			}
		})
	}
}

func TestRefreshRejections(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		token func(srv *autorefreshtest.Server, c *clock) string
	}{
		{"missing", func(*autorefreshtest.Server, *clock) string { return "" }},
		{"unknown", func(*autorefreshtest.Server, *clock) string { return "no-such-token" }},
		{"expired", func(srv *autorefreshtest.Server, c *clock) string {
			tok := srv.Issue("alice")
			c.Add(time.Hour)
			return tok.RefreshToken
		}},
		{"revoked", func(srv *autorefreshtest.Server, c *clock) string {
			tok := srv.Issue("alice")
			srv.Revoke(tok.AccessToken)
			return tok.RefreshToken
		}},
		{"access token instead", func(srv *autorefreshtest.Server, c *clock) string {
			return srv.Issue("alice").AccessToken
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t: start}
			srv := setup(t, autorefreshtest.Options{RefreshTTL: time.Hour, Now: c.Now})
			rt := tt.token(srv, c)
			r := do(t, srv, "GET", "/auth/refreshtoken", http.Header{"refreshToken": {rt}}, "")
			if r.status != http.StatusUnauthorized {
				t.Errorf("custom endpoint: status = %d; want 401", r.status)
			}
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			r = do(t, srv, "POST", "/oauth/token", formHeader, form.Encode())
			wantCode := "invalid_grant"
			if rt == "" {
				wantCode = "invalid_request"
			}
			if got := r.json(t)["error"]; r.status != 400 || got != wantCode {
				t.Errorf("token endpoint: %d %v; want 400 %s", r.status, got, wantCode)
			}
			if st := srv.Stats(); st.RefreshRejections != 2 || st.ReuseRejections != 0 || st.Refreshes != 0 {
				t.Errorf("RefreshRejections, ReuseRejections, Refreshes = %d, %d, %d; want 2, 0, 0",
					st.RefreshRejections, st.ReuseRejections, st.Refreshes)
			}
		})
	}
}

func TestRefreshTokenExpiryBoundary(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		age  time.Duration
		want int
	}{
		{time.Hour - time.Millisecond, 200},
		{time.Hour, 401},
	} {
		c := &clock{t: start}
		srv := setup(t, autorefreshtest.Options{RefreshTTL: time.Hour, Now: c.Now})
		tok := srv.Issue("alice")
		c.Add(tt.age)
		if r := refresh(t, srv, tok); r.status != tt.want {
			t.Errorf("refresh token of age %v: status = %d; want %d", tt.age, r.status, tt.want)
		}
	}
}

// jwtPayload decodes the claims of a JWT without verifying it.
func jwtPayload(t *testing.T, token string) map[string]json.Number {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts; want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]json.Number{}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for k, v := range raw {
		if n, ok := v.(json.Number); ok {
			m[k] = n
		}
	}
	return m
}

func TestSubSecondExpiry(t *testing.T) {
	const ttl = 300 * time.Millisecond
	srv := setup(t, autorefreshtest.Options{AccessTTL: ttl})
	tok := tokensOf(t, login(t, srv, "alice", "wonderland"))

	claims := jwtPayload(t, tok.AccessToken)
	iat, _ := claims["iat"].Float64()
	exp, _ := claims["exp"].Float64()
	if d := exp - iat; d < 0.299 || d > 0.301 {
		t.Errorf("exp - iat = %v s; want 0.3", d)
	}
	if got := tok.ExpiresAt(); got.IsZero() {
		t.Errorf("Tokens.ExpiresAt() is zero; want the exp claim")
	}

	expiry := time.UnixMilli(int64(math.Round(exp * 1000)))
	// On a loaded machine the first call may only be answered after the
	// expiry; TestAccessExpiryBoundary checks the boundary with a clock.
	if got := api(t, srv, tok.AccessToken); got != 200 && time.Now().Before(expiry) {
		t.Fatalf("API status before expiry = %d; want 200", got)
	}
	time.Sleep(time.Until(expiry) + time.Millisecond)
	if got := api(t, srv, tok.AccessToken); got != 403 {
		t.Fatalf("API status after expiry = %d; want 403", got)
	}
	if r := do(t, srv, "GET", "/auth/check", http.Header{"accessToken": {tok.AccessToken}}, ""); r.status != 403 {
		t.Errorf("check after expiry: status = %d; want 403", r.status)
	}
	next := tokensOf(t, refresh(t, srv, tok))
	if got := api(t, srv, next.AccessToken); got != 200 {
		t.Errorf("API status after refresh = %d; want 200", got)
	}
}

func TestAccessExpiryBoundary(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 500e6, time.UTC)
	tests := []struct {
		age  time.Duration
		want int
	}{
		{0, 200},
		{250*time.Millisecond - time.Millisecond, 200},
		{250 * time.Millisecond, 403},
		{time.Hour, 403},
	}
	for _, tt := range tests {
		c := &clock{t: start}
		srv := setup(t, autorefreshtest.Options{AccessTTL: 250 * time.Millisecond, Now: c.Now})
		tok := srv.Issue("alice")
		if want := start.Add(250 * time.Millisecond); !tok.Expiry.Equal(want) {
			t.Errorf("Expiry = %v; want %v", tok.Expiry, want)
		}
		c.Add(tt.age)
		if got := api(t, srv, tok.AccessToken); got != tt.want {
			t.Errorf("API status at age %v = %d; want %d", tt.age, got, tt.want)
		}
	}
}

func TestIssueTTL(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.IssueTTL("carol", -time.Second)
	if got := api(t, srv, tok.AccessToken); got != 403 {
		t.Errorf("API status with an expired access token = %d; want 403", got)
	}
	next := tokensOf(t, refresh(t, srv, tok))
	r := do(t, srv, "GET", "/api/me", http.Header{"accessToken": {next.AccessToken}}, "")
	if got := r.json(t)["user"]; r.status != 200 || got != "carol" {
		t.Errorf("/api/me = %d %v; want 200 carol", r.status, got)
	}
	if st := srv.Stats(); st.Logins != 0 {
		t.Errorf("Logins = %d; want 0 (Issue is not a login)", st.Logins)
	}
}

// sign returns a JWT of claims signed with method and key.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInvalidAccessTokens(t *testing.T) {
	key := []byte("test-key")
	srv := setup(t, autorefreshtest.Options{SigningKey: key})
	good := srv.Issue("alice")
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "sid": "s1", "jti": "x",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	}
	parts := strings.Split(good.AccessToken, ".")
	revoked := srv.Issue("alice")
	srv.Revoke(revoked.RefreshToken)

	tests := []struct {
		name, token string
	}{
		{"missing", ""},
		{"garbage", "not-a-jwt"},
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte("other-key"), claims())},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims())},
		{"HS384", sign(t, jwt.SigningMethodHS384, key, claims())},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(
			[]byte(`{"sub":"mallory","sid":"s1","exp":9999999999}`)) + "." + parts[2]},
		{"no exp", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "alice", "sid": "s1"})},
		{"unknown session", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "alice", "sid": "s99",
			"exp": time.Now().Add(time.Hour).Unix()})},
		{"expired", srv.IssueTTL("alice", -time.Millisecond).AccessToken},
		{"revoked", revoked.AccessToken},
	}
	if got := api(t, srv, good.AccessToken); got != 200 {
		t.Fatalf("API status with a good token = %d; want 200", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Stats()
			if got := api(t, srv, tt.token); got != 403 {
				t.Errorf("accessToken header: status = %d; want 403", got)
			}
			r := do(t, srv, "GET", "/api/echo", bearer(tt.token), "")
			if r.status != 401 {
				t.Errorf("Bearer: status = %d; want 401", r.status)
			}
			ch := r.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, `Bearer realm="autorefreshtest", error="invalid_token", error_description="`) {
				t.Errorf("WWW-Authenticate = %q; want an invalid_token challenge", ch)
			}
			after := srv.Stats()
			if d401, d403 := after.API401s-before.API401s, after.API403s-before.API403s; d401 != 1 || d403 != 1 {
				t.Errorf("API401s, API403s grew by %d, %d; want 1, 1", d401, d403)
			}
		})
	}
}

func TestAPIRoutes(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	custom := http.Header{"accessToken": {tok.AccessToken}}
	tests := []struct {
		name, method, path string
		header             http.Header
		wantStatus         int
		wantChallenge      string
	}{
		{"echo", "PUT", "/api/echo", custom, 200, ""},
		{"echo bearer", "POST", "/api/echo", bearer(tok.AccessToken), 200, ""},
		{"me", "GET", "/api/me", custom, 200, ""},
		{"status", "GET", "/api/status/503", custom, 503, ""},
		{"not found", "GET", "/api/nope", custom, 404, ""},
		{"admin custom", "GET", "/api/admin", custom, 403, ""},
		{"admin bearer", "GET", "/api/admin", bearer(tok.AccessToken), 403,
			`Bearer realm="autorefreshtest", error="insufficient_scope", scope="admin"`},
		{"admin bad bearer", "GET", "/api/admin", bearer("bad"), 401,
			`Bearer realm="autorefreshtest", error="invalid_token", error_description="the access token is malformed or its signature is invalid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.method, tt.path, tt.header, "payload")
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d (%s); want %d", r.status, r.body, tt.wantStatus)
			}
			if got := r.header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q; want %q", got, tt.wantChallenge)
			}
			if strings.HasSuffix(tt.path, "/echo") {
				m := r.json(t)
				want := map[string]any{"method": tt.method, "path": "/api/echo", "body": "payload", "user": "alice"}
				for k, v := range want {
					if m[k] != v {
						t.Errorf("echo %s = %v; want %v", k, m[k], v)
					}
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	r := do(t, srv, "GET", "/auth/check", http.Header{"accessToken": {tok.AccessToken}}, "")
	if got := r.json(t)["user"]; r.status != 200 || got != "alice" {
		t.Errorf("check = %d %v; want 200 alice", r.status, got)
	}
	srv.SetAPIReject(true) // does not affect /auth/check
	if r := do(t, srv, "GET", "/auth/check", bearer(tok.AccessToken), ""); r.status != 200 {
		t.Errorf("check with Bearer during SetAPIReject: status = %d; want 200", r.status)
	}
	if r := do(t, srv, "GET", "/auth/check", http.Header{"accessToken": {"forged"}}, ""); r.status != 403 {
		t.Errorf("check of a bad token: status = %d; want 403", r.status)
	}
	if st := srv.Stats(); st.Checks != 3 || st.CheckFailures != 1 || st.APICalls != 0 {
		t.Errorf("Checks, CheckFailures, APICalls = %d, %d, %d; want 3, 1, 0", st.Checks, st.CheckFailures, st.APICalls)
	}
}

func TestSetAPIReject(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.SetAPIReject(true)
	if got := api(t, srv, tok.AccessToken); got != 403 {
		t.Errorf("API status while rejecting = %d; want 403", got)
	}
	if r := do(t, srv, "GET", "/api/echo", bearer(tok.AccessToken), ""); r.status != 403 {
		t.Errorf("Bearer API status while rejecting = %d; want 403", r.status)
	}
	srv.SetAPIReject(false)
	if got := api(t, srv, tok.AccessToken); got != 200 {
		t.Errorf("API status after rejecting = %d; want 200", got)
	}
	if st := srv.Stats(); st.APICalls != 3 || st.API403s != 2 {
		t.Errorf("APICalls, API403s = %d, %d; want 3, 2", st.APICalls, st.API403s)
	}
}

func TestRevoke(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	a1, a2, b := srv.Issue("alice"), srv.Issue("alice"), srv.Issue("bob")
	if srv.Revoke("unknown") {
		t.Error("Revoke(unknown) = true; want false")
	}
	if !srv.Revoke(a1.AccessToken) {
		t.Error("Revoke(access token) = false; want true")
	}
	if !srv.Revoke(a1.RefreshToken) {
		t.Error("Revoke(refresh token of a revoked session) = false; want true")
	}
	if got := api(t, srv, a1.AccessToken); got != 403 {
		t.Errorf("API status of a revoked session = %d; want 403", got)
	}
	if got := api(t, srv, a2.AccessToken); got != 200 {
		t.Errorf("API status of another session = %d; want 200", got)
	}
	if n := srv.RevokeUser("alice"); n != 1 {
		t.Errorf("RevokeUser = %d; want 1", n)
	}
	if r := refresh(t, srv, a2); r.status != 401 {
		t.Errorf("refresh of a revoked session: status = %d; want 401", r.status)
	}
	if n := srv.RevokeAll(); n != 1 {
		t.Errorf("RevokeAll = %d; want 1", n)
	}
	if got := api(t, srv, b.AccessToken); got != 403 {
		t.Errorf("API status after RevokeAll = %d; want 403", got)
	}
	if st := srv.Stats(); st.Revocations != 3 {
		t.Errorf("Revocations = %d; want 3", st.Revocations)
	}
}

var formHeader = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

func TestOAuthToken(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{AccessTTL: 90 * time.Second})
	post := func(form url.Values) response {
		t.Helper()
		return do(t, srv, "POST", "/oauth/token", formHeader, form.Encode())
	}
	r := post(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}})
	if r.status != 200 {
		t.Fatalf("password grant: status = %d (%s); want 200", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", got)
	}
	m := r.json(t)
	if m["token_type"] != "Bearer" || m["expires_in"] != 90.0 || m["access_token"] == "" || m["refresh_token"] == "" {
		t.Fatalf("password grant answered %v; want a Bearer token pair expiring in 90", m)
	}
	rt := m["refresh_token"].(string)

	r = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"}})
	m2 := r.json(t)
	if r.status != 200 || m2["refresh_token"] == rt || m2["refresh_token"] == nil {
		t.Fatalf("refresh grant: %d, rotated %v; want 200 with a new refresh token", r.status, m2["refresh_token"] != rt)
	}
	if got := do(t, srv, "GET", "/api/me", bearer(m2["access_token"].(string)), "").status; got != 200 {
		t.Errorf("API status with the refreshed Bearer token = %d; want 200", got)
	}

	checkOAuthErrors(t, srv, rt)
}

// checkOAuthErrors sends token requests that are refused, rt being a spent
// refresh token, then checks the counts of TestOAuthToken.
func checkOAuthErrors(t *testing.T, srv *autorefreshtest.Server, rt string) {
	t.Helper()
	post := func(form url.Values) response {
		t.Helper()
		return do(t, srv, "POST", "/oauth/token", formHeader, form.Encode())
	}
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"reuse", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, 400, "invalid_grant"},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}}, 400, "invalid_grant"},
		{"unsupported", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "unsupported_grant_type"},
		{"repeated parameter", url.Values{"grant_type": {"password", "password"}}, 400, "invalid_request"},
		{"missing grant", url.Values{}, 400, "invalid_request"},
		{"missing refresh_token", url.Values{"grant_type": {"refresh_token"}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(tt.form)
			if got := r.json(t)["error"]; r.status != tt.wantStatus || got != tt.wantError {
				t.Errorf("got %d %v; want %d %s", r.status, got, tt.wantStatus, tt.wantError)
			}
		})
	}
	st := srv.Stats()
	if st.Logins != 1 || st.LoginFailures != 1 || st.Refreshes != 1 || st.ReuseRejections != 1 || st.RefreshCalls != 3 {
		t.Errorf("Stats = %+v; want 1 login, 1 login failure, 3 refresh calls, 1 refresh, 1 reuse", st)
	}
}

func TestOAuthClientAuth(t *testing.T) {
	grant := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}
	withBody := func(id, secret string) url.Values {
		v := url.Values{"client_id": {id}, "client_secret": {secret}}
		for k, vs := range grant {
			v[k] = vs
		}
		return v
	}
	basic := func(id, secret string) http.Header {
		h := formHeader.Clone()
		cred := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
		return h
	}
	raw := func(auth string) http.Header {
		h := formHeader.Clone()
		h.Set("Authorization", auth)
		return h
	}
	tests := []struct {
		name          string
		clientID      string
		header        http.Header
		form          url.Values
		wantStatus    int
		wantError     string
		wantChallenge bool
	}{
		{"basic", "my app", basic("my app", "s3cret/+"), grant, 200, "", false},
		{"body", "my app", formHeader, withBody("my app", "s3cret/+"), 200, "", false},
		{"basic wrong secret", "my app", basic("my app", "nope"), grant, 401, "invalid_client", true},
		{"basic wrong id", "my app", basic("other", "s3cret/+"), grant, 401, "invalid_client", true},
		{"basic malformed base64", "my app", raw("Basic %%%"), grant, 401, "invalid_client", true},
		{"basic without colon", "my app", raw("Basic " + base64.StdEncoding.EncodeToString([]byte("my app"))), grant, 401, "invalid_client", true},
		{"basic empty", "my app", raw("Basic"), grant, 401, "invalid_client", true},
		{"other scheme", "my app", raw("Bearer abc"), grant, 401, "invalid_client", true},
		{"body wrong secret", "my app", formHeader, withBody("my app", "nope"), 400, "invalid_client", false},
		{"body unknown client", "my app", formHeader, withBody("other", "s3cret/+"), 400, "invalid_client", false},
		{"none", "my app", formHeader, grant, 401, "invalid_client", true},
		{"two methods", "my app", basic("my app", "s3cret/+"), withBody("my app", "s3cret/+"), 400, "invalid_request", false},
		{"not required", "", formHeader, grant, 200, "", false},
		{"not required, ignored", "", basic("x", "y"), grant, 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{ClientID: tt.clientID, ClientSecret: "s3cret/+"})
			r := do(t, srv, "POST", "/oauth/token", tt.header, tt.form.Encode())
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d (%s); want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantError != "" {
				if got := r.json(t)["error"]; got != tt.wantError {
					t.Errorf("error = %v; want %s", got, tt.wantError)
				}
				want := int64(0)
				if tt.wantError == "invalid_client" {
					want = 1
				}
				if st := srv.Stats(); st.ClientAuthFailures != want {
					t.Errorf("ClientAuthFailures = %d; want %d", st.ClientAuthFailures, want)
				}
			}
			ch := r.header.Get("WWW-Authenticate")
			if got := ch != ""; got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q; want present = %t", ch, tt.wantChallenge)
			}
			if tt.wantChallenge && !strings.HasPrefix(ch, "Basic ") {
				t.Errorf("WWW-Authenticate = %q; want a Basic challenge", ch)
			}
		})
	}
}

func TestNoRotation(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{NoRotation: true})
	tok := srv.Issue("alice")
	for i := range 2 {
		r := refresh(t, srv, tok)
		if m := r.json(t); r.status != 200 || m["accessToken"] == nil || m["refreshToken"] != nil {
			t.Fatalf("custom refresh %d: %d with keys %v; want 200 with accessToken only", i, r.status, m)
		}
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
		r = do(t, srv, "POST", "/oauth/token", formHeader, form.Encode())
		if m := r.json(t); r.status != 200 || m["access_token"] == nil || m["refresh_token"] != nil {
			t.Fatalf("refresh grant %d: %d with keys %v; want 200 without refresh_token", i, r.status, m)
		}
	}
	if st := srv.Stats(); st.Refreshes != 4 || st.ReuseRejections != 0 {
		t.Errorf("Refreshes, ReuseRejections = %d, %d; want 4, 0", st.Refreshes, st.ReuseRejections)
	}
}

// refreshers are the two refresh endpoints, as functions that send tok's
// refresh token and return the raw response or a transport error.
var refreshers = []struct {
	name      string
	accessKey string
	send      func(srv *autorefreshtest.Server, tok autorefresh.Tokens) (*http.Response, error)
}{
	{"custom", "accessToken", func(srv *autorefreshtest.Server, tok autorefresh.Tokens) (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/auth/refreshtoken", nil)
		req.Header.Set("refreshToken", tok.RefreshToken)
		return srv.Client().Do(req)
	}},
	{"oauth", "access_token", func(srv *autorefreshtest.Server, tok autorefresh.Tokens) (*http.Response, error) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
		return srv.Client().PostForm(srv.URL+"/oauth/token", form)
	}},
}

// refreshFaultTests are the Faults, with a check of the faulty answer.
var refreshFaultTests = []struct {
	fault autorefreshtest.Fault
	// check inspects the faulty response; body is what could be read.
	check func(t *testing.T, accessKey string, resp *http.Response, body []byte, err error)
	spent bool // the presented refresh token is spent afterwards
}{
	{autorefreshtest.FaultMalformedJSON, func(t *testing.T, _ string, resp *http.Response, body []byte, err error) {
		var v any
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &v) == nil {
			t.Errorf("got %v, %q; want 200 with malformed JSON", err, body)
		}
	}, false},
	{autorefreshtest.FaultNoAccessToken, func(t *testing.T, key string, resp *http.Response, body []byte, err error) {
		var m map[string]any
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m[key] != nil {
			t.Errorf("got %v, %q; want 200 with JSON without %s", err, body, key)
		}
	}, false},
	{autorefreshtest.FaultHugeBody, func(t *testing.T, key string, resp *http.Response, body []byte, err error) {
		if err != nil || resp.StatusCode != 200 || len(body) != autorefreshtest.HugeBodySize ||
			!strings.HasPrefix(string(body), `{"`+key+`":"aaaa`) {
			t.Errorf("got %v, %d bytes; want 200 with %d bytes", err, len(body), autorefreshtest.HugeBodySize)
		}
	}, false},
	{autorefreshtest.FaultDropConnection, func(t *testing.T, _ string, resp *http.Response, body []byte, err error) {
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("reading the body: %v; want io.ErrUnexpectedEOF", err)
		}
	}, false},
	{autorefreshtest.FaultDropAfterRotate, func(t *testing.T, _ string, resp *http.Response, body []byte, err error) {
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("reading the body: %v; want io.ErrUnexpectedEOF", err)
		}
	}, true},
}

func TestRefreshFaults(t *testing.T) {
	for _, tt := range refreshFaultTests {
		for _, ep := range refreshers {
			t.Run(tt.fault.String()+"/"+ep.name, func(t *testing.T) {
				srv := setup(t, autorefreshtest.Options{})
				tok := srv.Issue("alice")
				srv.SetRefreshFault(tt.fault, 1)
				resp, err := ep.send(srv, tok)
				if err != nil {
					t.Fatalf("faulty refresh: %v; want a response", err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				tt.check(t, ep.accessKey, resp, body, err)

				// The fault was for one call only.
				resp, err = ep.send(srv, tok)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := map[bool]int{false: 200, true: map[string]int{"custom": 401, "oauth": 400}[ep.name]}[tt.spent]
				if resp.StatusCode != want {
					t.Errorf("next refresh with the same token: status = %d; want %d", resp.StatusCode, want)
				}
				st := srv.Stats()
				if st.RefreshCalls != 2 || st.RefreshFaults != 1 {
					t.Errorf("RefreshCalls, RefreshFaults = %d, %d; want 2, 1", st.RefreshCalls, st.RefreshFaults)
				}
			})
		}
	}
}

func TestFailRefresh(t *testing.T) {
	for _, ep := range refreshers {
		t.Run(ep.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{})
			tok := srv.Issue("alice")
			status := func() int {
				t.Helper()
				resp, err := ep.send(srv, tok)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			srv.FailRefresh(2, 503)
			srv.SetRefreshFault(autorefreshtest.FaultMalformedJSON, 1) // queued behind FailRefresh
			for i, want := range []int{503, 503} {
				if got := status(); got != want {
					t.Errorf("call %d: status = %d; want %d", i, got, want)
				}
			}
			srv.ResetFaults() // drops the queued fault
			srv.FailRefresh(-1, 502)
			for i := range 3 {
				if got := status(); got != 502 {
					t.Errorf("persistent failure, call %d: status = %d; want 502", i, got)
				}
			}
			srv.FailRefresh(0, 0)
			if got := status(); got != 200 {
				t.Errorf("after FailRefresh(0, 0): status = %d; want 200", got)
			}
			if st := srv.Stats(); st.RefreshFaults != 5 || st.Refreshes != 1 || st.RefreshCalls != 6 {
				t.Errorf("RefreshFaults, Refreshes, RefreshCalls = %d, %d, %d; want 5, 1, 6",
					st.RefreshFaults, st.Refreshes, st.RefreshCalls)
			}
		})
	}
}

// waitFor polls cond until it holds; the test's deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRefreshLatencyHonoursContext(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.SetRefreshLatency(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tryDo(ctx, srv, "GET", "/auth/refreshtoken", http.Header{"refreshToken": {tok.RefreshToken}}, "")
		errc <- err
	}()
	waitFor(t, "the refresh call", func() bool { return srv.Stats().RefreshCalls == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("slow refresh: %v; want context.Canceled", err)
	}
	srv.SetRefreshLatency(0)
	if r := refresh(t, srv, tok); r.status != 200 {
		t.Errorf("refresh after the abandoned one: status = %d; want 200", r.status)
	}
	if st := srv.Stats(); st.Refreshes != 1 {
		t.Errorf("Refreshes = %d; want 1", st.Refreshes)
	}
}

// closeOrFail closes srv and fails the test if Close hangs. The limit is a
// hang detector, not a speed check.
func closeOrFail(t *testing.T, srv *autorefreshtest.Server) {
	t.Helper()
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs with a request in flight")
	}
}

func TestCloseWithSlowRefresh(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.SetRefreshLatency(time.Hour)
	errc := make(chan error, 1)
	go func() {
		_, err := tryDo(context.Background(), srv, "GET", "/auth/refreshtoken",
			http.Header{"refreshToken": {tok.RefreshToken}}, "")
		errc <- err
	}()
	waitFor(t, "the refresh call", func() bool { return srv.Stats().RefreshCalls == 1 })
	closeOrFail(t, srv)
	if err := <-errc; err == nil {
		t.Error("slow refresh cut off by Close: got a response; want an error")
	}
	srv.Close() // again: no-op
}

func TestCloseWithHugeBodyUnread(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.SetRefreshFault(autorefreshtest.FaultHugeBody, 1)
	resp, err := refreshers[0].send(srv, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The handler is blocked writing (unless the loopback buffers took
	// all 10 MiB); Close must not wait for the reader.
	closeOrFail(t, srv)
}

// TestConcurrentSpentToken presents one refresh token from many goroutines
// at once: exactly one wins.
func TestConcurrentSpentToken(t *testing.T) {
	const n = 32
	srv := setup(t, autorefreshtest.Options{Logf: func(string, ...any) {}})
	tok := srv.Issue("alice")
	var ok, rejected atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := tryDo(context.Background(), srv, "GET", "/auth/refreshtoken",
				http.Header{"refreshToken": {tok.RefreshToken}}, "")
			switch {
			case err != nil:
				t.Error(err)
			case r.status == 200:
				ok.Add(1)
			case r.status == 401:
				rejected.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || rejected.Load() != n-1 {
		t.Errorf("successes, rejections = %d, %d; want 1, %d", ok.Load(), rejected.Load(), n-1)
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.ReuseRejections != n-1 {
		t.Errorf("Refreshes, ReuseRejections = %d, %d; want 1, %d", st.Refreshes, st.ReuseRejections, n-1)
	}
}

// TestConcurrentStats runs sessions in many goroutines while others read
// Stats and flip faults, and checks the exact totals.
func TestConcurrentStats(t *testing.T) {
	const (
		workers = 16
		rounds  = 5
	)
	srv := setup(t, autorefreshtest.Options{Logf: func(string, ...any) {}})
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := srv.Stats()
			if st.Refreshes > st.RefreshCalls {
				t.Errorf("Refreshes %d > RefreshCalls %d", st.Refreshes, st.RefreshCalls)
			}
			srv.SetRefreshLatency(0)
			srv.SetRefreshFault(autorefreshtest.FaultNone, 0)
			srv.FailRefresh(0, 0)
			srv.SetAPIReject(false)
			time.Sleep(100 * time.Microsecond)
		}
	})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			r, err := tryDo(context.Background(), srv, "POST", "/auth/login", nil,
				`{"username":"alice","password":"wonderland"}`)
			if err != nil || r.status != 200 {
				t.Errorf("login: %v %d", err, r.status)
				return
			}
			var tok autorefresh.Tokens
			json.Unmarshal(r.body, &tok)
			for range rounds {
				r, err := tryDo(context.Background(), srv, "GET", "/api/echo", http.Header{"accessToken": {tok.AccessToken}}, "")
				if err != nil || r.status != 200 {
					t.Errorf("api: %v %d", err, r.status)
					return
				}
				r, err = tryDo(context.Background(), srv, "GET", "/auth/refreshtoken", http.Header{"refreshToken": {tok.RefreshToken}}, "")
				if err != nil || r.status != 200 {
					t.Errorf("refresh: %v %d", err, r.status)
					return
				}
				json.Unmarshal(r.body, &tok)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	want := autorefreshtest.Stats{Logins: workers, RefreshCalls: workers * rounds, Refreshes: workers * rounds,
		APICalls: workers * rounds}
	if st := srv.Stats(); st != want {
		t.Errorf("Stats = %+v; want %+v", st, want)
	}
}

func TestLogfNeverSeesTokens(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	srv := setup(t, autorefreshtest.Options{RevokeOnReuse: true, Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}})
	tok := tokensOf(t, login(t, srv, "alice", "wonderland"))
	next := tokensOf(t, refresh(t, srv, tok))
	refresh(t, srv, tok) // reuse: revokes
	api(t, srv, next.AccessToken)
	srv.RevokeAll()
	mu.Lock()
	defer mu.Unlock()
	if len(lines) < 4 {
		t.Fatalf("Logf got %d lines; want at least 4", len(lines))
	}
	for _, l := range lines {
		for _, secret := range []string{tok.AccessToken, tok.RefreshToken, next.AccessToken, next.RefreshToken} {
			if strings.Contains(l, secret) {
				t.Errorf("log line %q contains a token", l)
			}
		}
	}
}

// TestLogfNeverSeesSecrets runs the OAuth flows, refused and accepted, and
// checks that no client secret, assertion, DPoP proof or token reaches Logf
// or an error answer.
func TestLogfNeverSeesSecrets(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	k := newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{
		Clients: []autorefreshtest.Client{{ID: "svc", Secret: "client-s3cret"}, {ID: "signer", Key: k.public()}},
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf(format, args...))
		},
	})
	tokenURL := srv.URL + "/oauth/token"
	secrets := []string{"client-s3cret", "wrong-s3cret"}
	var bodies []string
	post := func(header http.Header, form url.Values) map[string]any {
		r := do(t, srv, "POST", "/oauth/token", header, form.Encode())
		if r.status != 200 {
			bodies = append(bodies, string(r.body))
		}
		return r.json(t)
	}
	post(basicHeader("svc", "wrong-s3cret"), ccGrant)
	post(formHeader, withAssertion(ccGrant, "not-a-jwt"))
	assertion := k.assertion(t, "signer", tokenURL, nil)
	secrets = append(secrets, assertion)
	for range 2 { // the second is a replay
		m := post(formHeader, withAssertion(ccGrant, assertion))
		if at, ok := m["access_token"].(string); ok {
			secrets = append(secrets, at)
		}
	}
	form := cloneValues(passwordGrant)
	form.Set("client_id", "svc")
	form.Set("client_secret", "client-s3cret")
	proof := k.proof(t, "POST", tokenURL, "", "", proofOpts{})
	for range 2 { // the second is a replay
		m := post(withProof(proof), form)
		for _, name := range []string{"access_token", "refresh_token"} {
			if v, ok := m[name].(string); ok {
				secrets = append(secrets, v)
			}
		}
	}
	secrets = append(secrets, proof)
	r := revoke(t, srv, basicHeader("svc", "client-s3cret"), url.Values{"token": {secrets[len(secrets)-2]}})
	bodies = append(bodies, string(r.body))
	if len(secrets) != 7 {
		t.Fatalf("collected %d secrets; want 7 (the flows did not run as planned)", len(secrets))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range append(lines, bodies...) {
		for _, secret := range secrets {
			if strings.Contains(l, secret) || strings.Contains(l, url.QueryEscape(secret)) {
				t.Errorf("log line or answer %q holds a secret", l)
			}
		}
	}
}
