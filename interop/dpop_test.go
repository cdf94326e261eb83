package interop

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// DPoP (RFC 9449) through the library against oidc-provider, which
// requires it of the clients dpop-public and dpop-cc and demands nonces:
// its token endpoint and /me share one (a new one each minute); the
// resource server of server.js has its own. The library's keys come from
// autorefresh.GenerateKey and LoadOrCreateKey. The first DPoP-bound tokens
// of dpop-public come from login, whose code exchange carries a proof of
// the same key made by the test (dpopKeyOf): the library does not run the
// authorization code flow. Everything after it is the library's.

// dpopTransport returns a Transport over store whose OAuth2 refresher for
// dpop-public signs its proofs with key, and a client that sends through
// it. The Transport has no DPoP of its own: it uses the refresher's, and
// its Scheme is left to the token type ("Authorization: DPoP").
func dpopTransport(t *testing.T, store autorefresh.TokenStore, key crypto.Signer) (*autorefresh.Transport, *http.Client) {
	t.Helper()
	o := dpopPublic.oauth2()
	o.DPoP = &autorefresh.DPoP{Key: key}
	return transportWith(t, store, o)
}

// wantGrants fails t unless d holds ok successful grants of grantType by c,
// nonce answers use_dpop_nonce (the round trips that give a DPoP its first
// nonce of the token endpoint), no other failed one, and no reuse or
// revoked grant.
func wantGrants(t *testing.T, d stats, c client, grantType string, ok, nonce int) {
	t.Helper()
	if got := d.grant(c, grantType, "ok"); got != ok {
		t.Errorf("server: successful %s grants of %s = %d; want %d", grantType, c.ID, got, ok)
	}
	if got := d.grant(c, grantType, "use_dpop_nonce"); got != nonce {
		t.Errorf("server: %s grants of %s answered use_dpop_nonce = %d; want %d", grantType, c.ID, got, nonce)
	}
	if got := d.failedGrants(c, grantType) - d.grant(c, grantType, "use_dpop_nonce"); got != 0 {
		t.Errorf("server: failed %s grants of %s = %d (%v); want none but the nonce rounds", grantType, c.ID, got, d.Grants[c.ID][grantType])
	}
	if d.Reuses != 0 || d.GrantsRevoked != 0 {
		t.Errorf("server: reuses = %d, grants revoked = %d; want 0, 0", d.Reuses, d.GrantsRevoked)
	}
}

// wantDPoPTokens fails t unless tr holds DPoP tokens whose access token is
// not old, bound to key: the server takes it only with a proof of key (see
// wantBound).
func wantDPoPTokens(t *testing.T, tr *autorefresh.Transport, old string, key *dpopKey) autorefresh.Tokens {
	t.Helper()
	cur, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cur.TokenType != "DPoP" || cur.AccessToken == old {
		t.Fatalf("tokens: type %q, access token new %v; want DPoP, true", cur.TokenType, cur.AccessToken != old)
	}
	wantBound(t, srv.url("/me"), cur.AccessToken, key)
	return cur
}

