package autorefresh_test

// Failing tests from a hostile review (branch review2) of zero-wait
// rotation, OAuth 2.0 as deployed and DPoP (issues 13, 15, 16). Each test
// states the contract it holds the code to; production code is left alone.

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

// within waits for a value of ch for at most d; it reports false when none
// came. It detects hangs; it asserts nothing about speed.
func within[T any](ch <-chan T, d time.Duration) (T, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v, true
	case <-timer.C:
		var zero T
		return zero, false
	}
}

// alwaysInvalidToken is an API that refuses every access token with 401
// Bearer error="invalid_token", as an API that wants another audience or
// has not learned the issuer's new signing key does.
func alwaysInvalidToken(t *testing.T) *httptest.Server {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="wrong audience"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(api.Close)
	return api
}

// TestTokenTransportBodilessNonceRetryDoesNotPanic: DPoP.TokenTransport
// retries a request once when the server answers 400 use_dpop_nonce with a
// DPoP-Nonce. For a request without a body (GET, or a POST with a nil
// Body), it calls req.GetBody, which is nil: RoundTrip panics on an answer
// of the server, and http.Client does not recover it.
func TestTokenTransportBodilessNonceRetryDoesNotPanic(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", fmt.Sprintf("nonce-%d", calls.Add(1)))
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("DPoP") == "" || calls.Load() == 1 {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"use_dpop_nonce"}`)
			return
		}
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rt := (&autorefresh.DPoP{Key: key}).TokenTransport(nil)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			calls.Store(0)
			req, _ := http.NewRequest(method, srv.URL+"/oauth/par", nil)
			var resp *http.Response
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				resp, err = rt.RoundTrip(req)
			}()
			if panicked != nil {
				t.Fatalf("RoundTrip of a %s without body answered 400 use_dpop_nonce panicked: %v; want the retry or the answer", method, panicked)
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestTransportDPoPAloneBindsTokens: Transport.DPoP's doc says "DPoP, if
// not nil, makes the tokens sender-constrained". Set on the Transport only
// (the DPoP doc allows either place), it is used for the API's proofs but
// never reaches the refresher: refreshes go without a proof, so a Bearer
// pair silently stays Bearer (no proof is ever sent), and a DPoP-bound
// pair cannot be refreshed at all (ErrDPoPKeyMissing, although the key is
// configured).
func TestTransportDPoPAloneBindsTokens(t *testing.T) {
	t.Run("Bearer pair", func(t *testing.T) {
		srv := newTestServer(t, autorefreshtest.Options{}) // DPoP optional
		key, err := autorefresh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(srv.Issue("alice")),
			DPoP: &autorefresh.DPoP{Key: key}, Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token"}}
		srv.ExpireAccessTokens()
		if code, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me"); code != 200 {
			t.Fatalf("status = %d, %v; want 200", code, err)
		}
		cur, _ := tr.Tokens(t.Context())
		if st := srv.Stats(); cur.TokenType != "DPoP" || st.DPoPProofs == 0 {
			t.Errorf("after a refresh through a Transport with DPoP set: token type %q, proofs the server saw %d; want DPoP-bound tokens and proofs",
				cur.TokenType, st.DPoPProofs)
		}
	})
	t.Run("DPoP-bound pair", func(t *testing.T) {
		srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true})
		tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: d,
			Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token"}}
		c := autorefresh.NewClient(nil, tr)
		if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
			t.Fatalf("status with the bound token = %d, %v; want 200", code, err)
		}
		srv.ExpireAccessTokens()
		if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
			t.Errorf("status after expiry = %d, %v; want 200 after a refresh with the Transport's key", code, err)
		}
	})
}

// TestRefusedDowngradeNeverReusesRefreshToken: a token endpoint answers a
// DPoP refresh with Bearer tokens. The library refuses them
// (ErrDPoPDowngrade), as issue 16 asks, but the server has already rotated
// the refresh token: the answer's new refresh token is thrown away and the
// Transport presents the spent one again after the back-off. A server with
// reuse detection (Auth0, Okta, oidc-provider) takes that for theft and
// revokes the whole grant. The README promises single-use refresh tokens are
// never spent twice.
func TestRefusedDowngradeNeverReusesRefreshToken(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RevokeOnReuse: true})
	tr := dpopOAuth2(srv, d, autorefresh.NewMemoryStore(tok))
	c := autorefresh.NewClient(nil, tr)
	srv.SetDPoPDowngrade(true)
	srv.ExpireAccessTokens()
	_, err := getStatus(t, c, srv.URL+"/api/me")
	if !errors.Is(err, autorefresh.ErrDPoPDowngrade) {
		t.Fatalf("error = %v; want ErrDPoPDowngrade", err)
	}
	// Requests go on: the Transport tries again after its back-off (about
	// a second), or has ended the session (and later requests go out
	// without tokens).
	if !errors.Is(err, autorefresh.ErrSessionExpired) {
		waitFor(t, "a second token call", func() bool {
			getStatus(t, c, srv.URL+"/api/me")
			return srv.Stats().RefreshCalls >= 2
		})
	}
	for range 3 {
		getStatus(t, c, srv.URL+"/api/me")
	}
	if st := srv.Stats(); st.ReuseRejections != 0 || st.Revocations != 0 {
		t.Errorf("spent refresh tokens presented = %d, grants revoked = %d; want 0 and 0", st.ReuseRejections, st.Revocations)
	}
}

// TestRefusedFreshTokenDoesNotRefreshPerRequest: an API that refuses every
// token with 401 invalid_token (a wrong audience, a key it does not know)
// must not cost a client credentials client one token call per request:
// issue 15 asks for it not to ask the token endpoint in a tight loop, and a
// fresh token refused at once says that asking again does not help. (With
// a refresh token, each refused request refreshes once and is sent once
// more, as issue 2 specifies and TestSecond403IsReturnedAsIs checks.)
func TestRefusedFreshTokenDoesNotRefreshPerRequest(t *testing.T) {
	const requests = 20
	tests := []struct {
		name  string
		setup func(srv *autorefreshtest.Server) *autorefresh.Transport
		calls func(st autorefreshtest.Stats) int64
	}{
		{"client credentials", func(srv *autorefreshtest.Server) *autorefresh.Transport {
			return &autorefresh.Transport{Store: autorefresh.NewMemoryStore(autorefresh.Tokens{}), Refresher: ccRefresher(srv)}
		}, func(st autorefreshtest.Stats) int64 { return st.ClientCredentialsGrants }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{})
			api := alwaysInvalidToken(t)
			c := autorefresh.NewClient(nil, tt.setup(srv))
			for range requests {
				resp, err := c.Get(api.URL + "/v1/things")
				if err == nil {
					resp.Body.Close()
				}
			}
			if n := tt.calls(srv.Stats()); n > 2 {
				t.Errorf("token calls for %d requests within one token lifetime = %d; want at most 2", requests, n)
			}
		})
	}
}

// TestLogoutDoesNotHangOnRevocation: Logout revokes at the server first,
// with the caller's context and nothing else bounding it, then drops the
// tokens. A revocation endpoint that never answers makes
// Logout(context.Background()) hang for good, and the tokens stay in use
// all that time; every other call to the authorization server (refresh,
// discovery, the save after it) is bounded by RefreshTimeout. Issue 15: a
// failed revocation never keeps the local tokens alive.
func TestLogoutDoesNotHangOnRevocation(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/revoke" {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	const access = "access-token-0123456789"
	tr := &autorefresh.Transport{
		Store:          autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: access, RefreshToken: "refresh-token-0123456789"}),
		RefreshTimeout: 100 * time.Millisecond,
		Refresher:      &autorefresh.OAuth2{TokenURL: srv.URL + "/token", RevocationURL: srv.URL + "/revoke"},
	}
	done := make(chan error, 1)
	go func() { done <- tr.Logout(context.Background()) }()
	if _, ok := within(arrived, time.Minute); !ok {
		t.Fatal("the revocation never reached the endpoint")
	}
	if _, ok := within(done, 10*time.Second); !ok {
		tok, _ := tr.Tokens(t.Context())
		t.Errorf("Logout(context.Background()) has not returned 10 s after the revocation endpoint stopped answering (RefreshTimeout 100ms); tokens still in use: %v; want Logout to return and the tokens dropped",
			tok.AccessToken == access)
	}
}

// TestConfigurationsNeverPrintSecrets: the README says the client secret
// never shows in the fmt or slog output of OAuth2, and issue 15 asks for no
// secret in any output. OAuth2, ClientCredentials, DPoP and Transport
// implement fmt.Formatter and slog.LogValuer, but not json.Marshaler: slog's
// JSON handler encodes a struct that holds one of them (a config struct,
// say) with encoding/json, and writes out the client secret and the private
// part (D) of the DPoP key. (Tokens documents this limit for itself; these
// types do not, and have no reason to be encoded at all.)
func TestConfigurationsNeverPrintSecrets(t *testing.T) {
	const secret = "client-secret-0123456789"
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw).String() // D, as encoding/json writes it
	dpop := &autorefresh.DPoP{Key: key}
	o := &autorefresh.OAuth2{TokenURL: "https://auth.example.com/token", ClientID: "app", ClientSecret: secret, DPoP: dpop}
	cc := &autorefresh.ClientCredentials{TokenURL: "https://auth.example.com/token", ClientID: "svc", ClientSecret: secret}
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(autorefresh.Tokens{}), Refresher: o, DPoP: dpop}
	tests := []struct {
		name string
		cfg  any
	}{
		{"*OAuth2", struct{ Auth *autorefresh.OAuth2 }{o}},
		{"*ClientCredentials", struct {
			Auth *autorefresh.ClientCredentials
		}{cc}},
		{"*DPoP", struct{ DPoP *autorefresh.DPoP }{dpop}},
		{"*Transport", struct{ HTTP *autorefresh.Transport }{tr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "cfg", tt.cfg)
			if strings.Contains(b.String(), secret) {
				t.Errorf("slog JSON of a struct holding a %s shows the client secret: %s", tt.name, b.String())
			}
			if strings.Contains(b.String(), d) {
				t.Errorf("slog JSON of a struct holding a %s shows the DPoP private key D: %s", tt.name, b.String())
			}
		})
	}
}

// TestClientCredentialsParamsScope: ClientCredentials.Params' doc says
// Params "cannot replace grant_type, scope, resource or audience when the
// fields above set them": with Scopes empty, a "scope" in Params is to be
// sent (as x/oauth2's clientcredentials EndpointParams does). It is
// silently dropped, so the token comes back with the client's default
// scopes.
func TestClientCredentialsParamsScope(t *testing.T) {
	forms := make(chan url.Values, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		forms <- r.PostForm
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"access-0123456789","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	cc := &autorefresh.ClientCredentials{TokenURL: srv.URL, ClientID: "svc", ClientSecret: "svc-secret-0123456789",
		Params: url.Values{"scope": {"invoices:read"}, "resource": {"https://api.example.com/invoices"}}}
	if _, err := cc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	form := <-forms
	if got := form.Get("scope"); got != "invoices:read" {
		t.Errorf("scope sent = %q; want %q from Params, since Scopes is empty", got, "invoices:read")
	}
	if got := form.Get("resource"); got != "https://api.example.com/invoices" {
		t.Errorf("resource sent = %q; want the one from Params", got)
	}
}

// TestBasicCredentialsRedactedFromDescriptions: the README says a
// RefreshError's Description "never contains ... the client secret", and
// sanitize redacts it raw and URL-encoded. With client_secret_basic (the
// default AuthStyle) the secret travels base64-encoded in the
// Authorization header; a server or gateway that quotes that header in its
// error_description gets it shown in the error, the refresh event and the
// debug log, where anyone can decode it.
func TestBasicCredentialsRedactedFromDescriptions(t *testing.T) {
	const id, secret = "billing", "client-secret-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"client authentication failed for %s"}`, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	cc := &autorefresh.ClientCredentials{TokenURL: srv.URL, ClientID: id, ClientSecret: secret}
	_, err := cc.Start(t.Context())
	if !errors.Is(err, autorefresh.ErrClientRejected) {
		t.Fatalf("error = %v; want ErrClientRejected", err)
	}
	encoded := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	if strings.Contains(err.Error(), encoded) {
		t.Errorf("error shows the Basic credentials (base64 of the client ID and secret): %v", err)
	}
}

