package autorefresh_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// Revocation on logout (RFC 7009) against autorefreshtest.

// TestLogoutRevokes: with a revocation endpoint known (given, or from the
// issuer's metadata), Logout revokes the refresh token (and the access
// token if asked) at the server, then clears the store: the refresh token
// cannot be used again.
func TestLogoutRevokes(t *testing.T) {
	key := mustKey(t)
	tests := []struct {
		name         string
		refresher    func(srv *autorefreshtest.Server) *autorefresh.OAuth2
		auth         func(t *testing.T, srv *autorefreshtest.Server) url.Values
		calls        int64
		accessCalled bool
	}{
		{name: "revocation URL", calls: 1, refresher: func(srv *autorefreshtest.Server) *autorefresh.OAuth2 {
			return &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", RevocationURL: srv.URL + "/oauth/revoke", ClientID: ccID, ClientSecret: ccSecret}
		}},
		{name: "discovered", calls: 1, refresher: func(srv *autorefreshtest.Server) *autorefresh.OAuth2 {
			return &autorefresh.OAuth2{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret, AuthStyle: autorefresh.AuthStyleInParams}
		}},
		{name: "access token too", calls: 2, accessCalled: true, refresher: func(srv *autorefreshtest.Server) *autorefresh.OAuth2 {
			return &autorefresh.OAuth2{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret, RevokeAccessToken: true}
		}},
		{name: "private_key_jwt", calls: 1, refresher: func(srv *autorefreshtest.Server) *autorefresh.OAuth2 {
			return &autorefresh.OAuth2{Issuer: srv.Issuer(), ClientID: pkjwtID, AuthStyle: autorefresh.AuthStylePrivateKeyJWT, ClientKey: key}
		}, auth: func(t *testing.T, srv *autorefreshtest.Server) url.Values { return assertionAuth(t, srv, key) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: pkjwtID, Key: key.Public()}}})
			auth := url.Values{"client_id": {ccID}, "client_secret": {ccSecret}}
			if tt.auth != nil {
				auth = tt.auth(t, srv)
			}
			tok := passwordGrant(t, srv, auth)
			o := tt.refresher(srv)
			store := autorefresh.NewMemoryStore(tok)
			tr := &autorefresh.Transport{Store: store, Refresher: o}
			if code := get(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me"); code != http.StatusOK {
				t.Fatalf("GET /api/me = %d; want 200", code)
			}
			if err := tr.Logout(t.Context()); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			st := srv.Stats()
			if st.RevocationCalls != tt.calls || st.Revocations != 1 {
				t.Errorf("revocation calls %d, sessions revoked %d; want %d, 1", st.RevocationCalls, st.Revocations, tt.calls)
			}
			if info, _ := srv.Introspect(tok.AccessToken); info.Active {
				t.Error("the access token is still active; want it revoked with its session")
			}
			if _, err := store.Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
				t.Errorf("store after Logout: %v; want ErrNoTokens", err)
			}
			if _, err := o.Refresh(t.Context(), tok); !errors.Is(err, autorefresh.ErrSessionExpired) {
				t.Errorf("refresh with the revoked refresh token: %v; want ErrSessionExpired", err)
			}
		})
	}
}

// TestLogoutRevocationFails: a failed revocation is reported by Logout, and
// the tokens are dropped all the same.
func TestLogoutRevocationFails(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	tok := passwordGrant(t, srv, url.Values{"client_id": {ccID}, "client_secret": {ccSecret}})
	store := autorefresh.NewMemoryStore(tok)
	tr := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret}}
	srv.FailRevocation(1, http.StatusServiceUnavailable)
	err := tr.Logout(t.Context())
	var re *autorefresh.RevocationError
	if !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable || re.TokenTypeHint != "refresh_token" {
		t.Fatalf("Logout: %v; want a *RevocationError of the refresh token with status 503", err)
	}
	for _, s := range []string{tok.AccessToken, tok.RefreshToken, ccSecret} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows a secret", err)
		}
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store after a failed revocation: %v; want ErrNoTokens (cleared all the same)", err)
	}
	if _, err := tr.Tokens(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("Transport.Tokens after Logout: %v; want ErrNoTokens", err)
	}
	if st := srv.Stats(); st.RevocationFaults != 1 || st.Revocations != 0 {
		t.Errorf("revocation faults %d, sessions revoked %d; want 1, 0", st.RevocationFaults, st.Revocations)
	}
}

// TestLogoutWithoutRevocationEndpoint: without a revocation endpoint,
// Logout only clears locally.
func TestLogoutWithoutRevocationEndpoint(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	tok := passwordGrant(t, srv, url.Values{"client_id": {ccID}, "client_secret": {ccSecret}})
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok),
		Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", ClientID: ccID, ClientSecret: ccSecret}}
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if st := srv.Stats(); st.RevocationCalls != 0 || st.DiscoveryFetches != 0 {
		t.Errorf("revocation calls %d, metadata fetches %d; want 0, 0", st.RevocationCalls, st.DiscoveryFetches)
	}
}

// TestClientCredentialsLogoutRevokes: a ClientCredentials revokes its
// access token on Logout.
func TestClientCredentialsLogoutRevokes(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	cc := ccRefresher(srv)
	cc.RevocationURL = srv.URL + "/oauth/revoke"
	tr, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
	get(t, hc, srv.URL+"/api/me")
	tok, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if st := srv.Stats(); st.RevocationCalls != 1 || st.RevokedAccessTokens != 1 {
		t.Errorf("revocation calls %d, access tokens revoked %d; want 1, 1", st.RevocationCalls, st.RevokedAccessTokens)
	}
	if info, _ := srv.Introspect(tok.AccessToken); info.Active {
		t.Error("the access token is still active; want it revoked")
	}
	// The next request starts again with a new token.
	if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
		t.Errorf("GET /api/me after Logout = %d; want 200 with a new token", code)
	}
	if n := srv.Stats().ClientCredentialsGrants; n != 2 {
		t.Errorf("client credentials grants = %d; want 2", n)
	}
}

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

// TestLogoutDoesNotHangOnRevocation: a revocation endpoint that never
// answers does not make Logout(context.Background()) hang: the revocation is
// bounded by RefreshTimeout, like every other call to the authorization
// server, and a failed revocation never keeps the local tokens alive.
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