// TestDPoPBurstAfterExpiry: 100 concurrent requests to /me with a dead
// DPoP-bound access token make one token call (after the one nonce round
// of a DPoP that has no nonce of the token endpoint yet), and all of them
// succeed, whether the client knows the token expired (it refreshes
// before sending) or the server revoked it (the requests are refused,
// wait on one refresh and are replayed with new proofs). The requests that
// went out without /me's nonce are sent once more with it; every 401 costs
// a request exactly one more attempt.
func TestDPoPBurstAfterExpiry(t *testing.T) {
	const n = 100
	tests := []struct {
		name    string
		kill    func(t *testing.T, key *dpopKey) autorefresh.Tokens // logs in and makes the access token dead
		refused bool                                                // the server refuses requests: the client cannot know
	}{
		{"expired, expiry known", func(t *testing.T, key *dpopKey) autorefresh.Tokens {
			return expiredTokens(t, dpopPublic, key)
		}, false},
		{"revoked before expiry", func(t *testing.T, key *dpopKey) autorefresh.Tokens {
			tok := login(t, dpopPublic, key)
			revoke(t, dpopPublic, tok.AccessToken, "access_token")
			return tok
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, view := newLibraryKey(t)
			tok := tc.kill(t, view)
			if tok.TokenType != "DPoP" {
				t.Fatalf("code exchange: token type %q; want DPoP", tok.TokenType)
			}
			if status, code := callAPI(t, srv.url("/me"), "DPoP", tok.AccessToken, view); status != http.StatusUnauthorized {
				t.Fatalf("/me answers %d %s to the dead access token with its key; want 401", status, code)
			}
			tr, hc := dpopTransport(t, autorefresh.NewMemoryStore(tok), key)

			before := getStats(t)
			burst(t, n, hc)
			d := getStats(t).since(before)
			wantGrants(t, d, dpopPublic, "refresh_token", 1, 1)
			st := tr.Stats()
			if st.Refreshes != 1 || st.RefreshFailures != 0 {
				t.Errorf("Stats: refreshes = %d, failures = %d; want 1, 0", st.Refreshes, st.RefreshFailures)
			}
			answered, refused := d.Routes["userinfo"]["200"], d.Routes["userinfo"]["401"]
			if answered != n {
				t.Errorf("server: /me answered 200 to %d requests; want %d", answered, n)
			}
			if int64(refused) != st.NonceRetries+st.Replays {
				t.Errorf("server: /me answered 401 to %d requests; want one per nonce retry (%d) and replay (%d)", refused, st.NonceRetries, st.Replays)
			}
			if st.NonceRetries < 1 || st.NonceRetries > n {
				t.Errorf("Stats: nonce retries = %d; want 1 to %d (the requests sent before /me gave its nonce)", st.NonceRetries, n)
			}
			if tc.refused && (st.Replays < 1 || st.Replays > n) || !tc.refused && st.Replays != 0 {
				t.Errorf("Stats: replays = %d; want 1 to %d when the server refuses, 0 when the client knows", st.Replays, n)
			}
			wantDPoPTokens(t, tr, tok.AccessToken, view)
			t.Logf("/me: %d answered, %d refused; %d nonce retries, %d replays", answered, refused, st.NonceRetries, st.Replays)
		})
	}
}

