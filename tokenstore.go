package autorefresh

import (
	"context"
	"sync"
)

// A TokenStore keeps the tokens of one session. Implementations must be safe
// for concurrent use.
type TokenStore interface {
	// Load returns the stored tokens, or ErrNoTokens when nothing is stored.
	Load(ctx context.Context) (Tokens, error)
	// Save replaces the stored tokens.
	Save(ctx context.Context, t Tokens) error
	// Clear removes the stored tokens. Clearing an empty store is not an
	// error.
	Clear(ctx context.Context) error
}

// A Locker is a TokenStore that can be locked across processes or machines.
//
// When a Transport's Store implements Locker, refreshes are coordinated
// through it: the Transport takes the lock, loads the stored tokens again
// and, if another holder of the store already refreshed (the stored access
// token differs from the one that needs renewing), uses the stored pair
// instead of calling the refresh endpoint. Otherwise it refreshes and saves
// before unlocking. This keeps single-use refresh tokens from being used
// twice by several processes sharing one store.
type Locker interface {
	// Lock blocks until the lock is held or ctx is done. The returned
	// unlock function releases it and must be called exactly once.
	Lock(ctx context.Context) (unlock func(), err error)
}

// MemoryStore is a TokenStore that keeps tokens in memory. It is safe for
// concurrent use. The zero value is an empty store.
type MemoryStore struct {
	mu     sync.Mutex // guards tokens and stored
	tokens Tokens
	stored bool
}

// NewMemoryStore returns a MemoryStore holding initial, or an empty one when
// initial has neither token.
func NewMemoryStore(initial Tokens) *MemoryStore {
	return &MemoryStore{tokens: initial, stored: !initial.IsZero()}
}

// Load returns the stored tokens or ErrNoTokens.
func (s *MemoryStore) Load(ctx context.Context) (Tokens, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stored {
		return Tokens{}, ErrNoTokens
	}
	return s.tokens, nil
}

// Save replaces the stored tokens.
func (s *MemoryStore) Save(ctx context.Context, t Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens, s.stored = t, true
	return nil
}

// Clear empties the store.
func (s *MemoryStore) Clear(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens, s.stored = Tokens{}, false
	return nil
}
