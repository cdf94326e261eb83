package autorefresh_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// A lost rotation race without a Locker: two Transports share a store that
// does not lock (two processes over a plain store, a wrapper without Lock)
// and both have their access token refused. Both read the store before
// either saved, so both present the same refresh token. The server rotates
// it for the winner and refuses it to the loser with invalid_grant; the
// loser then reads the store again, finds the winner's pair, and adopts it
// instead of ending the session.

// gatedBase sends token requests only once release is closed, after
// closing entered: a refresh that has read the store and waits to be sent.
type gatedBase struct {
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
	return http.DefaultTransport.RoundTrip(r)
}

func TestLostRotationRaceRecovers(t *testing.T) {
	srv := newTestServer(t, autorefreshtest.Options{})
	store := autorefresh.NewMemoryStore(srv.Issue("alice")) // not a Locker
	tokenURL := srv.URL + "/oauth/token"
	var winnerEvents, loserEvents []autorefresh.RefreshEvent
	winner := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{TokenURL: tokenURL},
		OnRefresh: func(e autorefresh.RefreshEvent) { winnerEvents = append(winnerEvents, e) }}
	gate := &gatedBase{entered: make(chan struct{}), release: make(chan struct{})}
	loser := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{TokenURL: tokenURL, Base: gate},
		OnRefresh: func(e autorefresh.RefreshEvent) { loserEvents = append(loserEvents, e) }}
	wc, lc := autorefresh.NewClient(nil, winner), autorefresh.NewClient(nil, loser)
	for _, hc := range []*http.Client{wc, lc} {
		if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
			t.Fatalf("GET /api/me = %d; want 200", code)
		}
	}
	before, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	srv.ExpireAccessTokens() // both are refused
	loserDone := getLater(t, lc, srv.URL+"/api/me")
	<-gate.entered // the loser has read the store and sends the refresh token
	if code := get(t, wc, srv.URL+"/api/me"); code != http.StatusOK {
		t.Fatalf("the winner's request = %d; want 200", code)
	}
	close(gate.release) // the winner has rotated the pair and saved it
	if code := <-loserDone; code != http.StatusOK {
		t.Fatalf("the loser's request = %d; want 200 after adopting the winner's pair", code)
	}

	st := srv.Stats()
	if st.Refreshes != 1 || st.RefreshRejections != 1 || st.ReuseRejections != 1 {
		t.Errorf("server: refreshes %d, rejections %d, reuses %d; want 1, 1, 1 (the loser presented the spent token once)",
			st.Refreshes, st.RefreshRejections, st.ReuseRejections)
	}
	wantOneRefresh(t, "winner", winnerEvents, false)
	wantOneRefresh(t, "loser", loserEvents, true)
	wantShared(t, store, before, winner, loser)
}

// wantOneRefresh fails t unless events hold one successful refresh that did
// not end the session, which adopted a pair from the store if adopted, and
// called the server otherwise.
func wantOneRefresh(t *testing.T, who string, events []autorefresh.RefreshEvent, adopted bool) {
	t.Helper()
	if len(events) != 1 || events[0].Err != nil || events[0].SessionEnded || events[0].Adopted != adopted {
		t.Errorf("%s's refreshes = %+v; want one, successful, adopted %v", who, events, adopted)
	}
}

// getLater GETs target through hc in a goroutine of its own, and sends the
// status (0 after an error, which fails t) on the channel it returns.
func getLater(t *testing.T, hc *http.Client, target string) <-chan int {
	done := make(chan int, 1)
	go func() {
		resp, err := hc.Get(target)
		if err != nil {
			t.Errorf("GET %s: %v", target, err)
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

// wantShared fails t unless store holds a pair rotated from before, which
// every Transport of trs uses.
func wantShared(t *testing.T, store autorefresh.TokenStore, before autorefresh.Tokens, trs ...*autorefresh.Transport) {
	t.Helper()
	stored, err := store.Load(t.Context())
	if err != nil || stored.RefreshToken == before.RefreshToken {
		t.Fatalf("store: %v; want the winner's rotated pair", err)
	}
	for i, tr := range trs {
		if tok, err := tr.Tokens(t.Context()); err != nil || tok != stored {
			t.Errorf("Transport %d's tokens: %v; want the stored pair", i, err)
		}
	}
}

// TestRotationRejectionOfStoredPairEndsSession: the same race, but the pair
// is revoked at the server instead: the store still holds the rejected
// pair, so the session ends.
func TestRotationRejectionOfStoredPairEndsSession(t *testing.T) {
	srv := newTestServer(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	store := autorefresh.NewMemoryStore(tok)
	tr := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token"}}
	srv.Revoke(tok.RefreshToken)
	_, err := autorefresh.NewClient(nil, tr).Get(srv.URL + "/api/me")
	if !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Fatalf("error = %v; want ErrSessionExpired", err)
	}
	if _, err := store.Load(context.Background()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store: %v; want ErrNoTokens", err)
	}
}