// TestDPoPStolenToken: tokens taken without their key are refused, by /me
// and by the resource server: the access token sent with proofs of
// another key or as a Bearer token, and the refresh token presented with
// another key; the library itself does not send DPoP tokens without a
// key. The owner's session goes on.
func TestDPoPStolenToken(t *testing.T) {
	key, view := newLibraryKey(t)
	tok := login(t, dpopPublic, view)
	owner, oc := dpopTransport(t, autorefresh.NewMemoryStore(tok), key)
	me(t, oc)
	resource(t, oc)
	thiefKey, _ := newLibraryKey(t)
	accessOnly := autorefresh.Tokens{AccessToken: tok.AccessToken, TokenType: "DPoP"}

	t.Run("access token with another key", func(t *testing.T) {
		thief := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(accessOnly), DPoP: &autorefresh.DPoP{Key: thiefKey}}
		wantRefused(t, thief, srv.url("/me"))
		wantRefused(t, thief, srv.Resource)
	})
	t.Run("access token as Bearer", func(t *testing.T) {
		accessOnly := accessOnly
		accessOnly.TokenType = "Bearer"
		thief := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(accessOnly)}
		wantRefused(t, thief, srv.url("/me"))
		wantRefused(t, thief, srv.Resource)
	})
	t.Run("pair with another key", func(t *testing.T) {
		// /me refuses the access token, the token endpoint the refresh
		// token (bound to the owner's key): the thief's session ends.
		thief, hc := dpopTransport(t, autorefresh.NewMemoryStore(tok), thiefKey)
		before := getStats(t)
		_, _, err := getJSON(t.Context(), hc, srv.url("/me"))
		var re *autorefresh.RefreshError
		if !errors.Is(err, autorefresh.ErrSessionExpired) || !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("GET /me: %v; want ErrSessionExpired, a *RefreshError invalid_grant", err)
		}
		d := getStats(t).since(before)
		if ok, refused := d.grant(dpopPublic, "refresh_token", "ok"), d.grant(dpopPublic, "refresh_token", "invalid_grant"); ok != 0 || refused != 1 {
			t.Errorf("server: refresh_token grants ok = %d, invalid_grant = %d; want 0, 1", ok, refused)
		}
		if d.GrantsRevoked != 0 {
			t.Errorf("server: grants revoked = %d; want 0", d.GrantsRevoked)
		}
		if _, err := thief.Tokens(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
			t.Errorf("the thief's Tokens = %v; want ErrNoTokens (its store cleared)", err)
		}
	})
	t.Run("pair without a key", func(t *testing.T) {
		thief, hc := transportWith(t, autorefresh.NewMemoryStore(tok), dpopPublic.oauth2())
		before := getStats(t)
		if _, _, err := getJSON(t.Context(), hc, srv.url("/me")); !errors.Is(err, autorefresh.ErrDPoPKeyMissing) {
			t.Errorf("GET /me: %v; want ErrDPoPKeyMissing", err)
		}
		if d := getStats(t).since(before); len(d.Routes["userinfo"]) != 0 || len(d.Routes["token"]) != 0 {
			t.Errorf("server: /me answered %v, the token endpoint %v; want nothing sent", d.Routes["userinfo"], d.Routes["token"])
		}
		if got, err := thief.Tokens(t.Context()); err != nil || got.RefreshToken != tok.RefreshToken {
			t.Errorf("Tokens: %v; want the pair kept", err)
		}
	})

	// The owner's access token still works, and the refresh token that the
	// thief presented with its key still refreshes.
	before := getStats(t)
	me(t, oc)
	resource(t, oc)
	revoke(t, dpopPublic, tok.AccessToken, "access_token")
	me(t, oc)
	wantGrants(t, getStats(t).since(before), dpopPublic, "refresh_token", 1, 1)
	if s := owner.Stats(); s.Refreshes != 1 || s.Replays != 1 {
		t.Errorf("the owner's Stats: refreshes = %d, replays = %d; want 1, 1", s.Refreshes, s.Replays)
	}
}

// wantRefused sends GET target through tr, without a Refresher, and fails
// t unless the answer is 401 with error="invalid_token".
func wantRefused(t *testing.T, tr *autorefresh.Transport, target string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := autorefresh.NewClient(nil, tr).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	resp.Body.Close()
	if code := challengeError(resp.Header); resp.StatusCode != http.StatusUnauthorized || code != "invalid_token" {
		t.Errorf("GET %s: got %d %q; want 401 invalid_token", target, resp.StatusCode, code)
	}
}

// TestDPoPRestartFromFileStore: a program that keeps its key beside its
// token file (LoadOrCreateKey, FileStore) continues the session after a
// restart, with the rotated refresh token it saved and the key it loads
// again. Restarted without the key, it fails with ErrDPoPKeyMissing and
// sends nothing, and the file keeps the tokens; restarted with a new key
// (the key file lost), the server refuses the refresh token and the
// session ends.
func TestDPoPRestartFromFileStore(t *testing.T) {
	dir := t.TempDir()
	keyPath, tokPath := filepath.Join(dir, "dpop-key.pem"), filepath.Join(dir, "tokens.json")
	before := getStats(t)
	key, saved := dpopFirstProcess(t, keyPath, tokPath)

	// The restart: the key from its file, the tokens from theirs.
	kept, err := autorefresh.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := kept.Public().(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		t.Fatal("LoadOrCreateKey returned another key; want the one it saved")
	}
	second, hc := dpopTransport(t, autorefresh.NewFileStore(tokPath), kept)
	me(t, hc)
	if s := second.Stats(); s.Refreshes != 1 || s.Replays != 1 {
		t.Errorf("restarted Transport: refreshes = %d, replays = %d; want 1, 1", s.Refreshes, s.Replays)
	}
	// One grant per process, each after a nonce round: a process starts
	// without the token endpoint's nonce.
	wantGrants(t, getStats(t).since(before), dpopPublic, "refresh_token", 2, 2)
	now := wantDPoPTokens(t, second, saved.AccessToken, dpopKeyOf(t, kept))
	if now.RefreshToken == saved.RefreshToken {
		t.Error("the restart kept the refresh token it used; want the one it rotated to")
	}

	t.Run("without the key", func(t *testing.T) { restartWithoutKey(t, tokPath, now) })
	t.Run("with a new key", func(t *testing.T) { restartWithNewKey(t, tokPath) })
}

