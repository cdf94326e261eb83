package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestOAuth2Refresh(t *testing.T) {
	srv := newOAuthServer(t)
	srv.clientID, srv.clientSecret = "client", "secret"
	cur := srv.issue()
	got, err := srv.refresher(testNow).Refresh(context.Background(), cur)
	if err != nil {
		t.Fatal(err)
	}
	if !srv.valid(got.AccessToken) {
		t.Errorf("access token %q is not one the server issued", got.AccessToken)
	}
	if got.RefreshToken == "" || got.RefreshToken == cur.RefreshToken {
		t.Errorf("refresh token = %q; want the rotated one", got.RefreshToken)
	}
	if want := testNow.Add(time.Hour); !got.Expiry.Equal(want) {
		t.Errorf("expiry = %v; want %v", got.Expiry, want)
	}
	form, hdr := srv.last()
	if g := form.Get("grant_type"); g != "refresh_token" {
		t.Errorf("grant_type = %q; want refresh_token", g)
	}
	if g := form.Get("refresh_token"); g != cur.RefreshToken {
		t.Errorf("refresh_token = %q; want the current one", g)
	}
	if form.Has("scope") {
		t.Errorf("scope = %q; want none when Scopes is empty", form.Get("scope"))
	}
	if g := hdr.Get("Accept"); g != "application/json" {
		t.Errorf("Accept = %q; want application/json", g)
	}
	for k, v := range hdr {
		if strings.Contains(strings.Join(v, " "), cur.AccessToken) {
			t.Errorf("header %s carries the access token; want it never sent to the token endpoint", k)
		}
	}
	for k, v := range form {
		if strings.Contains(strings.Join(v, " "), cur.AccessToken) {
			t.Errorf("form field %s carries the access token", k)
		}
	}
}

func TestOAuth2KeepsRefreshTokenWhenNotRotated(t *testing.T) {
	srv := newOAuthServer(t)
	srv.noRotate.Store(true)
	cur := srv.issue()
	got, err := srv.refresher(testNow).Refresh(context.Background(), cur)
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != cur.RefreshToken {
		t.Errorf("refresh token = %q; want the current one %q kept", got.RefreshToken, cur.RefreshToken)
	}
	if got.AccessToken == cur.AccessToken || !srv.valid(got.AccessToken) {
		t.Errorf("access token = %q; want a new valid one", got.AccessToken)
	}
}

func TestOAuth2ExpiresIn(t *testing.T) {
	tests := []struct {
		raw  string // JSON value; "" omits expires_in
		want time.Duration
	}{
		{"3600", time.Hour},
		{`"3600"`, time.Hour},
		{"3599.9", 3599 * time.Second},
		{`" 60 "`, time.Minute},
		{"1", time.Second},
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{`"soon"`, 0},
		{`""`, 0},
		{"null", 0},
		{"1e300", 0},
		{`"NaN"`, 0},
		{"true", 0},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.expiresIn = tt.raw
			got, err := srv.refresher(testNow).Refresh(context.Background(), srv.issue())
			if err != nil {
				t.Fatal(err)
			}
			want := time.Time{}
			if tt.want != 0 {
				want = testNow.Add(tt.want)
			}
			if !got.Expiry.Equal(want) {
				t.Errorf("expiry = %v; want %v", got.Expiry, want)
			}
		})
	}
}

