package autorefresh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	if err == nil && s.bound && m.t.dpop() == nil {
		err = ErrDPoPKeyMissing // never sent, never refreshed
	}
	if err != nil || m.t.Refresher == nil {
		return s, err
	}
	switch now := m.t.clock(); {
	case !s.hasTokens() && m.starts():
		return m.refresh(ctx, s, causeExpired)
	case s.expired(now):
		return m.refresh(ctx, s, causeExpired)
	case s.due(now) && (s.tokens.RefreshToken != "" || m.starts()):
		// (Without a refresh token there is nothing to refresh it with:
		// the token is used until it expires or is refused.)
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
	if m.t.Refresher == nil || m.hopeless(s) {
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

// errRefusedFresh is the failure recorded for a state whose tokens were
// refused before any request succeeded with them.
var errRefusedFresh = errors.New("autorefresh: the server refused tokens just issued; refreshing again would not help")

// hopeless reports whether refreshing s, whose tokens were refused, would
// not help: s was issued by a Starter (client credentials) and refused
// before any request succeeded with it (an API that refuses every token of
// the client: a wrong audience, a key it does not know). The refusal is
// then returned as it is, and the next token request waits for a back-off,
// as after a configuration error, so that such an API does not cost a
// token request per request. (With a refresh token, each refused request
// refreshes once and is sent once more, as the Transport's doc says.)
func (m *tokenManager) hopeless(s *state) bool {
	now := m.t.clock()
	if s.futile.Load() {
		return s.held(now)
	}
	if !m.starts() || !s.fresh || s.proven.Load() || !s.futile.CompareAndSwap(false, true) {
		return false
	}
	s.fail(errRefusedFresh, now)
	return true
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
	if d := m.t.DPoP; d != nil {
		ctx = context.WithValue(ctx, dpopKey{}, d)
	}
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