// restartWithoutKey restarts over the token file at tokPath, which holds
// now, without a DPoP key: requests fail with ErrDPoPKeyMissing, nothing
// is sent, and the file keeps the tokens.
func restartWithoutKey(t *testing.T, tokPath string, now autorefresh.Tokens) {
	t.Helper()
	_, hc := transportWith(t, autorefresh.NewFileStore(tokPath), dpopPublic.oauth2())
	before := getStats(t)
	if _, _, err := getJSON(t.Context(), hc, srv.url("/me")); !errors.Is(err, autorefresh.ErrDPoPKeyMissing) {
		t.Errorf("GET /me: %v; want ErrDPoPKeyMissing", err)
	}
	if d := getStats(t).since(before); len(d.Routes["userinfo"]) != 0 || len(d.Routes["token"]) != 0 {
		t.Errorf("server: /me answered %v, the token endpoint %v; want nothing sent", d.Routes["userinfo"], d.Routes["token"])
	}
	got, err := autorefresh.NewFileStore(tokPath).Load(t.Context())
	if same := got.AccessToken == now.AccessToken && got.RefreshToken == now.RefreshToken && got.Expiry.Equal(now.Expiry); err != nil || !same {
		t.Errorf("token file: Load = %v, same tokens %v; want the tokens kept", err, same)
	}
}

// restartWithNewKey restarts over the token file at tokPath with a new key,
// as when the key file was lost: the server refuses the refresh token,
// which is bound to the old key, and the session ends.
func restartWithNewKey(t *testing.T, tokPath string) {
	t.Helper()
	lost, err := autorefresh.LoadOrCreateKey(filepath.Join(t.TempDir(), "dpop-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, hc := dpopTransport(t, autorefresh.NewFileStore(tokPath), lost)
	before := getStats(t)
	if _, _, err := getJSON(t.Context(), hc, srv.url("/me")); !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("GET /me: %v; want ErrSessionExpired (the refresh token is bound to the lost key)", err)
	}
	if got := getStats(t).since(before).grant(dpopPublic, "refresh_token", "invalid_grant"); got != 1 {
		t.Errorf("server: refresh_token grants answered invalid_grant = %d; want 1", got)
	}
	if _, err := autorefresh.NewFileStore(tokPath).Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("token file: Load = %v; want ErrNoTokens (the session ended)", err)
	}
}