func TestOAuth2ClientAuth(t *testing.T) {
	const id, secret = "my client:1/ä+&=%", "s3:cr t+/%&=\"ü"
	tests := []struct {
		name         string
		id, secret   string
		style        AuthStyle
		wantBasic    string // raw Basic user:password; "" for no Authorization header
		wantID       string // client_id form field
		wantSecret   string
		wantNoSecret bool
	}{
		{name: "basic", id: id, secret: secret, style: AuthStyleInHeader,
			wantBasic: url.QueryEscape(id) + ":" + url.QueryEscape(secret)},
		{name: "in params", id: id, secret: secret, style: AuthStyleInParams,
			wantID: id, wantSecret: secret},
		{name: "public client", id: id, style: AuthStyleInHeader, wantID: id, wantNoSecret: true},
		{name: "no client", wantNoSecret: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.clientID, srv.clientSecret = tt.id, tt.secret
			o := srv.refresher(testNow)
			o.AuthStyle = tt.style
			if _, err := o.Refresh(context.Background(), srv.issue()); err != nil {
				t.Fatalf("refresh: %v; want the server to accept the client", err)
			}
			form, hdr := srv.last()
			req := &http.Request{Header: hdr}
			user, pass, ok := req.BasicAuth()
			switch {
			case tt.wantBasic == "" && hdr.Get("Authorization") != "":
				t.Errorf("Authorization header sent; want none")
			case tt.wantBasic != "" && (!ok || user+":"+pass != tt.wantBasic):
				t.Errorf("Basic credentials = %q; want %q", user+":"+pass, tt.wantBasic)
			}
			if g := form.Get("client_id"); g != tt.wantID {
				t.Errorf("client_id = %q; want %q", g, tt.wantID)
			}
			if g := form.Get("client_secret"); g != tt.wantSecret || tt.wantNoSecret && form.Has("client_secret") {
				t.Errorf("client_secret = %q (present %v); want %q", g, form.Has("client_secret"), tt.wantSecret)
			}
		})
	}
}

func TestOAuth2WrongClientSecret(t *testing.T) {
	for _, style := range []AuthStyle{AuthStyleInHeader, AuthStyleInParams} {
		srv := newOAuthServer(t)
		srv.clientID, srv.clientSecret = "client", "right"
		o := srv.refresher(testNow)
		o.AuthStyle, o.ClientSecret = style, "wrong"
		_, err := o.Refresh(context.Background(), srv.issue())
		var re *RefreshError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.StatusCode != 401 {
			t.Errorf("style %d: error = %v; want a *RefreshError with invalid_client and 401", style, err)
		}
		if errors.Is(err, ErrSessionExpired) {
			t.Errorf("style %d: invalid_client ends the session; want a transient error", style)
		}
	}
}

func TestOAuth2InvalidGrant(t *testing.T) {
	srv := newOAuthServer(t)
	cur := srv.stale()
	srv.mu.Lock()
	srv.refresh[cur.RefreshToken] = true // spent
	srv.mu.Unlock()
	_, err := srv.refresher(testNow).Refresh(context.Background(), cur)
	if !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("error = %v; want one wrapping ErrSessionExpired", err)
	}
	var re *RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error = %T; want *RefreshError", err)
	}
	if re.StatusCode != 400 || re.ErrorCode != "invalid_grant" || !errors.Is(re, ErrSessionExpired) {
		t.Errorf("got status %d code %q expired %v; want 400 invalid_grant true", re.StatusCode, re.ErrorCode, errors.Is(re, ErrSessionExpired))
	}
	if !strings.Contains(re.Description, "is invalid, expired or revoked") {
		t.Errorf("description = %q; want the server's description", re.Description)
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", re), fmt.Sprintf("%#v", re), re.Description} {
		if strings.Contains(s, cur.RefreshToken) {
			t.Errorf("%q holds the refresh token; want it redacted", s)
		}
	}
}

