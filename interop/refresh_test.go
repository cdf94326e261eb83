package interop

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// The tests here drive the refresh_token grant through the library
// (autorefresh.Transport with autorefresh.OAuth2 and BearerScheme) against
// oidc-provider, with refresh token rotation on. The protected resource is
// oidc-provider's own userinfo endpoint, /me: it validates the access
// token itself and refuses a bad one with 401 and
// WWW-Authenticate: Bearer error="invalid_token".

// newTransport returns a Transport over store that refreshes as c, and a
// client that sends through it. Their connections close when t ends.
func newTransport(t *testing.T, store autorefresh.TokenStore, c client) (*autorefresh.Transport, *http.Client) {
	t.Helper()
	base := &http.Transport{MaxIdleConnsPerHost: 128}
	t.Cleanup(base.CloseIdleConnections)
	refresher := c.oauth2()
	refresher.Base = base
	tr := &autorefresh.Transport{Base: base, Store: store, Refresher: refresher, Scheme: autorefresh.BearerScheme}
	return tr, autorefresh.NewClient(nil, tr)
}

// me GETs /me through hc and fails t unless it answers 200 for alice.
func me(t *testing.T, hc *http.Client) {
	t.Helper()
	status, body, err := getJSON(t.Context(), hc, srv.url("/me"))
	if err != nil {
		t.Fatalf("GET /me: %v", err)
	}
	var claims struct{ Sub string }
	if status != http.StatusOK || json.Unmarshal(body, &claims) != nil || claims.Sub != "alice" {
		t.Fatalf("GET /me answered %d %s; want 200 for sub alice", status, body)
	}
}

// meStatus GETs /me with access token directly, and returns the status.
func meStatus(t *testing.T, accessToken string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.url("/me"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /me: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// burst sends n GET /me at once, spread over the clients, and fails t for
// every one that does not answer 200.
func burst(t *testing.T, n int, clients ...*http.Client) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		hc := clients[i%len(clients)]
		wg.Go(func() {
			<-start
			status, body, err := getJSON(t.Context(), hc, srv.url("/me"))
			if err != nil || status != http.StatusOK {
				t.Errorf("request %d: got %d %s, %v; want 200", i, status, body, err)
			}
		})
	}
	close(start)
	wg.Wait()
}

// wantOneRefresh fails t unless d holds exactly one refresh_token grant of
// c, successful, and no reuse.
func wantOneRefresh(t *testing.T, d stats, c client) {
	t.Helper()
	if got := d.grant(c, "refresh_token", "ok"); got != 1 {
		t.Errorf("server: successful refresh_token grants = %d; want 1", got)
	}
	if got := d.failedGrants(c, "refresh_token"); got != 0 {
		t.Errorf("server: failed refresh_token grants = %d (%v); want 0", got, d.Grants[c.ID]["refresh_token"])
	}
	if d.Reuses != 0 || d.GrantsRevoked != 0 {
		t.Errorf("server: reuses = %d, grants revoked = %d; want 0, 0", d.Reuses, d.GrantsRevoked)
	}
}