// dpopFirstProcess is the program before its restart: it creates the key
// at keyPath, logs in with it, keeps the tokens in a FileStore at tokPath,
// and refreshes once through a Transport. It returns the key and the
// tokens it saved, whose access token it kills as it ends.
func dpopFirstProcess(t *testing.T, keyPath, tokPath string) (crypto.Signer, autorefresh.Tokens) {
	t.Helper()
	key, err := autorefresh.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	tok := login(t, dpopPublic, dpopKeyOf(t, key))
	tr, hc := dpopTransport(t, autorefresh.NewFileStore(tokPath), key)
	if err := tr.SetTokens(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	me(t, hc)
	revoke(t, dpopPublic, tok.AccessToken, "access_token")
	me(t, hc) // refreshes: the file now holds a rotated refresh token
	saved, err := autorefresh.NewFileStore(tokPath).Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if saved.RefreshToken == tok.RefreshToken || saved.TokenType != "DPoP" {
		t.Fatalf("the file holds the first refresh token %v, type %q; want the rotated one, DPoP", saved.RefreshToken == tok.RefreshToken, saved.TokenType)
	}
	// The process ends; while it is down the access token dies.
	hc.CloseIdleConnections()
	revoke(t, dpopPublic, saved.AccessToken, "access_token")
	return key, saved
}

// TestDPoPRevocationOnLogout: Logout revokes DPoP-bound tokens (the
// revocation endpoint, found by discovery, takes them without a proof):
// one call per token, the grant revoked, neither token works any more with
// a proof of its key, and the token file is cleared.
func TestDPoPRevocationOnLogout(t *testing.T) {
	key, view := newLibraryKey(t)
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok := login(t, dpopPublic, view)
	o := dpopPublic.oauth2()
	o.TokenURL, o.Issuer, o.RevokeAccessToken = "", srv.Issuer, true
	o.DPoP = &autorefresh.DPoP{Key: key}
	tr, hc := transportWith(t, autorefresh.NewFileStore(path), o)
	if err := tr.SetTokens(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	me(t, hc)
	before := getStats(t)
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	d := getStats(t).since(before)
	if d.Routes["revocation"]["200"] != 2 || d.GrantsRevoked != 1 {
		t.Errorf("server: revocations answered %v, grants revoked %d; want 200 twice, 1", d.Routes["revocation"], d.GrantsRevoked)
	}
	if status, a := refreshGrant(t, dpopPublic, tok.RefreshToken, view); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Errorf("refresh with the revoked refresh token and its key: got %d %q; want 400 invalid_grant", status, a.Error)
	}
	if status, code := callAPI(t, srv.url("/me"), "DPoP", tok.AccessToken, view); status != http.StatusUnauthorized {
		t.Errorf("/me with the revoked access token and its key: got %d %s; want 401", status, code)
	}
	if _, err := autorefresh.NewFileStore(path).Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("token file after Logout: %v; want ErrNoTokens", err)
	}
}

// TestDPoPClientCredentials: ClientCredentials with DPoP (dpop-cc, secret
// in HTTP Basic): 100 concurrent requests to the resource server at the
// first use make one grant (after one nonce round), all succeed, and the
// token is bound to the key (introspection shows its thumbprint in
// cnf.jkt); when the resource server refuses the token (revoked), 100
// requests make one more grant, with the nonce kept from the first (no
// round), and are replayed.
func TestDPoPClientCredentials(t *testing.T) {
	const n = 100
	key, view := newLibraryKey(t)
	cc := dpopCC.credentials()
	cc.DPoP = &autorefresh.DPoP{Key: key}
	tr, hc := transportWith(t, autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)

	before := getStats(t)
	burstAt(t, srv.Resource, n, hc)
	d := getStats(t).since(before)
	wantGrants(t, d, dpopCC, "client_credentials", 1, 1)
	st := tr.Stats()
	if d.Resource["200"] != n || int64(d.Resource["401"]) != st.NonceRetries || st.NonceRetries < 1 {
		t.Errorf("resource server: %v, nonce retries %d; want %d answers 200, and 401 only for the nonce retries (at least 1)", d.Resource, st.NonceRetries, n)
	}
	tok, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" || tok.RefreshToken != "" || tok.Expiry.IsZero() {
		t.Errorf("tokens: type %q, refresh token %v, expiry %v; want DPoP, none, set", tok.TokenType, tok.RefreshToken != "", tok.Expiry)
	}
	wantThumbprint(t, dpopCC, tok.AccessToken, view)

	revoke(t, dpopCC, tok.AccessToken, "access_token")
	before, st0 := getStats(t), tr.Stats()
	burstAt(t, srv.Resource, n, hc)
	d, st = getStats(t).since(before), tr.Stats()
	wantGrants(t, d, dpopCC, "client_credentials", 1, 0)
	retries := st.NonceRetries - st0.NonceRetries
	replays := st.Replays - st0.Replays
	if d.Resource["200"] != n || int64(d.Resource["401"]) != retries+replays || replays < 1 {
		t.Errorf("resource server: %v, nonce retries %d, replays %d; want %d answers 200, 401 for each retry and replay (at least 1)", d.Resource, retries, replays, n)
	}
	if st.Refreshes != 2 || st.RefreshFailures != 0 {
		t.Errorf("Stats: refreshes = %d, failures = %d; want 2, 0", st.Refreshes, st.RefreshFailures)
	}
}