func TestOAuth2Errors(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", 2<<10) + `"}`
	tests := []struct {
		name       string
		status     int // 0: 200
		ct         string
		body       string
		wantStatus int
		wantCode   string
		wantErr    error // wrapped, if not nil
		expired    bool
	}{
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`, wantStatus: 401, wantCode: "invalid_client", wantErr: ErrClientRejected},
		{name: "unauthorized_client", status: 400, body: `{"error":"unauthorized_client","error_description":"no refresh for you"}`,
			wantStatus: 400, wantCode: "unauthorized_client", wantErr: ErrClientRejected},
		{name: "invalid_scope", status: 400, body: `{"error":"invalid_scope"}`, wantStatus: 400, wantCode: "invalid_scope", wantErr: ErrClientRejected},
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant"}`, wantStatus: 400, wantCode: "invalid_grant", expired: true},
		{name: "invalid_grant as form", status: 400, ct: "application/x-www-form-urlencoded",
			body: "error=invalid_grant&error_description=expired", wantStatus: 400, wantCode: "invalid_grant", expired: true},
		{name: "GitHub error in a 200", body: `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}`,
			wantStatus: 200, wantCode: "bad_refresh_token", expired: true},
		{name: "500 JSON", status: 500, body: `{"error":"server_error"}`, wantStatus: 500, wantCode: "server_error"},
		{name: "502 HTML page", status: 502, ct: "text/html", body: "<html><body><h1>502 Bad Gateway</h1></body></html>", wantStatus: 502},
		{name: "503 empty", status: 503, body: "", wantStatus: 503},
		{name: "400 HTML page", status: 400, ct: "text/html", body: "<html>Bad Request</html>", wantStatus: 400},
		{name: "401 empty", status: 401, body: "", wantStatus: 401},
		{name: "redirect", status: 302, body: "", wantStatus: 302},
		{name: "200 not JSON", ct: "text/html", body: "<html>login</html>", wantStatus: 200},
		{name: "200 without access_token", body: `{"token_type":"Bearer"}`, wantStatus: 200, wantErr: errNoAccessToken},
		{name: "200 mac token", body: `{"access_token":"x","token_type":"mac"}`, wantStatus: 200},
		{name: "200 wrong types", body: `{"access_token":42}`, wantStatus: 200},
		{name: "oversized", body: big, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.tokenStatus.Store(int64(tt.status))
			srv.tokenBody.Store(&tt.body)
			if tt.ct != "" {
				srv.tokenCT.Store(&tt.ct)
			}
			if tt.status == 302 {
				srv.Config.Handler = http.RedirectHandler(srv.URL+"/api/elsewhere", http.StatusFound)
			}
			o := srv.refresher(testNow)
			o.MaxResponseBytes = 1 << 10
			_, err := o.Refresh(context.Background(), Tokens{AccessToken: "access-" + randomString(), RefreshToken: "refresh-" + randomString()})
			var re *RefreshError
			if !errors.As(err, &re) {
				t.Fatalf("error = %v; want a *RefreshError", err)
			}
			if re.StatusCode != tt.wantStatus || re.ErrorCode != tt.wantCode {
				t.Errorf("got status %d code %q; want %d %q", re.StatusCode, re.ErrorCode, tt.wantStatus, tt.wantCode)
			}
			if g := errors.Is(err, ErrSessionExpired); g != tt.expired {
				t.Errorf("session expired = %v; want %v (error %v)", g, tt.expired, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v; want one wrapping %v", err, tt.wantErr)
			}
			if n := srv.apiCalls.Load(); n != 0 {
				t.Errorf("API calls = %d; want 0 (redirects are not followed)", n)
			}
		})
	}
}

func TestOAuth2DescriptionIsSanitized(t *testing.T) {
	cur := Tokens{AccessToken: "access-VALUE-123", RefreshToken: "refresh-VALUE-456"}
	const secret = "client-SECRET-789"
	desc := "got " + cur.RefreshToken + " and " + cur.AccessToken + " from client with " + secret +
		"\r\nlevel=ERROR injected" + strings.Repeat(" ü", 1000)
	body, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": desc})
	srv := newOAuthServer(t)
	srv.tokenStatus.Store(400)
	b := string(body)
	srv.tokenBody.Store(&b)
	o := srv.refresher(testNow)
	o.ClientID, o.ClientSecret = "client", secret
	_, err := o.Refresh(context.Background(), cur)
	var re *RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v; want a *RefreshError", err)
	}
	for _, s := range []string{cur.AccessToken, cur.RefreshToken, secret, "\r", "\n"} {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v", re), s) {
			t.Errorf("error %q contains %q; want it redacted", err, s)
		}
	}
	if !strings.Contains(re.Description, "got "+redacted+" and "+redacted) {
		t.Errorf("description = %q; want the tokens replaced by %s", re.Description, redacted)
	}
	if n := len(re.Description); n > maxDescription {
		t.Errorf("description is %d bytes; want at most %d", n, maxDescription)
	}
}

