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
// through it: the Transport takes the lock and loads the stored record
// again. If another holder of the store changed it since the Transport last
// read or wrote it (any field of the pair differs), the Transport uses the
// stored pair instead of calling the refresh endpoint, or refreshes that
// pair when it has expired too. Otherwise it refreshes and saves before
// unlocking. This keeps single-use refresh tokens from being used twice by
// several processes sharing one store. SetTokens and Logout take the lock
// too.
type Locker interface {
	// Lock blocks until the lock is held or ctx is done. The returned
	// unlock function releases it and must be called exactly once.
	Lock(ctx context.Context) (unlock func(), err error)
}

// A VersionedStore is a TokenStore whose records carry a version: a number
// that every save increments. It lets a Transport change the store only if
// it still holds the record the Transport last saw, even when the lock of a
// Locker was lost meanwhile (a lease that ran out while its holder stalled):
// a refresh whose refresh token was rejected clears the store only if the
// rejected pair is still the stored one, and a pair is saved over the one it
// was refreshed from, never over a newer one.
//
// MemoryStore, FileStore and the Redis store implement it. A store that does
// not is used with plain Load, Save and Clear, and the Transport compares
// whole pairs instead.
type VersionedStore interface {
	TokenStore

	// LoadVersion is Load that also returns the version of the record
	// read. A record saved without a version (by an older release) has
	// version 0. When no tokens are stored, the error wraps ErrNoTokens and
	// the version is that of the empty store: the version of the record
	// that Clear left in place of the tokens, or 0.
	LoadVersion(ctx context.Context) (Tokens, uint64, error)

	// SaveVersion stores t if the store's version is still prev, and
	// returns the version of the new record, which is greater than prev.
	// If the store holds another version, it stores nothing and returns an
	// error wrapping ErrVersionConflict.
	SaveVersion(ctx context.Context, t Tokens, prev uint64) (uint64, error)

	// ClearVersion clears the store, as Clear does, if its version is
	// still prev. If the store holds another version, it clears nothing
	// and returns an error wrapping ErrVersionConflict.
	ClearVersion(ctx context.Context, prev uint64) error
}

// MemoryStore is a TokenStore that keeps tokens in memory. It is a
// VersionedStore, safe for concurrent use, and never prints its tokens (its
// fields are behind a pointer). The zero value is an empty store.
type MemoryStore struct {
	mu  sync.Mutex // guards rec
	rec *memRecord // nil: empty at version 0
}

type memRecord struct {
	tokens  Tokens
	version uint64
	empty   bool
}

// NewMemoryStore returns a MemoryStore holding initial, or an empty one when
// initial has neither token.
func NewMemoryStore(initial Tokens) *MemoryStore {
	s := new(MemoryStore)
	if !initial.IsZero() {
		s.rec = &memRecord{tokens: initial, version: 1}
	}
	return s
}

// Load returns the stored tokens or ErrNoTokens.
func (s *MemoryStore) Load(ctx context.Context) (Tokens, error) {
	t, _, err := s.LoadVersion(ctx)
	return t, err
}

// LoadVersion implements VersionedStore.
func (s *MemoryStore) LoadVersion(ctx context.Context) (Tokens, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.rec == nil:
		return Tokens{}, 0, ErrNoTokens
	case s.rec.empty:
		return Tokens{}, s.rec.version, ErrNoTokens
	}
	return s.rec.tokens, s.rec.version, nil
}

// Save replaces the stored tokens.
func (s *MemoryStore) Save(ctx context.Context, t Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rec = &memRecord{tokens: t, version: s.version() + 1}
	return nil
}

// SaveVersion implements VersionedStore.
func (s *MemoryStore) SaveVersion(ctx context.Context, t Tokens, prev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.version(); v != prev {
		return 0, versionConflict(v, prev)
	}
	s.rec = &memRecord{tokens: t, version: prev + 1}
	return prev + 1, nil
}

// Clear empties the store.
func (s *MemoryStore) Clear(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	return nil
}

// ClearVersion implements VersionedStore.
func (s *MemoryStore) ClearVersion(ctx context.Context, prev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.version(); v != prev {
		return versionConflict(v, prev)
	}
	s.clear()
	return nil
}

func (s *MemoryStore) version() uint64 {
	if s.rec == nil {
		return 0
	}
	return s.rec.version
}

func (s *MemoryStore) clear() {
	if s.rec != nil && !s.rec.empty {
		s.rec = &memRecord{version: s.rec.version + 1, empty: true}
	}
}

// String describes s without its tokens.
func (s *MemoryStore) String() string {
	if s == nil {
		return "autorefresh.MemoryStore(nil)"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil || s.rec.empty {
		return "autorefresh.MemoryStore{empty}"
	}
	return "autorefresh.MemoryStore{" + s.rec.tokens.String() + "}"
}

// GoString is like String.
func (s *MemoryStore) GoString() string { return s.String() }

// Format implements fmt.Formatter so that every verb prints s without its
// tokens.
func (s *MemoryStore) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer: the token values are redacted.
func (s *MemoryStore) LogValue() slog.Value { return slog.StringValue(s.String()) }

// versionConflict returns the error of a conditional change of a store
// whose version is not the one expected.
func versionConflict(stored, prev uint64) error {
	return fmt.Errorf("%w: version %d stored, %d expected", ErrVersionConflict, stored, prev)
}