// wantThumbprint fails t unless introspection (RFC 7662) as c says that
// token is an active DPoP token bound to key: its cnf.jkt is the key's
// thumbprint (RFC 9449 section 6.2).
func wantThumbprint(t *testing.T, c client, token string, key *dpopKey) {
	t.Helper()
	var info struct {
		Active    bool   `json:"active"`
		TokenType string `json:"token_type"`
		Cnf       struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	introspect(t, c, token, &info)
	if !info.Active || info.TokenType != "DPoP" || info.Cnf.JKT != key.thumbprint() {
		t.Errorf("introspection: active %v, token_type %q, cnf.jkt is the key's thumbprint %v; want true, DPoP, true",
			info.Active, info.TokenType, info.Cnf.JKT == key.thumbprint())
	}
}

// TestDPoPNoncePerOrigin: the library keeps each server's nonce to itself.
// Every nonce that a proof carries to an origin is one that origin gave;
// the resource server's first request gets a nonce round of its own,
// although the provider gave one; a new nonce of the resource server costs
// one round there, and none at the token endpoint. The nonce of a refusal
// goes with the replay; a request whose token is refused and whose replay
// is asked for a new nonce gets both (one refresh replay, then one nonce
// retry).
func TestDPoPNoncePerOrigin(t *testing.T) {
	key, view := newLibraryKey(t)
	tok := login(t, dpopPublic, view)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	spy := &nonceSpy{base: base, sent: map[string][]string{}, given: map[string][]string{}}
	o := dpopPublic.oauth2()
	o.DPoP, o.Base = &autorefresh.DPoP{Key: key}, spy
	tr := &autorefresh.Transport{Base: spy, Store: autorefresh.NewMemoryStore(tok), Refresher: o}
	hc := autorefresh.NewClient(nil, tr)
	retries := func() int64 { return tr.Stats().NonceRetries }

	me(t, hc)
	resource(t, hc)
	if got := retries(); got != 2 {
		t.Errorf("nonce retries after /me and the resource server = %d; want 2, one each", got)
	}
	before := getStats(t)
	revoke(t, dpopPublic, tok.AccessToken, "access_token")
	me(t, hc) // a refresh, whose DPoP has no nonce of the token endpoint yet
	wantGrants(t, getStats(t).since(before), dpopPublic, "refresh_token", 1, 1)

	configure(t, serverConfig{RotateResourceNonce: true})
	resource(t, hc)
	me(t, hc)
	if got := retries(); got != 3 {
		t.Errorf("nonce retries after the resource server's new nonce = %d; want 3, one more", got)
	}
	cur, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A refusal brings the resource server's new nonce: the replay after
	// the refresh carries it, with no nonce round.
	before = getStats(t)
	revoke(t, dpopPublic, cur.AccessToken, "access_token")
	postConfig(t, serverConfig{RotateResourceNonce: true})
	resource(t, hc)
	// The token endpoint's nonce is still the one it gave: no round there.
	wantGrants(t, getStats(t).since(before), dpopPublic, "refresh_token", 1, 0)
	if got, st := retries(), tr.Stats(); got != 3 || st.Replays != 2 {
		t.Errorf("nonce retries, replays after a refusal with a new nonce = %d, %d; want 3, 2", got, st.Replays)
	}

	// Both in one request: the resource server refuses the token, and its
	// nonce changes while the Transport refreshes, so the replay is asked
	// for the new one and sent once more.
	if cur, err = tr.Tokens(t.Context()); err != nil {
		t.Fatal(err)
	}
	before = getStats(t)
	revoke(t, dpopPublic, cur.AccessToken, "access_token")
	spy.beforeTokenRequest(func() error { return sendConfig(serverConfig{RotateResourceNonce: true}) })
	resource(t, hc)
	if err := spy.hookError(); err != nil {
		t.Fatal(err)
	}
	wantGrants(t, getStats(t).since(before), dpopPublic, "refresh_token", 1, 0)
	if got, st := retries(), tr.Stats(); got != 4 || st.Replays != 3 {
		t.Errorf("nonce retries, replays after a new nonce during the refresh = %d, %d; want 4, 3", got, st.Replays)
	}
	if d := getStats(t).since(before); d.Resource["401"] != 2 || d.Resource["200"] != 1 {
		t.Errorf("resource server: %v; want 401 twice (the token, the nonce), then 200", d.Resource)
	}
	spy.check(t)
}

// nonceSpy is a RoundTripper that records, by origin, the nonce of every
// DPoP proof sent there ("" for a proof without one) and every nonce that
// the answers from there gave (DPoP-Nonce). It is safe for concurrent use.
type nonceSpy struct {
	base http.RoundTripper

	mu          sync.Mutex          // guards the fields below
	sent, given map[string][]string // origin -> nonces
	hook        func() error        // run before the next token request
	hookErr     error
}

// beforeTokenRequest makes the next token request run hook first.
func (s *nonceSpy) beforeTokenRequest(hook func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = hook
}

// hookError returns the error of the hook, or one saying that it did not
// run.
func (s *nonceSpy) hookError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hook != nil {
		return errors.New("no token request was sent")
	}
	return s.hookErr
}