func TestOAuth2ScopesAndParams(t *testing.T) {
	srv := newOAuthServer(t)
	o := srv.refresher(testNow)
	o.Scopes = []string{"read:user", "repo"}
	o.Params = url.Values{"audience": {"https://api.example.com"}, "grant_type": {"password"}, "refresh_token": {"other"}}
	cur := srv.issue()
	if _, err := o.Refresh(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	form, _ := srv.last()
	want := map[string]string{"scope": "read:user repo", "audience": "https://api.example.com",
		"grant_type": "refresh_token", "refresh_token": cur.RefreshToken}
	for k, v := range want {
		if g := form[k]; len(g) != 1 || g[0] != v {
			t.Errorf("form %s = %q; want [%q]", k, g, v)
		}
	}
	if o.Params.Get("grant_type") != "password" {
		t.Error("Refresh modified o.Params")
	}
}

func TestOAuth2FormEncodedAnswer(t *testing.T) {
	srv := newOAuthServer(t)
	body, ct := "access_token=new-access&token_type=bearer&expires_in=60&scope=repo", "application/x-www-form-urlencoded; charset=utf-8"
	srv.tokenBody.Store(&body)
	srv.tokenCT.Store(&ct)
	got, err := srv.refresher(testNow).Refresh(context.Background(), Tokens{AccessToken: "a", RefreshToken: "r"})
	if err != nil {
		t.Fatal(err)
	}
	want := Tokens{AccessToken: "new-access", RefreshToken: "r", Expiry: testNow.Add(time.Minute)}
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || !got.Expiry.Equal(want.Expiry) {
		t.Errorf("got %+v (access %q); want %+v", got, got.AccessToken, want)
	}
}

func TestOAuth2RefusesBeforeSending(t *testing.T) {
	fail := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request to %s sent; want none", r.URL)
		return nil, errors.New("unreachable")
	})
	tests := []struct {
		name    string
		url     string
		cur     Tokens
		expired bool
	}{
		{"no refresh token", "https://auth.example.com/token", Tokens{AccessToken: "a"}, true},
		{"plain http", "http://auth.example.com/token", Tokens{RefreshToken: "r"}, false},
		{"other scheme", "ftp://auth.example.com/token", Tokens{RefreshToken: "r"}, false},
		{"empty URL", "", Tokens{RefreshToken: "r"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&OAuth2{TokenURL: tt.url, Base: fail}).Refresh(context.Background(), tt.cur)
			var re *RefreshError
			if !errors.As(err, &re) {
				t.Fatalf("error = %v; want a *RefreshError", err)
			}
			if g := errors.Is(err, ErrSessionExpired); g != tt.expired {
				t.Errorf("session expired = %v; want %v", g, tt.expired)
			}
		})
	}
}

// TestOAuth2InvalidClientKeepsTokens runs a Transport against a token
// endpoint that refuses the client: the error reaches the caller and the
// tokens stay, in the store and in use.
func TestOAuth2InvalidClientKeepsTokens(t *testing.T) {
	srv := newOAuthServer(t)
	srv.clientID, srv.clientSecret = "client", "right"
	stale := srv.stale()
	store := NewMemoryStore(stale)
	o := srv.refresher(testNow)
	o.ClientSecret = "wrong"
	var events []RefreshEvent
	tr := &Transport{Store: store, Refresher: o, Scheme: BearerScheme, OnRefresh: func(e RefreshEvent) { events = append(events, e) }}
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Fatalf("error = %v; want a *RefreshError with invalid_client", err)
	}
	if saved, _ := store.Load(context.Background()); saved != stale {
		t.Errorf("store holds %v; want the tokens kept", saved)
	}
	if cur, err := tr.Tokens(context.Background()); err != nil || cur != stale {
		t.Errorf("tokens in use = %v, %v; want the old ones", cur, err)
	}
	if len(events) != 1 || events[0].SessionEnded || events[0].Err == nil {
		t.Errorf("events = %+v; want one failure that did not end the session", events)
	}
}

// TestBearerRefreshesOn401 sends a request with a stale token through a
// Transport with BearerScheme: the 401 invalid_token causes one refresh and
// one replay.
func TestBearerRefreshesOn401(t *testing.T) {
	srv := newOAuthServer(t)
	srv.clientID, srv.clientSecret = "client", "secret"
	store := NewMemoryStore(srv.stale())
	tr := &Transport{Store: store, Refresher: srv.refresher(testNow), Scheme: BearerScheme}
	c := NewClient(nil, tr)
	for i := range 3 {
		if code, body := get(t, c, srv.URL+"/api/x"); code != 200 || body != "GET /api/x" {
			t.Errorf("request %d: got %d %q; want 200 %q", i, code, body, "GET /api/x")
		}
	}
	if n := srv.tokenCalls.Load(); n != 1 {
		t.Errorf("token calls = %d; want 1", n)
	}
	if n := srv.apiCalls.Load(); n != 4 {
		t.Errorf("API calls = %d; want 4 (refused, replay, then two with the new token)", n)
	}
	if s := tr.Stats(); s.Replays != 1 || s.Refreshes != 1 {
		t.Errorf("stats = %+v; want 1 replay and 1 refresh", s)
	}
	saved, _ := store.Load(context.Background())
	if !srv.valid(saved.AccessToken) || !saved.Expiry.Equal(testNow.Add(time.Hour)) {
		t.Errorf("store holds %v; want the new pair expiring at %v", saved, testNow.Add(time.Hour))
	}
}

