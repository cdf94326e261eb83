package autorefresh

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
// through it: the Transport takes the lock and loads the stored pair again.
// If another holder of the store changed it since the Transport last read or
// wrote it (any field of the pair differs), the Transport uses the stored
// pair instead of calling the refresh endpoint, or refreshes that pair when
// it has expired too. Otherwise it refreshes and saves before unlocking.
// This keeps single-use refresh tokens from being used twice by several
// processes sharing one store. SetTokens and Logout take the lock too.
//
// A lock that can be lost while it is held (a lease that runs out while its
// holder stalls) must fence the writes made under it: once lost, Save and
// Clear must refuse to write and return an error wrapping ErrLockLost, since
// another holder may have written since. The Transport then uses what the
// store holds.
type Locker interface {
	// Lock blocks until the lock is held or ctx is done. The returned
	// unlock function releases it and must be called exactly once.
	Lock(ctx context.Context) (unlock func(), err error)
}

// MemoryStore is a TokenStore that keeps tokens in memory. It is safe for
// concurrent use, and never prints its tokens (they are behind a pointer).
// The zero value is an empty store.
type MemoryStore struct {
	mu     sync.Mutex // guards tokens
	tokens *Tokens    // nil: empty
}

// NewMemoryStore returns a MemoryStore holding initial, or an empty one when
// initial has neither token.
func NewMemoryStore(initial Tokens) *MemoryStore {
	s := new(MemoryStore)
	if !initial.IsZero() {
		s.tokens = &initial
	}
	return s
}

// errNilMemoryStore is the error of every method of a nil *MemoryStore.
var errNilMemoryStore = fmt.Errorf("%w: a nil *MemoryStore (create one with NewMemoryStore)", ErrNoStore)

// Load returns the stored tokens or ErrNoTokens.
func (s *MemoryStore) Load(ctx context.Context) (Tokens, error) {
	if s == nil {
		return Tokens{}, errNilMemoryStore
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		return Tokens{}, ErrNoTokens
	}
	return *s.tokens, nil
}

// Save replaces the stored tokens.
func (s *MemoryStore) Save(ctx context.Context, t Tokens) error {
	if s == nil {
		return errNilMemoryStore
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = &t
	return nil
}

// Clear empties the store.
func (s *MemoryStore) Clear(ctx context.Context) error {
	if s == nil {
		return errNilMemoryStore
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = nil
	return nil
}

// String describes s without its tokens.
func (s *MemoryStore) String() string {
	if s == nil {
		return "autorefresh.MemoryStore(nil)"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		return "autorefresh.MemoryStore{empty}"
	}
	return "autorefresh.MemoryStore{" + s.tokens.String() + "}"
}

// GoString is like String.
func (s *MemoryStore) GoString() string { return s.String() }

// Format implements fmt.Formatter so that every verb prints s without its
// tokens.
func (s *MemoryStore) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer: the token values are redacted.
func (s *MemoryStore) LogValue() slog.Value { return slog.StringValue(s.String()) }
