package interop

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// The client credentials grant (RFC 6749 section 4.4) through the library
// (autorefresh.Transport with autorefresh.ClientCredentials) against
// oidc-provider. The protected resource is the resource server of
// server.js, srv.Resource, which takes client credentials tokens and
// refuses a dead one with 401 Bearer error="invalid_token".

// transportWith returns a Transport over store with refresher (an *OAuth2
// or a *ClientCredentials, whose Base it sets), and a client that sends
// through it. Their connections close when t ends.
func transportWith(t *testing.T, store autorefresh.TokenStore, refresher autorefresh.Refresher) (*autorefresh.Transport, *http.Client) {
	t.Helper()
	base := &http.Transport{MaxIdleConnsPerHost: 128}
	t.Cleanup(base.CloseIdleConnections)
	switch r := refresher.(type) {
	case *autorefresh.OAuth2:
		r.Base = base
	case *autorefresh.ClientCredentials:
		r.Base = base
	}
	tr := &autorefresh.Transport{Base: base, Store: store, Refresher: refresher}
	return tr, autorefresh.NewClient(nil, tr)
}

// resource GETs the resource server through hc and fails t unless it
// answers 200.
func resource(t *testing.T, hc *http.Client) {
	t.Helper()
	status, body, err := getJSON(t.Context(), hc, srv.Resource)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, %v; want 200", srv.Resource, status, body, err)
	}
}

// burstAt sends n GETs of target at once, spread over the clients, and
// fails t for every one that does not answer 200.
func burstAt(t *testing.T, target string, n int, clients ...*http.Client) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		hc := clients[i%len(clients)]
		wg.Go(func() {
			<-start
			status, body, err := getJSON(t.Context(), hc, target)
			if err != nil || status != http.StatusOK {
				t.Errorf("request %d: got %d %s, %v; want 200", i, status, body, err)
			}
		})
	}
	close(start)
	wg.Wait()
}

