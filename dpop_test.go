package autorefresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// dpopSetup starts a test server with opts and returns it with a DPoP of a
// new key and DPoP-bound tokens it issued for that key (a password grant
// sent with a proof, after one nonce round when the server demands one).
func dpopSetup(t *testing.T, opts autorefreshtest.Options) (*autorefreshtest.Server, *autorefresh.DPoP, autorefresh.Tokens) {
	t.Helper()
	srv := autorefreshtest.NewServer(opts)
	t.Cleanup(srv.Close)
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d := &autorefresh.DPoP{Key: key}
	return srv, d, dpopGrant(t, srv, d, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}})
}

// dpopGrant asks srv's token endpoint for tokens with form and a proof of
// d, retrying once with the nonce the server asks for.
func dpopGrant(t *testing.T, srv *autorefreshtest.Server, d *autorefresh.DPoP, form url.Values) autorefresh.Tokens {
	t.Helper()
	tokenURL, _ := url.Parse(srv.URL + "/oauth/token")
	for range 2 {
		proof, err := autorefresh.TokenProof(d, tokenURL)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", tokenURL.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			TokenType    string `json:"token_type"`
			Error        string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		autorefresh.UpdateTokenNonce(d, tokenURL, resp.Header)
		if body.Error == "use_dpop_nonce" {
			continue
		}
		if resp.StatusCode != 200 || body.TokenType != "DPoP" {
			t.Fatalf("token endpoint: %d %s, token type %q; want 200 DPoP", resp.StatusCode, body.Error, body.TokenType)
		}
		return autorefresh.Tokens{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken, TokenType: body.TokenType}
	}
	t.Fatal("token endpoint demanded a nonce twice")
	return autorefresh.Tokens{}
}

// dpopRefresher refreshes DPoP-bound tokens at srv's token endpoint with
// proofs of d, as the OAuth2 refresher does with DPoP.
func dpopRefresher(t *testing.T, srv *autorefreshtest.Server, d *autorefresh.DPoP) autorefresh.RefreshFunc {
	return func(ctx context.Context, cur autorefresh.Tokens) (autorefresh.Tokens, error) {
		return dpopGrant(t, srv, d, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cur.RefreshToken}}), nil
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func getStatus(t *testing.T, c *http.Client, url string) (int, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestDPoPRequestsCarryProofs(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true})
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: d, Scheme: autorefresh.DefaultScheme}
	c := autorefresh.NewClient(nil, tr)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
				t.Errorf("status = %d, %v; want 200", code, err)
			}
		})
	}
	wg.Wait()
	st := srv.Stats()
	if st.DPoPProofs < n+1 || st.DPoPRefusals != (autorefreshtest.DPoPRefusals{}) {
		t.Errorf("server saw %d proofs, refusals %+v; want at least %d and none", st.DPoPProofs, st.DPoPRefusals, n+1)
	}
}

func TestDPoPNonceRetriedOnce(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: d}
	c := autorefresh.NewClient(nil, tr)
	// The API's nonce is not the token endpoint's: the first request is
	// told to use one, and sent again with it.
	if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status = %d, %v; want 200", code, err)
	}
	if got := tr.Stats().NonceRetries; got != 1 {
		t.Errorf("nonce retries = %d; want 1", got)
	}
	// The nonce is remembered: no more retries, even for many requests.
	for range 10 {
		if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
			t.Fatalf("status = %d, %v; want 200", code, err)
		}
	}
	if got := tr.Stats().NonceRetries; got != 1 {
		t.Errorf("nonce retries after 11 requests = %d; want 1", got)
	}
	// A rotation mid-burst costs each request at most one retry.
	srv.RotateDPoPNonce()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
				t.Errorf("status after a rotation = %d, %v; want 200", code, err)
			}
		})
	}
	wg.Wait()
	if got := tr.Stats().NonceRetries; got < 2 || got > 21 {
		t.Errorf("nonce retries = %d; want from 2 to 21", got)
	}
}

func TestDPoPServerThatAlwaysWantsANewNonce(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: d, Refresher: dpopRefresher(t, srv, d)}
	srv.DemandDPoPNonce(-1)
	before := srv.Stats().APICalls
	code, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me")
	if err != nil || code != 401 {
		t.Errorf("status = %d, %v; want the 401 returned after one retry", code, err)
	}
	if n := srv.Stats().APICalls - before; n != 2 {
		t.Errorf("API calls = %d; want 2 (one nonce retry, no loop)", n)
	}
	if n := srv.Stats().RefreshCalls; n != 0 {
		t.Errorf("refresh calls = %d; want 0: a nonce demand is not a refused token", n)
	}
}

