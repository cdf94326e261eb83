package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// exchange does the work of run and records what happened in ev. With a
// Locker store it holds the lock from before it reads the store until after
// it saved the new pair, so that no other holder spends the same refresh
// token.
func (m *tokenManager) exchange(ctx context.Context, s *state, ev *RefreshEvent) (*state, error) {
	if l, ok := m.t.Store.(Locker); ok {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return nil, &RefreshError{Err: &wrapped{"lock store", err}}
		}
		defer unlock()
	}
	from, done, err := m.reconcile(ctx, s, ev)
	if done != nil || err != nil {
		return done, err
	}
	start := time.Now()
	tok, err := m.call(ctx, from)
	if err != nil {
		if errors.Is(err, ErrSessionExpired) {
			return m.reject(ctx, s, from, err, ev)
		}
		if cur := m.cur.Load(); cur != s && cur.hasTokens() {
			return cur, nil // logged in again meanwhile
		}
		return nil, err
	}
	m.lastRefresh.Store(int64(time.Since(start)))
	return m.commit(ctx, s, from, tok, ev)
}

// call asks the Refresher for new tokens (a Starter for its first ones),
// and checks them. Every error is a *RefreshError.
func (m *tokenManager) call(ctx context.Context, current Tokens) (Tokens, error) {
	var tok Tokens
	var err error
	if st, ok := m.t.Refresher.(Starter); ok && current.IsZero() {
		tok, err = st.Start(ctx)
	} else {
		tok, err = m.t.Refresher.Refresh(ctx, current)
	}
	if err == nil {
		err = tok.validateFresh()
	}
	if err != nil {
		if re := (*RefreshError)(nil); !errors.As(err, &re) {
			err = &RefreshError{Err: err}
		}
		return Tokens{}, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = current.RefreshToken
	}
	if tok.TokenType == "" {
		tok.TokenType = current.TokenType
	}
	return tok, nil
}

// reconcile reads the store before s is refreshed and compares what it
// holds with what it held when s was made. If another holder changed it, the
// stored pair is adopted (done), or refreshed in s's place when it has
// expired too (from); an empty store means another holder ended the session
// (done). If nobody changed it, s's own pair is saved first when it never
// was (a failed save), so that no other holder spends the pair it replaced,
// and refreshed. A record that vanished (Redis data lost) or is corrupt is
// overwritten with s's pair.
func (m *tokenManager) reconcile(ctx context.Context, s *state, ev *RefreshEvent) (from Tokens, done *state, err error) {
	stored, err := m.loadStore(ctx)
	switch m.view(s, stored, err) {
	case storeUnreadable:
		return s.tokens, nil, &RefreshError{Err: err}
	case storeEmptied:
		if m.starts() {
			return s.tokens, nil, nil // no session to end: a new token is asked for
		}
		err := &RefreshError{Err: fmt.Errorf("%w: the tokens were removed from the store", ErrSessionExpired)}
		return s.tokens, m.end(s, err, ev, nil), err
	case storeOther:
		// Another holder refreshed or logged in: use its pair, or
		// refresh that one when it has expired too.
		ns := m.newState(stored)
		if !ns.expired(m.t.clock()) {
			ev.Adopted = true
			return s.tokens, m.adopt(s, ns), nil
		}
		return stored, nil, nil
	case storeOwn:
		m.markSaved(s) // a save that went through though it reported an error
	case storeLost:
		// What became of the record is reported; s's pair is refreshed
		// and the new pair written in its place. (s's pair is not
		// written back first: it may be a pair another holder had
		// already replaced, which would then stand for the session.)
		ev.StoreErr = err
	case storeAsKnown:
		if !m.isSaved(s) {
			return s.tokens, nil, m.saveOwn(ctx, s, ev) // its save failed before
		}
	}
	return s.tokens, nil, nil
}

// A storeView is what reconcile found in the store, compared with what it
// held when a state was made.
type storeView int

const (
	storeAsKnown    storeView = iota // what it held then: the state's pair, or its base
	storeOwn                         // the state's own pair, not known to be saved
	storeOther                       // a pair another holder saved
	storeEmptied                     // nothing, where it held a pair: another holder ended the session
	storeLost                        // a record that vanished (Redis) or is corrupt: to be written anew
	storeUnreadable                  // an error reading it
)