func (s *nonceSpy) RoundTrip(r *http.Request) (*http.Response, error) {
	o := r.URL.Scheme + "://" + r.URL.Host
	if r.URL.Path == "/token" {
		s.mu.Lock()
		hook := s.hook
		s.hook = nil
		s.mu.Unlock()
		if hook != nil {
			err := hook()
			s.mu.Lock()
			s.hookErr = err
			s.mu.Unlock()
		}
	}
	if p := r.Header.Get("DPoP"); p != "" {
		s.add(s.sent, o, proofNonce(p))
	}
	resp, err := s.base.RoundTrip(r)
	if err == nil && resp.Header.Get("DPoP-Nonce") != "" {
		s.add(s.given, o, resp.Header.Get("DPoP-Nonce"))
	}
	return resp, err
}

func (s *nonceSpy) add(m map[string][]string, origin, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[origin] = append(m[origin], nonce)
}

// check fails t unless every nonce sent to an origin is one it gave
// before, and both origins, the provider and the resource server, gave
// nonces and got proofs without one first.
func (s *nonceSpy) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range []string{srv.Issuer, origin(t, srv.Resource)} {
		if len(s.sent[o]) == 0 || s.sent[o][0] != "" || len(s.given[o]) == 0 {
			t.Errorf("%s: %d proofs, the first with a nonce %v, %d nonces given; want proofs, the first without, nonces", o, len(s.sent[o]), len(s.sent[o]) > 0 && s.sent[o][0] != "", len(s.given[o]))
		}
		for i, n := range s.sent[o] {
			if n != "" && !slices.Contains(s.given[o], n) {
				t.Errorf("%s: proof %d carries a nonce that %s did not give", o, i, o)
			}
		}
	}
}

// proofNonce returns the nonce claim of a DPoP proof, "" when it has none,
// or "(malformed)".
func proofNonce(proof string) string {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return "(malformed)"
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Nonce string `json:"nonce"`
	}
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		return "(malformed)"
	}
	return claims.Nonce
}

// wantBound checks that target accepts accessToken only with a DPoP proof
// of key: not as a Bearer token, not with a proof of another key.
func wantBound(t *testing.T, target, accessToken string, key *dpopKey) {
	t.Helper()
	if status, challenge := callAPI(t, target, "DPoP", accessToken, key); status != http.StatusOK {
		t.Errorf("%s with the key: got %d %s; want 200", target, status, challenge)
	}
	if status, _ := callAPI(t, target, "Bearer", accessToken, nil); status != http.StatusUnauthorized {
		t.Errorf("%s as a Bearer token: got %d; want 401", target, status)
	}
	if status, _ := callAPI(t, target, "DPoP", accessToken, newDPoPKey(t)); status != http.StatusUnauthorized {
		t.Errorf("%s with another key: got %d; want 401", target, status)
	}
}
