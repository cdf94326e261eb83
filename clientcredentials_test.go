package autorefresh_test

import (
	"bytes"
	"context"
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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// The client credentials grant (RFC 6749 section 4.4) through a Transport,
// against autorefreshtest.

const (
	ccID     = "svc"
	ccSecret = "svc-secret-0123456789"
)

// ccServer starts a server on which the client ccID, with secret ccSecret,
// may ask for the scopes "read" and "write".
func ccServer(t *testing.T, opts autorefreshtest.Options) *autorefreshtest.Server {
	t.Helper()
	opts.Clients = append(opts.Clients, autorefreshtest.Client{ID: ccID, Secret: ccSecret, Scopes: []string{"read", "write"}})
	return newTestServer(t, opts)
}

// ccRefresher returns a ClientCredentials for srv's token endpoint.
func ccRefresher(srv *autorefreshtest.Server) *autorefresh.ClientCredentials {
	return &autorefresh.ClientCredentials{TokenURL: srv.URL + "/oauth/token", ClientID: ccID, ClientSecret: ccSecret}
}

// ccTransport returns a Transport over store with refresher, and a client
// that sends through it.
func ccTransport(store autorefresh.TokenStore, refresher autorefresh.Refresher) (*autorefresh.Transport, *http.Client) {
	tr := &autorefresh.Transport{Store: store, Refresher: refresher}
	return tr, autorefresh.NewClient(nil, tr)
}

// get GETs target through hc and returns the status, or fails t.
func get(t *testing.T, hc *http.Client, target string) int {
	t.Helper()
	resp, err := hc.Get(target)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// burst sends n GETs of target at once, spread over the clients, and
// returns the errors and statuses other than 200.
func burst(n int, target string, clients ...*http.Client) []string {
	start := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	for i := range n {
		hc := clients[i%len(clients)]
		wg.Go(func() {
			<-start
			resp, err := hc.Get(target)
			var failure string
			if err != nil {
				failure = err.Error()
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failure = resp.Status
				}
			}
			if failure != "" {
				mu.Lock()
				failures = append(failures, failure)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return failures
}

func TestClientCredentialsStartsSession(t *testing.T) {
	for _, style := range []autorefresh.AuthStyle{autorefresh.AuthStyleInHeader, autorefresh.AuthStyleInParams} {
		t.Run(style.String(), func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{})
			cc := ccRefresher(srv)
			cc.AuthStyle = style
			cc.Scopes = []string{"read"}
			cc.Resources = []string{"https://api.example.com/a", "https://api.example.com/b"}
			cc.Audiences = []string{"orders"}
			tr, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
			for range 3 {
				if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
					t.Fatalf("GET /api/me = %d; want 200", code)
				}
			}
			if n := srv.Stats().ClientCredentialsGrants; n != 1 {
				t.Errorf("client credentials grants = %d; want 1", n)
			}
			tok, err := tr.Tokens(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken != "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
				t.Errorf("tokens: refresh token %v, type %q, expiry %v; want none, Bearer, set", tok.RefreshToken != "", tok.TokenType, tok.Expiry)
			}
			info, ok := srv.Introspect(tok.AccessToken)
			wantAud := []string{"https://api.example.com/a", "https://api.example.com/b", "orders"}
			if !ok || info.ClientID != ccID || info.Scope != "read" || !slices.Equal(info.Audience, wantAud) {
				t.Errorf("token: client %q, scope %q, audience %q; want %q, %q, %q", info.ClientID, info.Scope, info.Audience, ccID, "read", wantAud)
			}
			if s := tr.Stats(); s.Refreshes != 1 || s.Replays != 0 {
				t.Errorf("Stats: refreshes %d, replays %d; want 1, 0", s.Refreshes, s.Replays)
			}
		})
	}
}

// TestClientCredentialsBurst: 100 concurrent requests that need a token
// make one token call, and all succeed: when the Transport has none yet,
// when the one it has expired, and when the API refuses it.
func TestClientCredentialsBurst(t *testing.T) {
	const n = 100
	tests := []struct {
		name   string
		stored autorefresh.Tokens
		before func(*autorefreshtest.Server, *http.Client) // after the store is set up
		grants int64                                       // in all
	}{
		{name: "first use", grants: 1},
		{name: "expired", grants: 1, stored: autorefresh.Tokens{AccessToken: "expired-access-token", TokenType: "Bearer",
			Expiry: time.Now().Add(-time.Minute)}},
		{name: "refused", grants: 2, before: func(srv *autorefreshtest.Server, hc *http.Client) {
			resp, err := hc.Get(srv.URL + "/api/me")
			if err == nil {
				resp.Body.Close()
			}
			srv.ExpireAccessTokens()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{})
			tr, hc := ccTransport(autorefresh.NewMemoryStore(tt.stored), ccRefresher(srv))
			if tt.before != nil {
				tt.before(srv, hc)
			}
			if failures := burst(n, srv.URL+"/api/me", hc); len(failures) != 0 {
				t.Errorf("%d requests failed, the first with %s; want none", len(failures), failures[0])
			}
			if got := srv.Stats().ClientCredentialsGrants; got != tt.grants {
				t.Errorf("client credentials grants = %d; want %d", got, tt.grants)
			}
			if s := tr.Stats(); s.Refreshes != tt.grants || s.RefreshFailures != 0 {
				t.Errorf("Stats: refreshes %d, failures %d; want %d, 0", s.Refreshes, s.RefreshFailures, tt.grants)
			}
		})
	}
}

// TestClientCredentialsRenewsAheadOfExpiry: with two-second tokens, a
// steady stream of requests gets a new token before the old one expires,
// and the API refuses none.
func TestClientCredentialsRenewsAheadOfExpiry(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{AccessTTL: 2 * time.Second})
	tr, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}), ccRefresher(srv))
	waitFor(t, "a second token", func() bool {
		if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
			t.Fatalf("GET /api/me = %d; want 200", code)
		}
		return srv.Stats().ClientCredentialsGrants >= 2
	})
	if st := srv.Stats(); st.API401s != 0 {
		t.Errorf("API 401s = %d; want 0 (renewed before expiry)", st.API401s)
	}
	if s := tr.Stats(); s.ProactiveRefreshes < 2 || s.Replays != 0 {
		t.Errorf("Stats: proactive refreshes %d, replays %d; want at least 2 (the start and the renewal), 0", s.ProactiveRefreshes, s.Replays)
	}
}