func TestDPoPRefreshReplaysWithANewProof(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: d, Refresher: dpopRefresher(t, srv, d)}
	c := autorefresh.NewClient(nil, tr)
	if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status = %d, %v; want 200", code, err)
	}
	srv.ExpireAccessTokens()
	srv.RotateDPoPNonce() // the replay also needs a new nonce: both in one request
	if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status after expiry = %d, %v; want 200", code, err)
	}
	st := tr.Stats()
	if st.Replays != 1 || st.Refreshes != 1 {
		t.Errorf("stats = %+v; want one refresh and one replay", st)
	}
	if r := srv.Stats().DPoPRefusals; r.Replay != 0 || r.TokenHash != 0 {
		t.Errorf("server refused proofs %+v; want no reused jti and no stale ath", r)
	}
}

func TestDPoPTokenWithoutTheKey(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true})
	t.Run("no key configured", func(t *testing.T) {
		sent := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent++
			return http.DefaultTransport.RoundTrip(r)
		})
		tr := &autorefresh.Transport{Base: base, Store: autorefresh.NewMemoryStore(tok), Refresher: dpopRefresher(t, srv, d)}
		_, err := autorefresh.NewClient(nil, tr).Get(srv.URL + "/api/me")
		if !errors.Is(err, autorefresh.ErrDPoPKeyMissing) || sent != 0 {
			t.Errorf("error = %v, requests sent = %d; want autorefresh.ErrDPoPKeyMissing and none", err, sent)
		}
		if n := srv.Stats().RefreshCalls; n != 0 {
			t.Errorf("refresh calls = %d; want 0", n)
		}
	})
	t.Run("another key", func(t *testing.T) {
		key, err := autorefresh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		thief := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), DPoP: &autorefresh.DPoP{Key: key}}
		if code, err := getStatus(t, autorefresh.NewClient(nil, thief), srv.URL+"/api/me"); code != 401 {
			t.Errorf("stolen token with another key: status = %d, %v; want 401", code, err)
		}
		if n := srv.Stats().DPoPRefusals.Binding; n == 0 {
			t.Error("the server did not refuse the key binding")
		}
	})
}

func TestDPoPRefusedProofIsAnError(t *testing.T) {
	body := `{"error":"invalid_dpop_proof"}`
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 401, Body: io.NopCloser(strings.NewReader(body)), Request: r,
			Header: http.Header{"Www-Authenticate": {`DPoP error="invalid_dpop_proof", error_description="bad htu"`}}}, nil
	})
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tr := &autorefresh.Transport{Base: base, DPoP: &autorefresh.DPoP{Key: key}, Store: autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: "access-value", RefreshToken: "r", TokenType: "DPoP"}),
		Refresher: autorefresh.RefreshFunc(func(context.Context, autorefresh.Tokens) (autorefresh.Tokens, error) {
			return autorefresh.Tokens{}, fmt.Errorf("must not refresh")
		})}
	_, err = autorefresh.NewClient(nil, tr).Get("https://api.example.com/x")
	if !errors.Is(err, autorefresh.ErrDPoPProofRefused) || !strings.Contains(err.Error(), "bad htu") {
		t.Errorf("error = %v; want autorefresh.ErrDPoPProofRefused with the server's description", err)
	}
}

func TestDPoPPrintsNoKey(t *testing.T) {
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d := &autorefresh.DPoP{Key: key}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, d); strings.Contains(got, "D:") || strings.Contains(got, "X:") {
			t.Errorf("Sprintf(%s) = %s; shows the key", verb, got)
		}
	}
}

// dpopOAuth2 returns a Transport whose OAuth2 refresher uses d, over store.
func dpopOAuth2(srv *autorefreshtest.Server, d *autorefresh.DPoP, store autorefresh.TokenStore) *autorefresh.Transport {
	return &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", DPoP: d}}
}

func TestDPoPOAuth2Refresh(t *testing.T) {
	srv, d, tok := dpopSetup(t, autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	tr := dpopOAuth2(srv, d, autorefresh.NewMemoryStore(tok)) // the Transport uses the refresher's DPoP
	c := autorefresh.NewClient(nil, tr)
	if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status = %d, %v; want 200", code, err)
	}
	srv.ExpireAccessTokens()
	srv.RotateDPoPNonce() // the token endpoint asks for a new nonce too
	before := srv.Stats().Refreshes
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
				t.Errorf("status = %d, %v; want 200", code, err)
			}
		})
	}
	wg.Wait()
	if got := srv.Stats().Refreshes - before; got != 1 {
		t.Errorf("refreshes = %d; want 1 for a burst of %d", got, n)
	}
	cur, err := tr.Tokens(context.Background())
	if err != nil || cur.TokenType != "DPoP" {
		t.Errorf("tokens after the refresh: type %q, %v; want DPoP", cur.TokenType, err)
	}
	if r := srv.Stats().DPoPRefusals; r != (autorefreshtest.DPoPRefusals{}) {
		t.Errorf("server refused proofs: %+v", r)
	}
}