// view compares stored and err, what loading the store gave, with what it
// held when s was made.
func (m *tokenManager) view(s *state, stored Tokens, err error) storeView {
	m.mu.Lock()
	known, saved := s.stored(), s.saved
	m.mu.Unlock()
	switch {
	case errors.Is(err, ErrTokensLost), errors.Is(err, ErrCorruptRecord):
		return storeLost
	case errors.Is(err, ErrNoTokens) && known != nil:
		return storeEmptied
	case errors.Is(err, ErrNoTokens):
		return storeAsKnown
	case err != nil:
		return storeUnreadable
	case known != nil && stored.same(*known):
		return storeAsKnown
	case !saved && s.hasTokens() && stored.same(s.tokens):
		return storeOwn
	}
	return storeOther
}

// saveOwn saves the pair of s, if it has one, so that no other holder
// spends the pair it replaced. A store whose lock was lost makes the
// refresh fail; another failure is reported in ev, and the refresh goes on.
func (m *tokenManager) saveOwn(ctx context.Context, s *state, ev *RefreshEvent) error {
	if !s.hasTokens() {
		return nil
	}
	switch err := m.save(ctx, s.gen, s.tokens); {
	case err == nil:
		m.markSaved(s)
	case errors.Is(err, ErrLockLost):
		return &RefreshError{Err: err}
	default:
		ev.StoreErr = errors.Join(ev.StoreErr, err)
	}
	return nil
}

// adopt makes ns, read from the store, replace s, and returns the current
// state.
func (m *tokenManager) adopt(s, ns *state) *state {
	if m.swapSaved(s.gen, ns) {
		return ns
	}
	return m.cur.Load()
}

// commit makes tok, the answer of the refresh of from, replace s: it saves
// tok first (with retries, under a budget of its own, since tok may hold
// the only copy of a rotated refresh token), then makes it current. When
// the store refused the save because the lock was lost meanwhile (another
// holder may have written), the stored state wins.
func (m *tokenManager) commit(ctx context.Context, s *state, from, tok Tokens, ev *RefreshEvent) (*state, error) {
	next := m.newFreshState(tok)
	if s.futile.Load() {
		next.failures.Store(s.failures.Load()) // its back-off grows on
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.t.refreshTimeout())
	defer cancel()
	err := m.saveFresh(ctx, s.gen, tok)
	if errors.Is(err, ErrLockLost) {
		return m.takeStored(ctx, s, tok, ev)
	}
	if err != nil {
		ev.StoreErr = errors.Join(ev.StoreErr, err)
	}
	var swapped bool
	if err == nil {
		swapped = m.swapSaved(s.gen, next)
	} else {
		swapped = m.swapUnsaved(s.gen, next, m.holding(s, from))
	}
	if !swapped {
		cur := m.cur.Load()
		return cur, cur.err
	}
	return next, nil
}

// holding returns what the store holds after a refresh of from replaced
// s: from itself when it was another holder's stored pair, or what the
// store held for s (s's pair if its save went through, else the pair s
// was made from).
func (m *tokenManager) holding(s *state, from Tokens) *Tokens {
	if from.same(s.tokens) {
		return m.storedOf(s)
	}
	return &from
}

// saveFresh saves tok, a freshly rotated pair, trying again twice after a
// short wait when the store fails.
func (m *tokenManager) saveFresh(ctx context.Context, gen uint64, tok Tokens) error {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := m.save(ctx, gen, tok)
		if err == nil || errors.Is(err, ErrLockLost) || attempt == 3 {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 4
	}
}

// save writes tok to the store on behalf of generation gen.
func (m *tokenManager) save(ctx context.Context, gen uint64, tok Tokens) error {
	return m.writeIfCurrent(ctx, gen, nil, func(ctx context.Context) error { return m.t.Store.Save(ctx, tok) })
}