// TestBearerRefusalsPassThrough checks the responses that a Transport with
// BearerScheme returns as they are, without refreshing.
func TestBearerRefusalsPassThrough(t *testing.T) {
	tests := []struct {
		name      string
		challenge string
	}{
		{"403 insufficient_scope", `Bearer realm="api", error="insufficient_scope", scope="repo admin"`},
		{"403 without challenge", ""},
		{"403 invalid_request", `Bearer error="invalid_request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.apiChallenge.Store(&tt.challenge)
			tr := &Transport{Store: NewMemoryStore(srv.issue()), Refresher: srv.refresher(testNow), Scheme: BearerScheme}
			resp, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || !strings.Contains(string(body), "forbidden") {
				t.Errorf("got %d %q; want the 403 with its body", resp.StatusCode, body)
			}
			if g := resp.Header.Get("WWW-Authenticate"); g != tt.challenge {
				t.Errorf("challenge = %q; want %q", g, tt.challenge)
			}
			if n := srv.tokenCalls.Load(); n != 0 {
				t.Errorf("token calls = %d; want 0", n)
			}
			if n := srv.apiCalls.Load(); n != 1 {
				t.Errorf("API calls = %d; want 1", n)
			}
		})
	}
}

// TestBearer401InsufficientScope: a 401 that names insufficient_scope is
// not a reason to refresh either.
func TestBearer401InsufficientScope(t *testing.T) {
	var apiCalls atomic.Int64
	srv := newOAuthServer(t)
	mux := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			mux.ServeHTTP(w, r)
			return
		}
		apiCalls.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	tr := &Transport{Store: NewMemoryStore(srv.issue()), Refresher: srv.refresher(testNow), Scheme: BearerScheme}
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 401 {
		t.Errorf("status = %d; want 401", code)
	}
	if n := srv.tokenCalls.Load(); n != 0 {
		t.Errorf("token calls = %d; want 0", n)
	}
	if n := apiCalls.Load(); n != 1 {
		t.Errorf("API calls = %d; want 1", n)
	}
}

// TestHeaderSchemeInsufficientScope: with the header protocol, a 403 that
// names insufficient_scope is passed through while a bare 403 refreshes.
func TestHeaderSchemeInsufficientScope(t *testing.T) {
	srv := newProtoServer(t)
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/scoped" {
			srv.apiCalls.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
	tr, _ := srv.transport(srv.stale())
	c := NewClient(nil, tr)
	if code, _ := get(t, c, srv.URL+"/api/scoped"); code != 403 {
		t.Errorf("status = %d; want 403", code)
	}
	if n := srv.refreshCalls.Load(); n != 0 {
		t.Errorf("refresh calls after insufficient_scope = %d; want 0", n)
	}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status = %d; want 200 after a refresh", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls after a bare 403 = %d; want 1", n)
	}
}

func FuzzDecodeTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":"r"}`,
		`{"access_token":"a","expires_in":"3600"}`,
		`{"error":"invalid_grant","error_description":"bad"}`,
		`{"expires_in":1e999}`,
		`{"expires_in":"\u0000"}`,
		`<html></html>`,
		`access_token=a&expires_in=60`,
		``,
	} {
		f.Add("application/json", s)
		f.Add("application/x-www-form-urlencoded", s)
	}
	f.Fuzz(func(t *testing.T, ct, body string) {
		tr, err := decodeTokenResponse(ct, []byte(body))
		if err != nil && tr != (tokenResponse{}) {
			t.Errorf("got %+v with error %v; want a zero response", tr, err)
		}
		if tr.ExpiresIn < 0 || tr.ExpiresIn > maxExpiresIn {
			t.Errorf("expires_in = %d; want 0..%d", tr.ExpiresIn, maxExpiresIn)
		}
		if tr.AccessToken != "" {
			tok, err := tr.tokens(grantRefreshToken, Tokens{RefreshToken: "r"}, nil, testNow, 200)
			if err == nil && (tok.RefreshToken == "" || !tok.Expiry.IsZero() && !tok.Expiry.After(testNow)) {
				t.Errorf("tokens = %+v; want a refresh token and no expiry in the past", tok)
			}
		}
		const secret = "SECRETX"
		d := sanitize(tr.ErrorDescription+body, maxDescription, []string{secret})
		if len(d) > maxDescription || strings.Contains(d, secret) || strings.ContainsFunc(d, unicode.IsControl) {
			t.Errorf("sanitize(%q) = %q; want at most %d bytes, no %s, no control characters",
				tr.ErrorDescription+body, d, maxDescription, secret)
		}
	})
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		in      string
		limit   int
		secrets []string
		want    string
	}{
		{"token abcdefgh leaked", 64, []string{"abcdefgh"}, "token [redacted] leaked"},
		{"abcdefghijkl and abcdefgh", 64, []string{"abcdefgh", "abcdefghijkl", ""}, "[redacted] and [redacted]"},
		{"form Ab%2BcD%2Fef%3D%3D and path Ab+cD%2Fef==", 64, []string{"Ab+cD/ef=="}, "form [redacted] and path [redacted]"},
		// A secret too short to redact without mangling words drops the
		// text that holds it.
		{"token abc leaked", 64, []string{"abc"}, ""},
		{"short r and a", 64, []string{"a", "r"}, ""},
		{"no short secret here", 64, []string{"xyz"}, "no short secret here"},
		{"line\r\nbreak\x00", 64, nil, "line  break "},
		{"bad \xff byte", 64, nil, "bad   byte"},
		{"ééééé", 8, nil, "éé..."},
		{"0123456789", 10, nil, "0123456789"},
		{"0123456789a", 10, nil, "0123456..."},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.limit, tt.secrets); got != tt.want {
			t.Errorf("sanitize(%q, %d, %q) = %q; want %q", tt.in, tt.limit, tt.secrets, got, tt.want)
		}
	}
}