func TestDPoPDowngradeRefused(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowBearer %v", allow), func(t *testing.T) {
			srv, d, tok := dpopSetup(t, autorefreshtest.Options{})
			d.AllowBearer = allow
			tr := dpopOAuth2(srv, d, autorefresh.NewMemoryStore(tok))
			srv.SetDPoPDowngrade(true)
			srv.ExpireAccessTokens()
			code, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me")
			if !allow {
				// The answer spent the refresh token: the session ends
				// rather than present it again.
				if !errors.Is(err, autorefresh.ErrDPoPDowngrade) || !errors.Is(err, autorefresh.ErrSessionExpired) {
					t.Errorf("error = %v; want ErrDPoPDowngrade, the session ended", err)
				}
				return
			}
			if code != 200 {
				t.Fatalf("status = %d, %v; want 200 with the Bearer token", code, err)
			}
			if cur, _ := tr.Tokens(context.Background()); cur.TokenType != "Bearer" {
				t.Errorf("token type = %q; want Bearer", cur.TokenType)
			}
		})
	}
}

func TestDPoPClientCredentials(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true,
		Clients: []autorefreshtest.Client{{ID: "svc", Secret: "svc-secret-123456"}}})
	t.Cleanup(srv.Close)
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		Refresher: &autorefresh.ClientCredentials{TokenURL: srv.URL + "/oauth/token", ClientID: "svc", ClientSecret: "svc-secret-123456",
			DPoP: &autorefresh.DPoP{Key: key}}}
	c := autorefresh.NewClient(nil, tr)
	for range 3 {
		if code, err := getStatus(t, c, srv.URL+"/api/me"); code != 200 {
			t.Fatalf("status = %d, %v; want 200", code, err)
		}
	}
	if st := srv.Stats(); st.ClientCredentialsGrants != 1 {
		t.Errorf("client credentials grants = %d; want 1", st.ClientCredentialsGrants)
	}
	if cur, _ := tr.Tokens(context.Background()); cur.TokenType != "DPoP" {
		t.Errorf("token type = %q; want DPoP", cur.TokenType)
	}
}

// TestDPoPKeyAfterRestart restarts a program, a new Transport over the same
// token file: with the key it kept in a file beside it, the session goes
// on; with a new key, the bound refresh token cannot be refreshed.
func TestDPoPKeyAfterRestart(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{RequireDPoP: true})
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	keyPath, tokPath := dir+"/dpop-key.pem", dir+"/tokens.json"
	key, err := autorefresh.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &autorefresh.DPoP{Key: key}
	tok := dpopGrant(t, srv, d, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}})
	if err := autorefresh.NewFileStore(tokPath).Save(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	srv.ExpireAccessTokens()

	kept, err := autorefresh.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	tr := dpopOAuth2(srv, &autorefresh.DPoP{Key: kept}, autorefresh.NewFileStore(tokPath))
	if code, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me"); code != 200 {
		t.Fatalf("after a restart with the kept key: status = %d, %v; want 200", code, err)
	}

	srv.ExpireAccessTokens()
	other, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tr = dpopOAuth2(srv, &autorefresh.DPoP{Key: other}, autorefresh.NewFileStore(tokPath))
	if _, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me"); !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("after a restart with another key: %v; want ErrSessionExpired (the refresh token is bound to the old key)", err)
	}
}

// TestDPoPTokenTransport logs in with a password grant through
// DPoP.TokenTransport: the proof and the nonce round are made for the
// caller, and the tokens are bound to the key the refresher then uses.
func TestDPoPTokenTransport(t *testing.T) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	t.Cleanup(srv.Close)
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d := &autorefresh.DPoP{Key: key}
	login := &http.Client{Transport: d.TokenTransport(nil)}
	resp, err := login.PostForm(srv.URL+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.TokenType != "DPoP" {
		t.Fatalf("login: status %d, token type %q; want 200 DPoP", resp.StatusCode, body.TokenType)
	}
	if n := srv.Stats().DPoPNonceDemands; n != 1 {
		t.Errorf("nonce demands at login = %d; want 1 (one retry, made by the transport)", n)
	}
	tr := dpopOAuth2(srv, d, autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken, TokenType: body.TokenType}))
	srv.ExpireAccessTokens()
	if code, err := getStatus(t, autorefresh.NewClient(nil, tr), srv.URL+"/api/me"); code != 200 {
		t.Fatalf("status = %d, %v; want 200", code, err)
	}
	if n := srv.Stats().Refreshes; n != 1 {
		t.Errorf("refreshes = %d; want 1 with the key of the login", n)
	}
}

// TestTokenTransportBodilessNonceRetryDoesNotPanic: DPoP.TokenTransport
// retries a request once when the server answers 400 use_dpop_nonce with a
// DPoP-Nonce, also for a request without a body (GET, or a POST with a nil
// Body) and so without GetBody.
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

// TestTransportDPoPAloneBindsTokens: DPoP set on the Transport only (the
// DPoP doc allows either place) reaches the refresher too: refreshes carry a
// proof, and a DPoP-bound pair is refreshed with the configured key.
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
// (ErrDPoPDowngrade), but the server has already rotated the refresh token,
// so the spent one must never be presented again (a server with reuse
// detection would revoke the whole grant): the session ends instead.
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