// TestClientCredentialsReplaysOn401: a token that the API refuses with 401
// invalid_token is replaced with one token call, and the request replayed.
func TestClientCredentialsReplaysOn401(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	tr, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}), ccRefresher(srv))
	get(t, hc, srv.URL+"/api/me")
	srv.ExpireAccessTokens()
	if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
		t.Fatalf("GET /api/me after the token was refused = %d; want 200", code)
	}
	st, s := srv.Stats(), tr.Stats()
	if st.ClientCredentialsGrants != 2 || st.API401s != 1 || s.Replays != 1 {
		t.Errorf("grants %d, API 401s %d, replays %d; want 2, 1, 1", st.ClientCredentialsGrants, st.API401s, s.Replays)
	}
}

// TestClientCredentialsRejected: a client that the server refuses is a
// configuration error: ErrClientRejected, never ErrSessionExpired, and
// requests back off instead of asking the server each.
func TestClientCredentialsRejected(t *testing.T) {
	const wrongSecret = "wrong-secret-9876543210"
	tests := []struct {
		name     string
		setup    func(*autorefresh.ClientCredentials)
		wantCode string
	}{
		{"wrong secret", func(c *autorefresh.ClientCredentials) { c.ClientSecret = wrongSecret }, "invalid_client"},
		{"wrong secret in params", func(c *autorefresh.ClientCredentials) {
			c.ClientSecret, c.AuthStyle = wrongSecret, autorefresh.AuthStyleInParams
		}, "invalid_client"},
		{"public client", func(c *autorefresh.ClientCredentials) { c.ClientID, c.ClientSecret = "public-app", "" }, "unauthorized_client"},
		{"scope not allowed", func(c *autorefresh.ClientCredentials) { c.Scopes = []string{"admin"} }, "invalid_scope"},
		{"resource not a URI", func(c *autorefresh.ClientCredentials) { c.Resources = []string{"orders"} }, "invalid_target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "public-app"}}})
			cc := ccRefresher(srv)
			tt.setup(cc)
			_, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
			const n = 20
			var backoffs int
			for i := range n {
				_, err := hc.Get(srv.URL + "/api/me")
				if err == nil {
					t.Fatalf("request %d succeeded; want the client refused", i)
				}
				checkRejected(t, err, tt.wantCode, wrongSecret)
				if errors.Is(err, autorefresh.ErrBackoff) {
					backoffs++
				}
			}
			// A configuration error holds requests back for a second from
			// the first failure: 20 requests in a row make one call.
			if calls := srv.Stats().RefreshCalls; calls != 1 || backoffs != n-1 {
				t.Errorf("token calls %d, requests failed by the back-off %d, for %d requests; want 1 call, %d back-offs", calls, backoffs, n, n-1)
			}
		})
	}
}

// checkRejected fails t unless err is a rejected client's error with the
// error code want, that shows no secret.
func checkRejected(t *testing.T, err error, want string, secrets ...string) {
	t.Helper()
	var re *autorefresh.RefreshError
	if !errors.Is(err, autorefresh.ErrClientRejected) || errors.Is(err, autorefresh.ErrSessionExpired) || !errors.As(err, &re) || re.ErrorCode != want {
		t.Fatalf("error = %v; want a *RefreshError %s wrapping ErrClientRejected, not ErrSessionExpired", err, want)
	}
	for _, s := range append(secrets, ccSecret) {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows a secret", err)
		}
	}
}

