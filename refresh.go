package autorefresh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"
)

// A Refresher exchanges the current tokens for new ones.
//
// A Refresher reports that the refresh token was rejected, so that the
// session is over, by returning an error that wraps ErrSessionExpired; the
// Transport then clears its store (unless another holder of the store saved
// a newer pair meanwhile, which it uses instead). Any other error is taken
// as transient and the tokens are kept. A returned Tokens without a
// RefreshToken keeps the current one. A Refresher may also log in again by
// calling the Transport's SetTokens with the ctx it was given; the
// Transport then uses those tokens.
//
// A Refresher may declare how the Transport sends the tokens it returns,
// when Transport.Scheme is not set, by having a method
// HeaderScheme() HeaderScheme; OAuth2 declares BearerScheme.
type Refresher interface {
	Refresh(ctx context.Context, current Tokens) (Tokens, error)
}

// A Starter is a Refresher that can obtain tokens when there are none, as
// the OAuth 2.0 client credentials grant does with the client's own
// credentials. A Transport whose Refresher is a Starter calls Start, in the
// single flight shared by all requests, when it holds no tokens: before
// sending a request without them, and when a request is refused. A
// Refresher that wraps a Starter must be a Starter too for that to happen.
type Starter interface {
	Refresher
	Start(ctx context.Context) (Tokens, error)
}

// A Revoker is a Refresher that can revoke tokens at the server, as an
// OAuth 2.0 revocation endpoint does (RFC 7009). Transport.Logout calls
// Revoke with the tokens in use before it drops them.
type Revoker interface {
	Refresher
	Revoke(ctx context.Context, t Tokens) error
}

// RefreshFunc is a function that implements Refresher.
type RefreshFunc func(ctx context.Context, current Tokens) (Tokens, error)

// Refresh calls f(ctx, current).
func (f RefreshFunc) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	return f(ctx, current)
}

// RefreshEvent describes a refresh attempt, for Transport.OnRefresh. It
// holds no token values.
type RefreshEvent struct {
	// Proactive is true for a refresh made ahead of expiry (or of a token
	// that had expired), false for one made because a request was refused.
	Proactive bool

	// OldExpiry and NewExpiry are the access tokens' expiries, zero when
	// unknown.
	OldExpiry, NewExpiry time.Time

	// Duration is how long the attempt took.
	Duration time.Duration

	// Err is nil on success. SessionEnded reports whether it ended the
	// session (the store was cleared).
	Err          error
	SessionEnded bool

	// Adopted is true when the store showed that another holder had
	// already refreshed (or, after a rejection, saved a newer pair), and
	// its tokens were used.
	Adopted bool

	// StoreErr, if not nil, is an error of the store during the attempt:
	// a corrupt record that was then overwritten with the tokens in use, a
	// failed save (the new tokens are used in memory all the same, and
	// saved again before the next refresh), or a failed clear.
	StoreErr error
}

// Bounds of the back-off after a failed refresh.
const (
	minBackoff = 100 * time.Millisecond

	// maxBackoffExpired caps the back-off of requests whose token has
	// expired or was refused: they fail fast meanwhile, so it stays short.
	maxBackoffExpired = 500 * time.Millisecond

	// maxBackoffValid caps the back-off of refreshes ahead of expiry:
	// requests go out with their good token meanwhile.
	maxBackoffValid = 5 * time.Second
)

// A cause says why a refresh runs.
type cause int

const (
	causeDue     cause = iota // the token is due: refreshed in the background
	causeExpired              // the token expired: refreshed before a request
	causeRefused              // a request was refused
)

// proactive reports whether a refresh for c is made before any request was
// refused.
func (c cause) proactive() bool { return c != causeRefused }

// refreshKey marks the context of a refresh, so that a refresh request that
// comes back through the Transport is passed through untouched, and a
// SetTokens from a Refresher does not wait for the lock the refresh holds.
type refreshKey struct{}

// ready returns the state to send a request with. A state due for an early
// refresh starts that refresh in the background and is used as it is while
// its token is good: no request waits for a refresh while the token it
// holds is valid. An expired state is refreshed first.
func (m *tokenManager) ready(ctx context.Context) (*state, error) {
	s, err := m.current(ctx)
	if err != nil || m.t.Refresher == nil {
		return s, err
	}
	switch now := m.t.clock(); {
	case !s.hasTokens() && m.starts():
		return m.refresh(ctx, s, causeExpired)
	case s.expired(now):
		return m.refresh(ctx, s, causeExpired)
	case s.due(now):
		m.refreshInBackground(s, now)
	}
	return s, nil
}