// takeStored replaces s with what the store holds, after the store refused
// a write because its lock was lost. If the store holds tok itself (a save
// that went through though its answer did not come back), tok is current
// and saved.
func (m *tokenManager) takeStored(ctx context.Context, s *state, tok Tokens, ev *RefreshEvent) (*state, error) {
	stored, err := m.loadStore(ctx)
	switch {
	case (errors.Is(err, ErrTokensLost) || errors.Is(err, ErrCorruptRecord)) && !tok.IsZero():
		// Nothing newer stands in the store: keep the pair the refresh
		// got (the server has spent the one before), to be saved again.
		next := m.newFreshState(tok)
		if m.swapUnsaved(s.gen, next, nil) {
			return next, nil
		}
		cur := m.cur.Load()
		return cur, cur.err
	case errors.Is(err, ErrNoTokens) && !errors.Is(err, ErrTokensLost):
		err := &RefreshError{Err: fmt.Errorf("%w: the tokens were removed from the store", ErrSessionExpired)}
		return m.end(s, err, ev, nil), err
	case err != nil:
		return nil, &RefreshError{Err: err}
	}
	if stored.same(tok) {
		return m.adopt(s, m.newFreshState(stored)), nil
	}
	ev.Adopted = true
	return m.adopt(s, m.newState(stored)), nil
}

// reject handles the rejection of the refresh token of from, err. The
// session ends only if the store still holds the rejected pair: if another
// holder saved a newer pair meanwhile (a lost rotation race without a
// Locker, a lock whose lease ran out), that pair is adopted instead. A
// store that cannot be read is not cleared.
func (m *tokenManager) reject(ctx context.Context, s *state, from Tokens, err error, ev *RefreshEvent) (*state, error) {
	stored, lerr := m.loadStore(ctx)
	known := m.storedOf(s)
	changed := lerr == nil && !stored.same(from) && (known == nil || !stored.same(*known))
	switch {
	case changed:
		ev.Adopted = true
		return m.adopt(s, m.newState(stored)), nil
	case errors.Is(lerr, ErrTokensLost), errors.Is(lerr, ErrCorruptRecord):
		// The store does not hold the rejected pair: nothing to clear,
		// and a clear would end the session of a holder with a good
		// pair. This session ends here only.
		return m.end(s, err, ev, nil), err
	case lerr != nil && !errors.Is(lerr, ErrNoTokens):
		ev.StoreErr = lerr
		return m.end(s, err, ev, lerr), err
	}
	cerr := m.writeIfCurrent(ctx, s.gen, nil, m.t.Store.Clear)
	if errors.Is(cerr, ErrLockLost) {
		return m.takeStored(ctx, s, Tokens{}, ev)
	}
	ev.StoreErr = errors.Join(ev.StoreErr, cerr)
	return m.end(s, err, ev, cerr), err
}

// drop ends the session of s for reason, as a rejected refresh does, for
// Resume when the check refuses s's tokens even after a refresh: under the
// store's lock, the store is cleared if it still holds s's pair, and a
// newer pair saved by another holder is adopted instead. It reports whether
// the session ended, and the error of clearing the store.
func (m *tokenManager) drop(ctx context.Context, s *state, reason error) (ended bool, err error) {
	if l, ok := m.t.Store.(Locker); ok && ctx.Value(refreshKey{}) == nil {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return false, &wrapped{"lock store", err}
		}
		defer unlock()
	}
	var ev RefreshEvent
	m.reject(ctx, s, s.tokens, reason, &ev)
	return ev.SessionEnded, ev.StoreErr
}

// end replaces s with a state that ended the session for err, after the
// store was cleared with the result cerr (nil as well when nothing had to be
// cleared), and returns the current state: a newer state (a login
// meanwhile) is kept.
func (m *tokenManager) end(s *state, err error, ev *RefreshEvent, cerr error) *state {
	e := m.newState(Tokens{})
	e.err = err
	var swapped bool
	if cerr == nil {
		swapped = m.swapSaved(s.gen, e)
	} else {
		swapped = m.swapUnsaved(s.gen, e, m.storedOf(s))
	}
	if !swapped {
		return m.cur.Load()
	}
	ev.SessionEnded = true
	return e
}