// TestLogoutClientCredentials: with a ClientCredentials refresher there is
// no user's session to end (Logout's doc): Logout drops the token and
// clears the store, and the next request obtains a new token with the
// client's credentials, not the old one.
func TestLogoutClientCredentials(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	store := autorefresh.NewMemoryStore(autorefresh.Tokens{})
	tr, c := ccTransport(store, ccRefresher(srv))
	if code := get(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status = %d; want 200", code)
	}
	old, _ := tr.Tokens(t.Context())
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store after Logout: %v; want ErrNoTokens", err)
	}
	if code := get(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status after Logout = %d; want 200 with a new token", code)
	}
	if n := srv.Stats().ClientCredentialsGrants; n != 2 {
		t.Errorf("client credentials grants = %d; want 2 (a new token after Logout)", n)
	}
	if cur, _ := tr.Tokens(t.Context()); cur.AccessToken == old.AccessToken {
		t.Error("the token dropped by Logout is in use again")
	}
}

// TestProactiveRefreshWithoutRefreshTokenKeepsValidToken: a pair without a
// refresh token (a server that issues none, an access token handed over
// from elsewhere) with an OAuth2 refresher. When the access token enters the
// early window, there is nothing to refresh it with: it must be used until
// it expires or is refused, not dropped by a refresh that "fails" locally
// (OAuth2.Refresh: no refresh token, ErrSessionExpired, no request made).
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
	events := make(chan autorefresh.RefreshEvent, 4)
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: access}),
		Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/token"},
		OnRefresh: func(e autorefresh.RefreshEvent) { events <- e }}
	c := autorefresh.NewClient(nil, tr)
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

// TestClientCredentialsNeverSessionExpired: the README's client credentials
// section says "There is no session to expire", and ClientCredentials' doc
// that its errors never wrap ErrSessionExpired. Two replicas share a token
// file; one logs out (or the file is removed). The other's next refresh
// finds the store empty and ends "the session": its request fails with
// ErrSessionExpired, which callers handle as "log in again", and the
// request after it gets a new token anyway.
func TestClientCredentialsNeverSessionExpired(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	path := filepath.Join(t.TempDir(), "tokens.json")
	a, ca := ccTransport(autorefresh.NewFileStore(path), ccRefresher(srv))
	_, cb := ccTransport(autorefresh.NewFileStore(path), ccRefresher(srv))
	for _, c := range []*http.Client{ca, cb} {
		if code := get(t, c, srv.URL+"/api/me"); code != 200 {
			t.Fatalf("status = %d; want 200", code)
		}
	}
	if err := a.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	srv.ExpireAccessTokens() // the other replica's token is refused: it refreshes
	resp, err := cb.Get(srv.URL + "/api/me")
	if errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("the other replica's request: %v; want no ErrSessionExpired from a ClientCredentials Transport", err)
	} else if err == nil {
		resp.Body.Close()
	}
}
