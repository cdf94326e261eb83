package autorefresh

import (
	"context"
	"fmt"
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

// lostLockStore is a Locker store whose next Save fails with ErrLockLost
// (the store says the lock's lease ran out and another writer may have
// written), after which the stored record is gone (ErrTokensLost, as a
// Redis key after FLUSHALL) until a Save succeeds.
type lostLockStore struct {
	lockingStore
	loseNext, lost atomic.Bool
}

func (s *lostLockStore) Save(ctx context.Context, t Tokens) error {
	if s.loseNext.CompareAndSwap(true, false) {
		s.lost.Store(true)
		return fmt.Errorf("save refused: %w", ErrLockLost)
	}
	s.lost.Store(false)
	return s.lockingStore.Save(ctx, t)
}

func (s *lostLockStore) Load(ctx context.Context) (Tokens, error) {
	if s.lost.Load() {
		return Tokens{}, fmt.Errorf("record gone: %w", ErrTokensLost)
	}
	return s.lockingStore.Load(ctx)
}

// TestLockLostThenRecordGoneKeepsRotatedPair: the save of a freshly rotated
// pair is refused with ErrLockLost, and when the Transport then reads the
// store to take the other holder's pair (takeStored), the record is gone
// (ErrTokensLost). takeStored returns that as a transient error and drops
// the rotated pair: the Transport goes on with the spent one, which its next
// refresh writes back and spends again, and the session ends. Nothing newer
// than the rotated pair is in the store; it is the only copy of a valid
// refresh token and must be kept (and saved again), as a vanished record is
// handled everywhere else.
func TestLockLostThenRecordGoneKeepsRotatedPair(t *testing.T) {
	srv := newProtoServer(t)
	store := &lostLockStore{}
	store.lockingStore.Save(context.Background(), srv.stale())
	tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
	c := NewClient(nil, tr)

	store.loseNext.Store(true)
	resp, err := c.Get(srv.URL + "/api/x")
	if err == nil {
		resp.Body.Close()
	}
	t.Logf("request whose save was refused and whose store then lost its record: %v", err)

	if code, _ := get(t, c, srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("next request: status %d; want 200", code)
	}
	if n := srv.reuses.Load(); n != 0 {
		t.Errorf("refresh token reuses = %d; want 0 (the rotated pair was dropped and the spent one refreshed)", n)
	}
}
