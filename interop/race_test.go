package interop

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// A lost rotation race without a Locker, against oidc-provider: two
// Transports share a store that does not lock (a MemoryStore, as two parts
// of a program would), and both have their access token refused. Both
// read the store before either saved, so both present the same refresh
// token; the server rotates it for the winner and refuses it to the loser
// with invalid_grant. The loser reads the store again and adopts the
// winner's pair instead of ending the session.

// gatedBase sends the token requests of the loser only once release is
// closed, after closing entered: its refresh has read the store and waits
// to be sent.
type gatedBase struct {
	base             http.RoundTripper
	entered, release chan struct{}
	once             sync.Once
}

func (g *gatedBase) RoundTrip(r *http.Request) (*http.Response, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return g.base.RoundTrip(r)
}

// race runs the race for c and returns the status of the loser's request,
// the loser's refresh event, and the Transports' store and clients.
func race(t *testing.T, c client) (loserStatus int, loserEvent autorefresh.RefreshEvent, store *autorefresh.MemoryStore, wc, lc *http.Client) {
	t.Helper()
	store = autorefresh.NewMemoryStore(login(t, c, nil)) // not a Locker
	_, wc = transportWith(t, store, c.oauth2())
	o := c.oauth2()
	gate := &gatedBase{entered: make(chan struct{}), release: make(chan struct{})}
	loser, lc := transportWith(t, store, o) // sets o.Base
	gate.base, o.Base = o.Base, gate
	events := make(chan autorefresh.RefreshEvent, 4)
	loser.OnRefresh = func(e autorefresh.RefreshEvent) {
		select {
		case events <- e:
		default: // only the first is looked at
		}
	}
	me(t, wc)
	me(t, lc)

	tok, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, c, tok.AccessToken, "access_token") // both are refused
	done := make(chan int, 1)
	go func() {
		status, _, err := getJSON(t.Context(), lc, srv.url("/me"))
		if err != nil {
			t.Errorf("the loser's request: %v; want an answer", err)
		}
		done <- status
	}()
	<-gate.entered
	me(t, wc) // the winner rotates the pair, saves it and replays its request
	close(gate.release)
	return <-done, <-events, store, wc, lc
}

// TestLostRotationRace: against a server that refuses the spent refresh
// token ("not found") and lets the grant live on, the loser recovers.
func TestLostRotationRace(t *testing.T) {
	before := getStats(t)
	status, ev, store, wc, lc := race(t, refreshForget)
	if status != http.StatusOK {
		t.Errorf("the loser's request: got %d; want 200 with the winner's pair", status)
	}
	if !ev.Adopted || ev.Err != nil || ev.SessionEnded {
		t.Errorf("the loser's refresh: adopted %v, error %v, session ended %v; want true, nil, false", ev.Adopted, ev.Err, ev.SessionEnded)
	}
	d := getStats(t).since(before)
	ok, refused := d.grant(refreshForget, "refresh_token", "ok"), d.grant(refreshForget, "refresh_token", "invalid_grant")
	if ok != 1 || refused != 1 || d.GrantsRevoked != 0 {
		t.Errorf("server: refresh_token grants ok %d, invalid_grant %d, grants revoked %d; want 1, 1, 0", ok, refused, d.GrantsRevoked)
	}
	// The session goes on for both, with one more refresh.
	tok, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, refreshForget, tok.AccessToken, "access_token")
	me(t, lc)
	me(t, wc)
}

// TestLostRotationRaceReuseDetected: oidc-provider's reuse detection
// revokes the whole grant when a rotated refresh token is presented again:
// the loser adopts the winner's pair, but it is dead too, and the session
// ends at the next refresh, cleanly. A Locker store avoids the race.
func TestLostRotationRaceReuseDetected(t *testing.T) {
	before := getStats(t)
	status, ev, store, wc, _ := race(t, refreshBasic)
	if status != http.StatusUnauthorized || !ev.Adopted || ev.SessionEnded {
		t.Errorf("the loser: request %d, adopted %v, session ended %v; want 401 (the grant is revoked), true, false", status, ev.Adopted, ev.SessionEnded)
	}
	if d := getStats(t).since(before); d.Reuses != 1 || d.GrantsRevoked != 1 {
		t.Errorf("server: reuses %d, grants revoked %d; want 1, 1", d.Reuses, d.GrantsRevoked)
	}
	if _, _, err := getJSON(t.Context(), wc, srv.url("/me")); !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Errorf("next request: %v; want ErrSessionExpired", err)
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store: %v; want ErrNoTokens", err)
	}
}