// refused returns the state to send again a request that was refused with
// s: a refreshed one, the current one when s was replaced meanwhile, or the
// tokens another holder of the store saved when s had none. It returns nil
// and no error when there is none: the refusal is then returned as is.
func (m *tokenManager) refused(ctx context.Context, s *state) (*state, error) {
	if cur := m.cur.Load(); cur != s {
		return m.successor(s, cur)
	}
	if !s.hasTokens() && !m.starts() {
		ns, err := m.reload(ctx, s)
		if err != nil || !ns.hasTokens() {
			return nil, nil
		}
		return ns, nil
	}
	if m.t.Refresher == nil {
		return nil, nil
	}
	ns, err := m.refresh(ctx, s, causeRefused)
	if err != nil {
		return nil, err
	}
	if !ns.hasTokens() {
		return nil, cmp.Or(ns.err, ErrNoTokens)
	}
	return ns, nil
}

// starts reports whether the Refresher obtains tokens when there are none.
func (m *tokenManager) starts() bool {
	_, ok := m.t.Refresher.(Starter)
	return ok
}

// successor returns the state that replaced s for a request refused with
// s: cur if it has tokens, else the reason s's tokens are gone (the end of
// the session, or ErrNoTokens after a Logout), or nil when s had none
// either.
func (m *tokenManager) successor(s, cur *state) (*state, error) {
	switch {
	case cur.hasTokens():
		return cur, nil
	case cur.err != nil:
		return nil, cur.err
	case s.hasTokens():
		return nil, ErrNoTokens
	}
	return nil, nil
}

// refresh returns the state that replaces s, refreshing s unless that was
// done already, and waits for it until ctx is done. All callers share one
// refresh per generation, which runs to completion even when they give up.
func (m *tokenManager) refresh(ctx context.Context, s *state, why cause) (*state, error) {
	now := m.t.clock()
	if cur := m.cur.Load(); cur != s {
		if !cur.expired(now) {
			return cur, cur.err
		}
		s = cur // replaced, but expired as well: refresh that
	}
	if s.held(now) {
		return nil, s.backoffError(now)
	}
	m.t.stats.waits.Add(1)
	limit := 2*m.t.refreshTimeout() + time.Second
	ns, err := m.await(ctx, flightKey(s), limit, m.refreshPanicked, func() (*state, error) {
		return m.run(ctx, s, why)
	})
	if errors.Is(err, errGaveUp) {
		err = &RefreshError{Err: fmt.Errorf("autorefresh: refresh did not end within %v: %w", limit, context.DeadlineExceeded)}
	}
	return ns, err
}

// refreshInBackground starts the refresh of s, which is due but still good,
// unless one is under way or held back by a back-off. It does not wait:
// the refresh runs detached, under its own timeout, and its result is
// applied like that of any other refresh.
func (m *tokenManager) refreshInBackground(s *state, now time.Time) {
	if s.heldAhead(now) || !s.started.CompareAndSwap(false, true) {
		return
	}
	ctx := context.Background()
	// The channel is buffered: nobody needs to read it.
	m.flight.DoChan(flightKey(s), func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				v, err = nil, m.refreshPanicked(p)
			}
		}()
		return m.run(ctx, s, causeDue)
	})
}

func flightKey(s *state) string { return "refresh " + strconv.FormatUint(s.gen, 10) }

func (m *tokenManager) refreshPanicked(p any) error {
	m.t.stats.failures.Add(1)
	return &RefreshError{Err: fmt.Errorf("autorefresh: refresh panicked (%T)", p)}
}

// errGaveUp is returned by await when it stopped waiting first.
var errGaveUp = errors.New("autorefresh: gave up waiting")

// await runs fn in the single flight of key, shared with the concurrent
// callers, and waits for its state until ctx is done or, if limit > 0,
// for at most limit; in any case no longer than RefreshTimeout and a
// second, in case fn never ends (it called runtime.Goexit). A panic in fn
// becomes onPanic's error: singleflight would re-panic it in a goroutine of
// its own, where no caller could recover it. Its value is not shown: it may
// hold tokens.
func (m *tokenManager) await(ctx context.Context, key string, limit time.Duration, onPanic func(any) error, fn func() (*state, error)) (*state, error) {
	ch := m.flight.DoChan(key, func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				v, err = nil, onPanic(p)
			}
		}()
		return fn()
	})
	if limit <= 0 {
		limit = m.t.refreshTimeout() + time.Second
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*state), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, errGaveUp
	}
}

