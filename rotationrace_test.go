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

	won := make(chan struct{})
	var wonOnce sync.Once
	var winnerEvents, loserEvents []autorefresh.RefreshEvent
	winner := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{TokenURL: tokenURL},
		OnRefresh: func(e autorefresh.RefreshEvent) {
			winnerEvents = append(winnerEvents, e)
			wonOnce.Do(func() { close(won) }) // called after the new pair was saved
		}}
	gate := &gatedBase{entered: make(chan struct{}), release: won}
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
	loserDone := make(chan int, 1)
	go func() {
		resp, err := lc.Get(srv.URL + "/api/me")
		if err != nil {
			t.Errorf("the loser's request: %v; want 200 after adopting the winner's pair", err)
			loserDone <- 0
			return
		}
		resp.Body.Close()
		loserDone <- resp.StatusCode
	}()
	<-gate.entered // the loser has read the store and sends the refresh token
	if code := get(t, wc, srv.URL+"/api/me"); code != http.StatusOK {
		t.Fatalf("the winner's request = %d; want 200", code)
	}
	if code := <-loserDone; code != http.StatusOK {
		t.Fatalf("the loser's request = %d; want 200", code)
	}

	st := srv.Stats()
	if st.Refreshes != 1 || st.RefreshRejections != 1 || st.ReuseRejections != 1 {
		t.Errorf("server: refreshes %d, rejections %d, reuses %d; want 1, 1, 1 (the loser presented the spent token once)",
			st.Refreshes, st.RefreshRejections, st.ReuseRejections)
	}
	if len(winnerEvents) != 1 || winnerEvents[0].Err != nil || winnerEvents[0].Adopted {
		t.Errorf("winner's refreshes = %+v; want one that called the server", winnerEvents)
	}
	if len(loserEvents) != 1 || loserEvents[0].Err != nil || !loserEvents[0].Adopted || loserEvents[0].SessionEnded {
		t.Errorf("loser's refreshes = %+v; want one that adopted the winner's pair", loserEvents)
	}
	stored, err := store.Load(t.Context())
	if err != nil || stored.RefreshToken == before.RefreshToken {
		t.Fatalf("store: %v; want the winner's rotated pair", err)
	}
	for name, tr := range map[string]*autorefresh.Transport{"winner": winner, "loser": loser} {
		if tok, err := tr.Tokens(t.Context()); err != nil || tok != stored {
			t.Errorf("%s's tokens: %v; want the stored pair", name, err)
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
