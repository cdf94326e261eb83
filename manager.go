package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// tokenManager owns the token state of a Transport: the current state, the
// single flight that refreshes it, and the store. Every question about the
// tokens goes through it; the Transport only sends requests.
type tokenManager struct {
	t *Transport // the configuration, read-only after first use

	cur    atomic.Pointer[state] // nil until the first load
	flight singleflight.Group    // one load at a time, one refresh per generation

	// mu guards gen, the moves of cur from one state to the next, and the
	// saved and base fields of every state. It is never held across I/O.
	mu  sync.Mutex
	gen uint64

	// writeMu makes the writes to a store that is not a Locker (saves and
	// clears) happen one at a time, each after checking that its
	// generation is still current, so that the store ends up holding the
	// newest state. It is held across one write only, never by requests,
	// loads or refreshes. The writers of a Locker store hold its lock
	// instead: the one lock held across I/O, since that is what it exists
	// for.
	writeMu chanMutex

	// lastRefresh is how long the last successful refresh call took, in
	// nanoseconds, which sizes the early-refresh window.
	lastRefresh atomic.Int64
}

// newState returns a state for tok, not yet current.
func (m *tokenManager) newState(tok Tokens) *state { return m.makeState(tok, false) }

// newFreshState returns a state for tok, just issued by a refresh, not yet
// current. A fresh token that is already due tells that the local clock is
// ahead of the issuer's (or that the answer took most of its life to
// arrive): its expiry is taken as unknown, so that it is refreshed when
// refused rather than on every request.
func (m *tokenManager) newFreshState(tok Tokens) *state { return m.makeState(tok, true) }

func (m *tokenManager) makeState(tok Tokens, fresh bool) *state {
	s := &state{tokens: tok, hdr: m.t.headersFor(tok), bound: isDPoP(tok), fresh: fresh}
	now := m.t.clock()
	exp, iat := tok.Expiry, time.Time{}
	if exp.IsZero() {
		exp, iat = jwtTimes(tok.AccessToken)
	}
	if exp.IsZero() || !s.hasTokens() {
		return s
	}
	s.expiry = exp
	if iat.IsZero() || iat.After(now) {
		iat = now
	}
	if w := m.window(exp.Sub(iat)); w >= 0 {
		s.refreshAt = exp.Add(-w)
	}
	if fresh && !s.refreshAt.IsZero() && !now.Before(s.refreshAt) {
		s.expiry, s.refreshAt = time.Time{}, time.Time{}
	}
	return s
}

// window returns how long before the expiry of a token that lives life it
// is refreshed, or -1 for never ahead of time. EarlyRefresh, when set, is
// taken at its word, capped at half the lifetime. Otherwise the window is
// sized to the refresh: a tenth of the lifetime (at most
// DefaultEarlyRefresh), but at least one and a half times the last
// refresh's duration, so that a refresh started in the background ends
// before the token expires; before any refresh was measured, a quarter of
// the lifetime (at most DefaultEarlyRefresh). It is never more than half
// the lifetime, so that a token is renewed once in its life, and the
// shorter the window, the closer the renewals come to one per lifetime.
func (m *tokenManager) window(life time.Duration) time.Duration {
	switch e := m.t.EarlyRefresh; {
	case e < 0:
		return -1
	case e > 0:
		return max(0, min(e, life/2))
	}
	var w time.Duration
	if r := time.Duration(m.lastRefresh.Load()); r > 0 {
		w = max(min(life/10, DefaultEarlyRefresh), r*3/2)
	} else {
		w = min(life/4, DefaultEarlyRefresh)
	}
	return max(0, min(w, life/2))
}

// swapSaved makes next, which the store holds, the current state if the
// current one is still of generation gen, and reports whether it did.
func (m *tokenManager) swapSaved(gen uint64, next *state) bool {
	return m.swap(gen, next, true, nil)
}

// swapUnsaved is swapSaved for a next that the store does not hold: it
// holds base (nil: nothing) instead.
func (m *tokenManager) swapUnsaved(gen uint64, next *state, base *Tokens) bool {
	return m.swap(gen, next, false, base)
}