// TestClientCredentials: for each client authentication, with and without
// an RFC 8707 resource, the first request gets a token with one grant, the
// next ones use it, and a token the resource server refuses (revoked) is
// replaced with one grant and the request replayed.
func TestClientCredentials(t *testing.T) {
	for _, c := range []client{ccBasic, ccPost, pkjwt} {
		for _, withResource := range []bool{false, true} {
			name := c.ID
			if withResource {
				name += " resource"
			}
			t.Run(name, func(t *testing.T) {
				cc := c.credentials()
				if withResource {
					cc.Resources = []string{srv.Resource}
				}
				tr, hc := transportWith(t, autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
				before := getStats(t)
				for range 3 {
					resource(t, hc)
				}
				tok, err := tr.Tokens(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if tok.RefreshToken != "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
					t.Errorf("tokens: refresh token %v, type %q, expiry %v; want none, Bearer, set", tok.RefreshToken != "", tok.TokenType, tok.Expiry)
				}
				revoke(t, c, tok.AccessToken, "access_token")
				resource(t, hc)
				d := getStats(t).since(before)
				if got := d.grant(c, "client_credentials", "ok"); got != 2 {
					t.Errorf("server: client_credentials grants = %d; want 2 (the start, the renewal after the revocation)", got)
				}
				if d.Resource["401"] != 1 || d.Resource["200"] != 4 {
					t.Errorf("resource server: %v; want 4 answers 200 and one 401", d.Resource)
				}
				if s := tr.Stats(); s.Refreshes != 2 || s.Replays != 1 {
					t.Errorf("Stats: refreshes %d, replays %d; want 2, 1", s.Refreshes, s.Replays)
				}
			})
		}
	}
}

// TestClientCredentialsBurst: 100 concurrent requests that need a token
// make one grant, and all succeed: at the first use, after the token
// expired, and when the resource server refuses it.
func TestClientCredentialsBurst(t *testing.T) {
	const n = 100
	expired := autorefresh.Tokens{AccessToken: "expired-access-token", TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}
	tests := []struct {
		name   string
		stored autorefresh.Tokens
		revoke bool // get a token first, then revoke it
	}{
		{name: "first use"},
		{name: "expired", stored: expired},
		{name: "refused", revoke: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, hc := transportWith(t, autorefresh.NewMemoryStore(tt.stored), ccBasic.credentials())
			if tt.revoke {
				resource(t, hc)
				tok, err := tr.Tokens(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				revoke(t, ccBasic, tok.AccessToken, "access_token")
			}
			before := getStats(t)
			burstAt(t, srv.Resource, n, hc)
			d := getStats(t).since(before)
			if got := d.grant(ccBasic, "client_credentials", "ok"); got != 1 {
				t.Errorf("server: client_credentials grants = %d; want 1", got)
			}
			if d.Resource["200"] != n {
				t.Errorf("resource server: %v; want %d answers 200", d.Resource, n)
			}
		})
	}
}

// TestClientCredentialsAcrossTransports: two Transports over one token file
// (a FileStore is a Locker), as two replicas, share one token per
// lifetime: over three lifetimes of 2 s under steady load, the server
// issues no more tokens than one replica uses.
func TestClientCredentialsAcrossTransports(t *testing.T) {
	const lifetime, lifetimes, workers = 2, 3, 4
	setAccessTTL(t, lifetime)
	path := filepath.Join(t.TempDir(), "tokens.json")
	a, ca := transportWith(t, autorefresh.NewFileStore(path), ccBasic.credentials())
	b, cb := transportWith(t, autorefresh.NewFileStore(path), ccBasic.credentials())
	before := getStats(t)
	ctx, cancel := context.WithTimeout(t.Context(), lifetimes*lifetime*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 * workers {
		hc := []*http.Client{ca, cb}[i%2]
		wg.Go(func() {
			for ctx.Err() == nil {
				status, body, err := getJSON(ctx, hc, srv.Resource)
				if ctx.Err() != nil {
					return
				}
				if err != nil || status != http.StatusOK {
					t.Errorf("GET %s: got %d %s, %v; want 200", srv.Resource, status, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := getStats(t).since(before)
	grants := d.grant(ccBasic, "client_credentials", "ok")
	sa, sb := a.Stats(), b.Stats()
	if grants < lifetimes || int64(grants) > max(sa.Refreshes, sb.Refreshes)+1 {
		t.Errorf("server: client_credentials grants = %d; want at least %d, and at most one more than the refreshes of one replica (%d, %d)",
			grants, lifetimes, sa.Refreshes, sb.Refreshes)
	}
	if n := d.failedGrants(ccBasic, "client_credentials"); n != 0 {
		t.Errorf("server: failed client_credentials grants = %d; want 0", n)
	}
	t.Logf("%d grants, refreshes (calls or adoptions) %d and %d, resource server %v", grants, sa.Refreshes, sb.Refreshes, d.Resource)
}

// TestClientCredentialsRejected: a client the server refuses gets a
// configuration error (ErrClientRejected, never ErrSessionExpired), and the
// Transport backs off instead of asking the server for every request.
func TestClientCredentialsRejected(t *testing.T) {
	tests := []struct {
		name string
		cc   *autorefresh.ClientCredentials
		code string
	}{
		{"wrong secret", &autorefresh.ClientCredentials{ClientID: ccBasic.ID, ClientSecret: "wrong-secret-value"}, "invalid_client"},
		// oidc-provider answers invalid_request here, where RFC 6749
		// section 5.2 has unauthorized_client: a client credentials
		// request is made of the configuration alone, so either is a
		// rejected client.
		{"grant not allowed", &autorefresh.ClientCredentials{ClientID: refreshBasic.ID, ClientSecret: refreshBasic.Secret}, "invalid_request"},
		{"scope not allowed", &autorefresh.ClientCredentials{ClientID: ccBasic.ID, ClientSecret: ccBasic.Secret, Scopes: []string{"openid"}}, "invalid_scope"},
		{"unknown resource", &autorefresh.ClientCredentials{ClientID: ccBasic.ID, ClientSecret: ccBasic.Secret, Resources: []string{"https://other.example.com/"}}, "invalid_target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cc.TokenURL = srv.url("/token")
			_, hc := transportWith(t, autorefresh.NewMemoryStore(autorefresh.Tokens{}), tt.cc)
			before := getStats(t)
			const n = 20
			backoffs := 0
			for range n {
				_, _, err := getJSON(t.Context(), hc, srv.Resource)
				var re *autorefresh.RefreshError
				if !errors.Is(err, autorefresh.ErrClientRejected) || errors.Is(err, autorefresh.ErrSessionExpired) || !errors.As(err, &re) || re.ErrorCode != tt.code {
					t.Fatalf("error = %v; want a *RefreshError %s wrapping ErrClientRejected, not ErrSessionExpired", err, tt.code)
				}
				if errors.Is(err, autorefresh.ErrBackoff) {
					backoffs++
				}
			}
			calls := 0
			for _, k := range getStats(t).since(before).Routes["token"] {
				calls += k
			}
			if calls >= n || backoffs == 0 {
				t.Errorf("token calls %d, requests failed by the back-off %d, for %d requests; want fewer calls, some back-offs", calls, backoffs, n)
			}
		})
	}
}