// run refreshes s: it is the body of the single flight, so at most one
// refresh of a generation runs at a time. It reports the attempt to the
// hooks and counters, and on a transient failure holds further refreshes
// of s back for a while.
func (m *tokenManager) run(ctx context.Context, s *state, why cause) (*state, error) {
	defer s.started.Store(false)
	if cur := m.cur.Load(); cur != s {
		return cur, cur.err
	}
	ctx = context.WithValue(context.WithoutCancel(ctx), refreshKey{}, true)
	ctx, cancel := context.WithTimeout(ctx, m.t.refreshTimeout())
	defer cancel()

	start := time.Now()
	ev := RefreshEvent{Proactive: why.proactive(), OldExpiry: s.expiry}
	if ev.Proactive {
		m.t.stats.proactive.Add(1)
	}
	m.t.log(ctx, "autorefresh: refreshing tokens", slog.Bool("proactive", ev.Proactive), slog.Time("oldExpiry", s.expiry))
	ns, err := m.exchange(ctx, s, &ev)
	ev.Duration, ev.Err = time.Since(start), err
	if err != nil {
		m.t.stats.failures.Add(1)
		if !errors.Is(err, ErrSessionExpired) {
			s.fail(err, m.t.clock())
		}
		m.t.log(ctx, "autorefresh: refresh failed", slog.Duration("took", ev.Duration),
			slog.Bool("sessionEnded", ev.SessionEnded), slog.String("error", err.Error()))
	} else {
		m.t.stats.refreshes.Add(1)
		ev.NewExpiry = ns.expiry
		m.t.log(ctx, "autorefresh: refreshed tokens", slog.Duration("took", ev.Duration),
			slog.Bool("adopted", ev.Adopted), slog.Time("newExpiry", ns.expiry))
	}
	if ev.StoreErr != nil {
		m.t.log(ctx, "autorefresh: store failed", slog.String("error", ev.StoreErr.Error()))
	}
	if m.t.OnRefresh != nil {
		m.t.OnRefresh(ev)
	}
	return ns, err
}

// fail records a transient failure of the refresh of s at now. Further
// refreshes of s ahead of expiry wait for half the time left, at most five
// seconds: requests go out with the token meanwhile. A request whose token
// has expired or was refused tries again at once after a first failure; from
// the second failure in a row, such requests fail fast for a jittered
// back-off that doubles from 100 ms up to half a second, and the first request
// after it tries again. That keeps a token endpoint that is down from being
// called by every request, and one that recovers from being waited for
// long.
func (s *state) fail(err error, now time.Time) {
	re := (*RefreshError)(nil)
	if !errors.As(err, &re) {
		re = &RefreshError{Err: err}
	}
	s.lastErr.Store(re)
	n := min(s.failures.Add(1), 16)
	ahead := maxBackoffValid
	if !s.expiry.IsZero() {
		ahead = max(0, min(ahead, s.expiry.Sub(now)/2))
	}
	s.aheadAt.Store(now.Add(ahead).UnixNano())
	if n >= 2 {
		d := min(minBackoff<<(n-2), maxBackoffExpired)
		d = d/2 + rand.N(d/2+1)
		s.retryAt.Store(now.Add(d).UnixNano())
	}
}

// backoffError is the error of a refresh of s asked for at now while it is
// held back: the last failure, saying that it is a back-off.
func (s *state) backoffError(now time.Time) error {
	left := time.Duration(s.retryAt.Load() - now.UnixNano()).Round(time.Millisecond)
	last := s.lastErr.Load()
	if last == nil {
		last = &RefreshError{}
	}
	err := fmt.Errorf("%w for another %v", ErrBackoff, left)
	if last.Err != nil {
		err = fmt.Errorf("%w after: %w", err, last.Err)
	}
	return &RefreshError{StatusCode: last.StatusCode, ErrorCode: last.ErrorCode, Description: last.Description, Err: err}
}

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
	m.mu.Lock()
	known, saved := s.stored(), s.saved
	m.mu.Unlock()
	switch {
	case errors.Is(err, ErrTokensLost):
		saved = false // save s back
	case errors.Is(err, ErrCorruptRecord):
		ev.StoreErr = err
		saved = false
	case errors.Is(err, ErrNoTokens) && known != nil:
		err := &RefreshError{Err: fmt.Errorf("%w: the tokens were removed from the store", ErrSessionExpired)}
		return s.tokens, m.end(s, err, ev, nil), err
	case err != nil && !errors.Is(err, ErrNoTokens):
		return s.tokens, nil, &RefreshError{Err: err}
	case err == nil && (known == nil || !stored.same(*known)):
		// Another holder refreshed or logged in: use its pair, or
		// refresh that one when it has expired too.
		ns := m.newState(stored)
		if !ns.expired(m.t.clock()) {
			ev.Adopted = true
			return s.tokens, m.adopt(s, ns), nil
		}
		return stored, nil, nil
	}
	if !saved && s.hasTokens() {
		switch err := m.save(ctx, s.gen, s.tokens); {
		case err == nil:
			m.markSaved(s)
		case errors.Is(err, ErrLockLost):
			return s.tokens, nil, &RefreshError{Err: err}
		default:
			ev.StoreErr = errors.Join(ev.StoreErr, err)
		}
	}
	return s.tokens, nil, nil
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
		swapped = m.swapUnsaved(s.gen, next, &from)
	}
	if !swapped {
		cur := m.cur.Load()
		return cur, cur.err
	}
	return next, nil
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
	case lerr != nil && !errors.Is(lerr, ErrNoTokens) && !errors.Is(lerr, ErrCorruptRecord):
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

func (t *Transport) refreshTimeout() time.Duration {
	if t.RefreshTimeout > 0 {
		return t.RefreshTimeout
	}
	return DefaultRefreshTimeout
}

func (t *Transport) log(ctx context.Context, msg string, attrs ...slog.Attr) {
	if t.Logger != nil {
		t.Logger.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
	}
}