// TestClientCredentialsShareOneToken: three Transports over one token file
// (a FileStore is a Locker), as three replicas of a service, make one
// token call per token lifetime between them: at the start, after an
// expiry, and each time the API refuses the token they share.
func TestClientCredentialsShareOneToken(t *testing.T) {
	const replicas, perReplica, rounds = 3, 20, 4
	newFleet := func(t *testing.T, srv *autorefreshtest.Server, path string) ([]*autorefresh.Transport, []*http.Client) {
		var trs []*autorefresh.Transport
		var hcs []*http.Client
		for range replicas {
			tr, hc := ccTransport(autorefresh.NewFileStore(path), ccRefresher(srv))
			trs, hcs = append(trs, tr), append(hcs, hc)
		}
		return trs, hcs
	}
	t.Run("start and refusals", func(t *testing.T) {
		srv := ccServer(t, autorefreshtest.Options{})
		trs, hcs := newFleet(t, srv, filepath.Join(t.TempDir(), "tokens.json"))
		for round := range rounds + 1 {
			if round > 0 {
				srv.ExpireAccessTokens()
			}
			if failures := burst(replicas*perReplica, srv.URL+"/api/me", hcs...); len(failures) != 0 {
				t.Fatalf("round %d: %d requests failed, the first with %s; want none", round, len(failures), failures[0])
			}
			if got, want := srv.Stats().ClientCredentialsGrants, int64(round+1); got != want {
				t.Fatalf("after round %d: client credentials grants = %d; want %d (one per round)", round, got, want)
			}
		}
		for i, tr := range trs {
			if s := tr.Stats(); s.Refreshes != rounds+1 {
				t.Errorf("replica %d: refreshes = %d; want %d (one per round, by a token call or adopting)", i, s.Refreshes, rounds+1)
			}
		}
	})
	t.Run("expired", func(t *testing.T) {
		srv := ccServer(t, autorefreshtest.Options{})
		path := filepath.Join(t.TempDir(), "tokens.json")
		expired := autorefresh.Tokens{AccessToken: "expired-access-token", TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}
		if err := autorefresh.NewFileStore(path).Save(t.Context(), expired); err != nil {
			t.Fatal(err)
		}
		_, hcs := newFleet(t, srv, path)
		if failures := burst(replicas*perReplica, srv.URL+"/api/me", hcs...); len(failures) != 0 {
			t.Fatalf("%d requests failed, the first with %s; want none", len(failures), failures[0])
		}
		if got := srv.Stats().ClientCredentialsGrants; got != 1 {
			t.Errorf("client credentials grants = %d; want 1", got)
		}
	})
}

// TestClientCredentialsHidesSecrets: fmt and slog never show the client
// secret or key of a ClientCredentials, nor the token of an error.
func TestClientCredentialsHidesSecrets(t *testing.T) {
	key := mustKey(t)
	cc := &autorefresh.ClientCredentials{TokenURL: "https://auth.example.com/token", ClientID: ccID, ClientSecret: ccSecret,
		ClientKey: key, Scopes: []string{"read"}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cc", cc, "o", &autorefresh.OAuth2{ClientSecret: ccSecret, ClientKey: key})
	shown := fmt.Sprintf("%v %+v %#v %s %q", cc, cc, cc, cc, cc) + logged.String()
	priv, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(priv).String() // as fmt prints the key's D
	if strings.Contains(shown, ccSecret) || strings.Contains(shown, d) || !strings.Contains(shown, ccID) {
		t.Errorf("printed %s; want the client ID, no secret and no key", shown)
	}
}

// TestClientCredentialsNeedsClientID: a ClientCredentials without ClientID
// fails before it sends anything.
func TestClientCredentialsNeedsClientID(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	cc := ccRefresher(srv)
	cc.ClientID = ""
	_, err := cc.Start(context.Background())
	var re *autorefresh.RefreshError
	if !errors.As(err, &re) || errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("Start without ClientID: %v; want a *RefreshError", err)
	}
	if n := srv.Stats().RefreshCalls; n != 0 {
		t.Errorf("token calls = %d; want 0", n)
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

// TestRefusedFreshTokenDoesNotRefreshPerRequest: an API that refuses every
// token with 401 invalid_token (a wrong audience, a key it does not know)
// does not cost a client credentials client one token call per request: a
// fresh token refused at once says that asking again does not help, so the
// refresher backs off. (With a refresh token, each refused request refreshes
// once and is sent once more, as TestSecond403IsReturnedAsIs checks.)
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

// TestClientCredentialsParamsScope: ClientCredentials.Params cannot
// replace the fields that set grant_type, scope, resource or audience, but
// with Scopes empty a "scope" in Params is sent (as x/oauth2's
// clientcredentials EndpointParams does).
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

// TestBasicCredentialsRedactedFromDescriptions: with client_secret_basic
// (the default AuthStyle) the secret travels base64-encoded in the
// Authorization header; a server or gateway that quotes that header in its
// error_description must not get it shown in the error, where anyone could
// decode it.
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

// TestClientCredentialsNeverSessionExpired: there is no session to expire
// with client credentials. Two replicas share a token file; one logs out.
// The other's next refresh finds the store empty and obtains a new token: its
// request never fails with ErrSessionExpired.
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