// TestRefreshTokenGrant: for each way of authenticating the client, a
// refused access token is refreshed with one refresh_token grant, the
// request replayed, and the rotated refresh token kept.
func TestRefreshTokenGrant(t *testing.T) {
	for _, c := range []client{refreshBasic, refreshPost, refreshPublic} {
		t.Run(c.ID, func(t *testing.T) {
			tok := login(t, c, nil)
			tr, hc := newTransport(t, autorefresh.NewMemoryStore(tok), c)
			me(t, hc)

			before := getStats(t)
			revoke(t, c, tok.AccessToken, "access_token") // the server refuses it from now on
			me(t, hc)
			wantOneRefresh(t, getStats(t).since(before), c)

			if s := tr.Stats(); s.Refreshes != 1 || s.Replays != 1 {
				t.Errorf("Stats: refreshes = %d, replays = %d; want 1, 1", s.Refreshes, s.Replays)
			}
			got, err := tr.Tokens(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got.RefreshToken == tok.RefreshToken || got.AccessToken == tok.AccessToken {
				t.Errorf("after the refresh: refresh token rotated %v, access token new %v; want true, true",
					got.RefreshToken != tok.RefreshToken, got.AccessToken != tok.AccessToken)
			}
		})
	}
}

// TestBurstAfterExpiry: 100 concurrent requests with a dead access token
// make exactly one token call, and all of them succeed; whether the client
// knows the expiry (it refreshes first) or not (the server refuses the
// requests, which all wait on one refresh and are replayed), and when the
// server revoked the token before its expiry.
func TestBurstAfterExpiry(t *testing.T) {
	const n = 100
	tests := []struct {
		name string
		kill func(t *testing.T) autorefresh.Tokens // logs in and makes the access token dead
		// refused says whether the server refuses requests (the client
		// does not know that the token is dead).
		refused bool
	}{
		{"expired, expiry known", func(t *testing.T) autorefresh.Tokens { return expiredTokens(t, refreshBasic, nil) }, false},
		{"expired, expiry unknown", func(t *testing.T) autorefresh.Tokens {
			tok := expiredTokens(t, refreshBasic, nil)
			tok.Expiry = time.Time{} // an opaque token without expires_in
			return tok
		}, true},
		{"revoked before expiry", func(t *testing.T) autorefresh.Tokens {
			tok := login(t, refreshBasic, nil)
			revoke(t, refreshBasic, tok.AccessToken, "access_token")
			return tok
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.kill(t)
			if got := meStatus(t, tok.AccessToken); got != http.StatusUnauthorized {
				t.Fatalf("the server answers %d to the dead access token; want 401", got)
			}
			tr, hc := newTransport(t, autorefresh.NewMemoryStore(tok), refreshBasic)

			before := getStats(t)
			burst(t, n, hc)
			d := getStats(t).since(before)
			wantOneRefresh(t, d, refreshBasic)
			if s := tr.Stats(); s.Refreshes != 1 || s.RefreshFailures != 0 {
				t.Errorf("Stats: refreshes = %d, failures = %d; want 1, 0", s.Refreshes, s.RefreshFailures)
			}
			refusals := d.Routes["userinfo"]["401"]
			if tc.refused && (refusals < 1 || refusals > n) || !tc.refused && refusals != 0 {
				t.Errorf("server: /me refused %d requests; want 1 to %d when the client cannot know, 0 when it can", refusals, n)
			}
			t.Logf("/me: %d refused, %d answered; %d replays", refusals, d.Routes["userinfo"]["200"], tr.Stats().Replays)
		})
	}
}

// expiredTokens logs in as c (with a DPoP proof of key, if not nil) with a
// 2s access token lifetime and returns the tokens once both the client's
// clock and the server say it has expired. Tokens issued afterwards live
// defaultTTL again.
func expiredTokens(t *testing.T, c client, key *dpopKey) autorefresh.Tokens {
	t.Helper()
	setAccessTTL(t, 2)
	tok := login(t, c, key)
	postConfig(t, serverConfig{TTL: map[string]int{"AccessToken": defaultTTL}})
	waitFor(t, 10*time.Second, "access token expiry", func() bool { return time.Now().After(tok.Expiry) })
	return tok
}

// TestRestartFromFileStore: a new Transport over the token file of an
// earlier one (a restart) continues the session with the rotated refresh
// token that the earlier one saved.
func TestRestartFromFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok := login(t, refreshBasic, nil)
	before := getStats(t)

	first, hc := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
	if err := first.SetTokens(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	me(t, hc)
	revoke(t, refreshBasic, tok.AccessToken, "access_token")
	me(t, hc) // refreshes: the file now holds a rotated refresh token
	saved, err := autorefresh.NewFileStore(path).Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if saved.RefreshToken == tok.RefreshToken {
		t.Fatal("the file holds the first refresh token; want the rotated one")
	}

	// The process ends; while it is down the access token dies.
	hc.CloseIdleConnections()
	revoke(t, refreshBasic, saved.AccessToken, "access_token")

	second, hc := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
	me(t, hc)
	if s := second.Stats(); s.Refreshes != 1 || s.Replays != 1 {
		t.Errorf("restarted Transport: refreshes = %d, replays = %d; want 1, 1", s.Refreshes, s.Replays)
	}
	d := getStats(t).since(before)
	if got := d.grant(refreshBasic, "refresh_token", "ok"); got != 2 {
		t.Errorf("server: successful refresh_token grants = %d; want 2 (one per process)", got)
	}
	if d.failedGrants(refreshBasic, "refresh_token") != 0 || d.Reuses != 0 {
		t.Errorf("server: failed refresh_token grants %v, reuses %d; want none", d.Grants[refreshBasic.ID]["refresh_token"], d.Reuses)
	}
	now, err := autorefresh.NewFileStore(path).Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if now.RefreshToken == saved.RefreshToken {
		t.Error("the file still holds the refresh token the restart used; want the one it rotated to")
	}
}

// TestRevokedRefreshTokenEndsSession: after the refresh token was revoked
// at the server (RFC 7009) and the access token died, the next request
// fails with ErrSessionExpired and the token file is cleared.
func TestRevokedRefreshTokenEndsSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok := login(t, refreshBasic, nil)
	tr, hc := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
	if err := tr.SetTokens(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	me(t, hc)

	before := getStats(t)
	revoke(t, refreshBasic, tok.RefreshToken, "refresh_token")
	revoke(t, refreshBasic, tok.AccessToken, "access_token")
	_, _, err := getJSON(t.Context(), hc, srv.url("/me"))
	if !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Fatalf("GET /me after revocation: got %v; want an error wrapping ErrSessionExpired", err)
	}
	var re *autorefresh.RefreshError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("GET /me after revocation: got %v; want a *RefreshError with ErrorCode invalid_grant", err)
	}
	if _, err := autorefresh.NewFileStore(path).Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("token file after the session ended: Load = %v; want ErrNoTokens", err)
	}
	if _, err := tr.Tokens(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("Transport.Tokens after the session ended = %v; want ErrNoTokens", err)
	}
	d := getStats(t).since(before)
	if got := d.grant(refreshBasic, "refresh_token", "invalid_grant"); got != 1 {
		t.Errorf("server: refused refresh_token grants = %d; want 1", got)
	}
	if got := d.grant(refreshBasic, "refresh_token", "ok"); got != 0 {
		t.Errorf("server: successful refresh_token grants = %d; want 0", got)
	}
}

