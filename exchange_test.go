package autorefresh

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
)

// panickySaveStore is a MemoryStore whose Save panics while panics is set.
type panickySaveStore struct {
	*MemoryStore
	panics atomic.Bool
}

func (s *panickySaveStore) Save(ctx context.Context, t Tokens) error {
	if s.panics.Load() {
		panic("store bug")
	}
	return s.MemoryStore.Save(ctx, t)
}

// TestSavePanicKeepsRotatedPair: a store whose Save panics (a bug in a
// user's store, a nil map in a wrapper) after the server rotated the pair.
// The Transport recovers the panic into a "refresh panicked" error (as it
// does for Load and the Refresher), but drops the new pair it got, the only
// copy of the rotated refresh token: the next request refreshes with the
// spent one, the server refuses it, and the session ends. A failed save
// keeps the new pair in memory and saves it again before the next refresh
// (README, "Failures"); a save that panicked failed too.
func TestSavePanicKeepsRotatedPair(t *testing.T) {
	srv := newProtoServer(t)
	store := &panickySaveStore{MemoryStore: NewMemoryStore(srv.stale())}
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	c := NewClient(nil, tr)

	store.panics.Store(true)
	resp, err := c.Get(srv.URL + "/api/x")
	if err == nil {
		resp.Body.Close()
	}
	t.Logf("request whose refresh's save panicked: %v", err)
	store.panics.Store(false)

	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("next request: status %d; want 200", code)
	}
	if n := srv.reuses.Load(); n != 0 {
		t.Errorf("refresh token reuses = %d; want 0 (the rotated pair was dropped and the spent one refreshed)", n)
	}
}