// tokenError makes srv's token endpoint answer 400 with an error code and
// description.
func tokenError(srv *oauthServer, code, desc string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	body := string(b)
	srv.tokenStatus.Store(400)
	srv.tokenBody.Store(&body)
}

func TestOAuth2ErrorHidesEncodedTokens(t *testing.T) {
	for _, refresh := range []string{"Ab+cD/ef==", "Zq+8/Lm==Xy+/Pq9=Rs7+Tu6/Vw5==Ab+cD/ef=="} {
		forms := map[string]string{
			"raw":         refresh,
			"QueryEscape": url.QueryEscape(refresh),
			"PathEscape":  url.PathEscape(refresh),
			"form":        strings.TrimPrefix(url.Values{"t": {refresh}}.Encode(), "t="),
		}
		for name, form := range forms {
			t.Run(fmt.Sprintf("%d-byte token %s", len(refresh), name), func(t *testing.T) {
				srv := newOAuthServer(t)
				tokenError(srv, "invalid_grant", "refresh token "+form+" is invalid")
				cur := Tokens{AccessToken: "access-token-value-0123456789", RefreshToken: refresh}
				_, err := srv.refresher(testNow).Refresh(context.Background(), cur)
				var re *RefreshError
				if !errors.As(err, &re) {
					t.Fatalf("error = %v; want a *RefreshError", err)
				}
				shown := map[string]bool{}
				for _, f := range forms {
					for _, s := range []string{err.Error(), re.Description, fmt.Sprintf("%+v", re)} {
						if strings.Contains(s, f) && !shown[f] {
							shown[f] = true
							t.Errorf("error %q (Description %q) shows the refresh token as %q", err, re.Description, f)
						}
					}
				}
				if re.ErrorCode != "invalid_grant" {
					t.Errorf("ErrorCode = %q; want invalid_grant", re.ErrorCode)
				}
				if len(refresh) >= 32 && (!strings.Contains(re.Description, "refresh token "+redacted+" is invalid")) {
					t.Errorf("Description = %q; want the token redacted in place: %q", re.Description, "refresh token "+redacted+" is invalid")
				}
			})
		}
	}
}