// TestRotationRaceAcrossTransports: two Transports over one token file (a
// FileStore is a Locker), as two processes of one user, never present a
// refresh token twice across many expiries: the one that loses the race
// adopts what the winner saved.
func TestRotationRaceAcrossTransports(t *testing.T) {
	t.Run("refused together", func(t *testing.T) {
		// Each round the server kills the access token that both hold,
		// and both send requests with it: one token call per round.
		const rounds, perRound = 8, 40
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := autorefresh.NewFileStore(path).Save(t.Context(), login(t, refreshBasic, nil)); err != nil {
			t.Fatal(err)
		}
		a, ca := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
		b, cb := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
		before := getStats(t)
		for range rounds {
			cur, err := autorefresh.NewFileStore(path).Load(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			revoke(t, refreshBasic, cur.AccessToken, "access_token")
			burst(t, perRound, ca, cb)
		}
		d := getStats(t).since(before)
		if got := d.grant(refreshBasic, "refresh_token", "ok"); got != rounds {
			t.Errorf("server: successful refresh_token grants = %d; want %d (one per round)", got, rounds)
		}
		wantNoReuse(t, d)
		sa, sb := a.Stats(), b.Stats()
		if sa.Refreshes+sb.Refreshes != 2*rounds {
			t.Errorf("Stats: refreshes %d + %d; want %d (each Transport renews once a round, by a token call or adopting)", sa.Refreshes, sb.Refreshes, 2*rounds)
		}
	})

	t.Run("steady load across expiries", func(t *testing.T) {
		// Access tokens live 2s and both Transports renew them ahead of
		// expiry under load, each on its own clock.
		const lifetime, lifetimes, workers = 2, 3, 4
		setAccessTTL(t, lifetime)
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := autorefresh.NewFileStore(path).Save(t.Context(), login(t, refreshBasic, nil)); err != nil {
			t.Fatal(err)
		}
		_, ca := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
		_, cb := newTransport(t, autorefresh.NewFileStore(path), refreshBasic)
		before := getStats(t)
		ctx, cancel := context.WithTimeout(t.Context(), lifetimes*lifetime*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		sent := 0
		for i := range 2 * workers {
			hc := []*http.Client{ca, cb}[i%2]
			wg.Go(func() {
				for n := 0; n < 10000 && ctx.Err() == nil; n++ {
					status, body, err := getJSON(ctx, hc, srv.url("/me"))
					if ctx.Err() != nil {
						return
					}
					if err != nil || status != http.StatusOK {
						t.Errorf("GET /me: got %d %s, %v; want 200", status, body, err)
						return
					}
					mu.Lock()
					sent++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		d := getStats(t).since(before)
		calls := d.grant(refreshBasic, "refresh_token", "ok")
		if calls < lifetimes-1 {
			t.Errorf("server: successful refresh_token grants = %d; want at least %d in %d token lifetimes", calls, lifetimes-1, lifetimes)
		}
		wantNoReuse(t, d)
		t.Logf("%d requests, %d token calls, %d refused by /me", sent, calls, d.Routes["userinfo"]["401"])
	})
}

// wantNoReuse fails t if the server saw a refresh token presented twice,
// or any failed refresh.
func wantNoReuse(t *testing.T, d stats) {
	t.Helper()
	if d.Reuses != 0 || d.GrantsRevoked != 0 {
		t.Errorf("server: refresh token reuses = %d, grants revoked = %d; want 0, 0", d.Reuses, d.GrantsRevoked)
	}
	if got := d.failedGrants(refreshBasic, "refresh_token"); got != 0 {
		t.Errorf("server: failed refresh_token grants = %d (%v); want 0", got, d.Grants[refreshBasic.ID]["refresh_token"])
	}
}

// TestServerDetectsReuse shows that the counters the tests above assert
// to be zero do count: oidc-provider refuses a rotated refresh token
// presented again, counts a reuse and revokes the grant, and the library
// then ends the session.
func TestServerDetectsReuse(t *testing.T) {
	tok := login(t, refreshBasic, nil)
	before := getStats(t)
	status, rotated := refreshGrant(t, refreshBasic, tok.RefreshToken, nil)
	if status != http.StatusOK || rotated.RefreshToken == "" || rotated.RefreshToken == tok.RefreshToken {
		t.Fatalf("first refresh: got %d %q, rotated %v; want 200 with a new refresh token", status, rotated.Error, rotated.RefreshToken != tok.RefreshToken)
	}
	if status, a := refreshGrant(t, refreshBasic, tok.RefreshToken, nil); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("the spent refresh token again: got %d %q; want 400 invalid_grant", status, a.Error)
	}
	d := getStats(t).since(before)
	if d.Reuses != 1 || d.GrantsRevoked != 1 {
		t.Errorf("server: reuses = %d, grants revoked = %d; want 1, 1", d.Reuses, d.GrantsRevoked)
	}

	// The grant is gone: the rotated pair is dead too.
	_, hc := newTransport(t, autorefresh.NewMemoryStore(rotated.tokens(time.Now())), refreshBasic)
	if _, _, err := getJSON(t.Context(), hc, srv.url("/me")); !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("GET /me with the pair of a revoked grant: got %v; want ErrSessionExpired", err)
	}
}