func (m *tokenManager) swap(gen uint64, next *state, saved bool, base *Tokens) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.cur.Load(); cur == nil || cur.gen != gen {
		return false
	}
	m.publish(next, saved, base)
	return true
}

// replace makes next the current state whatever it is. The store still
// holds what it held for the state next replaces, as far as is known.
func (m *tokenManager) replace(next *state) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var base *Tokens
	if cur := m.cur.Load(); cur != nil {
		base = cur.stored()
	}
	m.publish(next, false, base)
}

// publish makes next current with a new generation. m.mu must be held.
func (m *tokenManager) publish(next *state, saved bool, base *Tokens) {
	m.gen++
	next.gen = m.gen
	next.saved, next.base = saved, base
	m.cur.Store(next)
}

// rejected reports whether tok is the pair whose rejection ended the
// session of s, which the store still holds.
func (m *tokenManager) rejected(s *state, tok Tokens) bool {
	base := m.storedOf(s)
	return s.err != nil && base != nil && base.same(tok)
}

// storedOf returns what the store is known to hold for s.
func (m *tokenManager) storedOf(s *state) *Tokens {
	m.mu.Lock()
	defer m.mu.Unlock()
	return s.stored()
}

// markSaved records that the store now holds s, if s is still current.
func (m *tokenManager) markSaved(s *state) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.Load() == s {
		s.saved, s.base = true, nil
	}
}

// isSaved reports whether the store holds s.
func (m *tokenManager) isSaved(s *state) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return s.saved
}

// isCurrent reports whether s is the current state.
func (m *tokenManager) isCurrent(s *state) bool { return m.cur.Load() == s }

// current returns the current state, loading it from the store on first
// use.
func (m *tokenManager) current(ctx context.Context) (*state, error) {
	if s := m.cur.Load(); s != nil {
		return s, nil
	}
	return m.load(ctx, nil)
}

// load reads the store and makes what it holds the current state, if the
// current state is still stale: nil before first use, or a state without
// tokens whose refused request hopes that another holder of the store has
// logged in since. It returns the current state.
func (m *tokenManager) load(ctx context.Context, stale *state) (*state, error) {
	if m.t.Store == nil {
		return nil, ErrNoStore
	}
	onPanic := func(p any) error { return fmt.Errorf("autorefresh: Store.Load panicked (%T)", p) }
	key := "load"
	if stale != nil {
		key = "reload " + strconv.FormatUint(stale.gen, 10)
	}
	s, err := m.await(ctx, key, 0, onPanic, func() (*state, error) {
		if cur := m.cur.Load(); cur != stale {
			return cur, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.t.refreshTimeout())
		defer cancel()
		tok, err := m.loadStore(ctx)
		switch {
		case errors.Is(err, ErrNoTokens) && stale != nil:
			return stale, nil // still nothing: stale stays current
		case err == nil && stale != nil && m.rejected(stale, tok):
			return stale, nil
		case errors.Is(err, ErrNoTokens):
			tok = Tokens{}
		case err != nil:
			return nil, err
		}
		next := m.newState(tok)
		m.mu.Lock()
		defer m.mu.Unlock()
		if cur := m.cur.Load(); cur != stale {
			return cur, nil // a SetTokens or Logout meanwhile wins
		}
		m.publish(next, true, nil)
		return next, nil
	})
	if errors.Is(err, errGaveUp) {
		err = fmt.Errorf("autorefresh: loading the tokens did not end within %v: %w", m.t.refreshTimeout(), context.DeadlineExceeded)
	}
	return s, err
}

// reload is load for a request that went out without tokens and was
// refused: another holder of the store may have logged in since. Nothing is
// read while the store does not hold the current state after a Logout whose
// Clear failed, so that a logout is never undone by the pair it could not
// clear. After a session ended by a rejection whose clear failed, the store
// is read, but the rejected pair it still holds is not taken back.
func (m *tokenManager) reload(ctx context.Context, s *state) (*state, error) {
	if !m.isSaved(s) && s.err == nil || !m.isCurrent(s) {
		return m.cur.Load(), nil
	}
	return m.load(ctx, s)
}