func TestOAuth2ErrorWithShortToken(t *testing.T) {
	srv := newOAuthServer(t)
	tokenError(srv, "invalid_request", "a parameter is missing")
	cur := Tokens{AccessToken: "a", RefreshToken: "refresh-token-value-0123456789"}
	_, err := srv.refresher(testNow).Refresh(context.Background(), cur)
	var re *RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v; want a *RefreshError", err)
	}
	if re.ErrorCode != "invalid_request" {
		t.Errorf("ErrorCode = %q; want %q", re.ErrorCode, "invalid_request")
	}
	if re.Description != "" {
		t.Errorf("Description = %q; want it dropped (a token too short to redact could be in it)", re.Description)
	}
	if !strings.Contains(err.Error(), "invalid_request") || strings.Contains(err.Error(), redacted) {
		t.Errorf("error = %q; want invalid_request intact and nothing redacted inside words", err)
	}
}

// TestOAuth2AnswerWithBOM: token endpoint answers that start with a UTF-8
// byte order mark are read as without it: tokens (JSON, or form-encoded as
// some older servers answer), and errors, whose invalid_grant still ends the
// session.
func TestOAuth2AnswerWithBOM(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		status                  int
		wantErr                 error // nil: the tokens of the answer
	}{
		{"JSON", "application/json", `{"access_token":"new-access","token_type":"Bearer","expires_in":60,"refresh_token":"new-refresh"}`, 0, nil},
		{"form-encoded", "application/x-www-form-urlencoded", "access_token=new-access&token_type=bearer&expires_in=60&refresh_token=new-refresh", 0, nil},
		{"invalid_grant", "application/json", `{"error":"invalid_grant"}`, 400, ErrSessionExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			body := "\ufeff" + tt.body
			srv.tokenBody.Store(&body)
			srv.tokenCT.Store(&tt.contentType)
			srv.tokenStatus.Store(int64(tt.status))
			got, err := srv.refresher(testNow).Refresh(context.Background(), Tokens{AccessToken: "a", RefreshToken: "r"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error = %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v; want the tokens of the answer", err)
			}
			if got.AccessToken != "new-access" || got.RefreshToken != "new-refresh" || !got.Expiry.Equal(testNow.Add(time.Minute)) {
				t.Errorf("got %+v; want new-access, new-refresh, expiring a minute after %v", got, testNow)
			}
		})
	}
}

// TestOAuth2ValueNeverPrintsSecret: OAuth2 and ClientCredentials redact
// their client secret only through methods on the pointer, so an OAuth2
// held by value (a configuration struct with an OAuth2 field, the natural
// way to keep a refresher's settings) prints its ClientSecret in %v, %+v,
// %#v and slog's text output. README, "Secrets": token values and the
// client secret never appear in any fmt verb or slog output of a type that
// holds them, OAuth2 named among them. slog's JSON handler shows it even
// for a *OAuth2 in a struct field.
func TestOAuth2ValueNeverPrintsSecret(t *testing.T) {
	const secret = "client-secret-0123456789"
	type config struct {
		Name   string
		OAuth  OAuth2
		Client ClientCredentials
	}
	cfg := &config{
		Name:   "billing",
		OAuth:  OAuth2{TokenURL: "https://auth.example.com/token", ClientID: "app", ClientSecret: secret},
		Client: ClientCredentials{TokenURL: "https://auth.example.com/token", ClientID: "svc", ClientSecret: secret},
	}
	var logged, loggedJSON bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	// Even through a pointer: slog's JSON handler encodes a struct with
	// encoding/json, which ignores LogValue and Format on its fields.
	slog.New(slog.NewJSONHandler(&loggedJSON, nil)).Info("config", "cfg", struct{ OAuth *OAuth2 }{&cfg.OAuth})
	for verb, shown := range map[string]string{
		"%v":        fmt.Sprintf("%v", cfg),
		"%+v":       fmt.Sprintf("%+v", cfg),
		"%#v":       fmt.Sprintf("%#v", cfg),
		"slog":      logged.String(),
		"slog JSON": loggedJSON.String(),
	} {
		if strings.Contains(shown, secret) {
			t.Errorf("%s of a struct holding an OAuth2 and a ClientCredentials shows the client secret: %s", verb, shown)
		}
	}
}