// loadStore reads the store. Errors other than ErrNoTokens come wrapped
// once, with the "autorefresh:" prefix; tokens that cannot be sent make a
// corrupt record.
func (m *tokenManager) loadStore(ctx context.Context) (Tokens, error) {
	var tok Tokens
	err := guard("Load", func() (err error) {
		tok, err = m.t.Store.Load(ctx)
		return err
	})
	switch {
	case errors.Is(err, ErrNoTokens):
		return Tokens{}, err
	case err != nil:
		return Tokens{}, &wrapped{"token store", err}
	}
	if err := tok.validate(); err != nil {
		return Tokens{}, fmt.Errorf("autorefresh: token store: %w: %w", ErrCorruptRecord, err)
	}
	return tok, nil
}

// guard calls op, a method of the store, and turns a panic into an error:
// a bug of the store must not drop a rotated pair nor kill a refresh. The
// panic's value is not shown: it may hold tokens.
func guard(op string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("autorefresh: Store.%s panicked (%T)", op, p)
		}
	}()
	return f()
}

// set makes tok the current tokens and saves them: SetTokens. The pair in
// use given again changes nothing but its save: a refresh of it under way
// goes on.
func (m *tokenManager) set(ctx context.Context, tok Tokens) error {
	if m.t.Store == nil {
		return ErrNoStore
	}
	save := func(ctx context.Context) error { return m.t.Store.Save(ctx, tok) }
	if cur := m.cur.Load(); cur != nil && cur.hasTokens() && cur.tokens.same(tok) {
		if m.isSaved(cur) {
			return nil
		}
		return m.write(ctx, cur, save)
	}
	s := m.newState(tok)
	m.replace(s)
	return m.write(ctx, s, save)
}

// logout drops the tokens and clears the store. When the clear fails, the
// Transport stays logged out: it never reads the store again until a later
// SetTokens, so that the pair it could not clear does not come back.
func (m *tokenManager) logout(ctx context.Context) error {
	if m.t.Store == nil {
		return ErrNoStore
	}
	s := m.newState(Tokens{})
	m.replace(s)
	return m.write(ctx, s, m.t.Store.Clear)
}

// write writes the store on behalf of s with w, holding the store's lock
// when it is a Locker, and records that the store holds s. It writes
// nothing when s is no longer current by then: the write of the newer state
// supersedes it.
func (m *tokenManager) write(ctx context.Context, s *state, w func(context.Context) error) error {
	// A Refresher that logs in again runs under the lock already.
	if l, ok := m.t.Store.(Locker); ok && ctx.Value(refreshKey{}) == nil {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return &wrapped{"lock store", err}
		}
		defer unlock()
	}
	return m.writeIfCurrent(ctx, s.gen, s, w)
}

// writeIfCurrent runs w if generation gen is still current (under writeMu,
// or under the lock of a Locker store, which its callers hold),
// and then, if w succeeded, records that the store holds s (when s is
// current). When gen is no longer current it writes nothing and returns
// nil: the newer state's own write supersedes this one.
func (m *tokenManager) writeIfCurrent(ctx context.Context, gen uint64, s *state, w func(context.Context) error) error {
	if _, ok := m.t.Store.(Locker); !ok {
		if err := m.writeMu.lock(ctx); err != nil {
			return err
		}
		defer m.writeMu.unlock()
	}
	if cur := m.cur.Load(); cur == nil || cur.gen != gen {
		return nil
	}
	if err := guard("write", func() error { return w(ctx) }); err != nil {
		return err
	}
	if s != nil {
		m.markSaved(s)
	}
	return nil
}

// chanMutex is a mutex whose lock gives up when a context is done, so that
// a caller never waits past its deadline behind a store write that hangs.
// Its zero value is unlocked.
type chanMutex struct {
	once sync.Once
	ch   chan struct{} // holds a value while locked
}

func (c *chanMutex) lock(ctx context.Context) error {
	c.once.Do(func() { c.ch = make(chan struct{}, 1) })
	select {
	case c.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &wrapped{"wait for the store", ctx.Err()}
	}
}

func (c *chanMutex) unlock() { <-c.ch }
