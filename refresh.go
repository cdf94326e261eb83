package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// A Refresher exchanges the current tokens for new ones.
//
// A Refresher reports that the refresh token was rejected, so that the
// session is over, by returning an error that wraps ErrSessionExpired; the
// Transport then clears its store. Any other error is taken as transient and
// the tokens are kept. A returned Tokens without a RefreshToken keeps the
// current one. A Refresher may also log in again by calling the
// Transport's SetTokens with the ctx it was given; the Transport then uses
// those tokens.
type Refresher interface {
	Refresh(ctx context.Context, current Tokens) (Tokens, error)
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
	// Proactive is true for a refresh made ahead of expiry, false for one
	// made because a request was refused.
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

	// Adopted is true when the Store's lock showed that another process
	// had already refreshed, and its tokens were used.
	Adopted bool

	// StoreErr, if not nil, is the error of saving (or, when the session
	// ended, clearing) the store. The new tokens are used in memory even
	// when saving them failed.
	StoreErr error
}

// maxRetryAhead is the longest wait before a failed refresh ahead of
// expiry is tried again.
const maxRetryAhead = 5 * time.Second

// maxWaitAhead is the longest a request whose token is still good waits
// for a refresh ahead of expiry; after that it goes out with its token,
// and the refresh goes on for the requests that follow.
const maxWaitAhead = time.Second

// refreshAhead refreshes s, which is due or expired at now, before a
// request is sent with it. While s has not expired, a refresh that fails
// or takes longer than maxWaitAhead is not fatal: the request goes out
// with s, and further refreshes ahead of expiry wait for half the time
// left (at most maxRetryAhead), so that requests do not each wait on a
// failing or hanging endpoint while their token is good.
func (t *Transport) refreshAhead(ctx context.Context, s *session, now time.Time) (*session, error) {
	if t.Refresher == nil {
		return s, nil
	}
	valid := now.Before(s.expiry)
	limit := time.Duration(0)
	if valid {
		limit = min(maxWaitAhead, s.expiry.Sub(now))
		if d, ok := ctx.Deadline(); ok {
			limit = min(limit, time.Until(d)/2) // leave the request time to go out
		}
	}
	ns, err := t.renew(ctx, s, true, limit)
	switch {
	case err == nil:
		return ns, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, ErrSessionExpired), !valid:
		return nil, err
	}
	s.retryAt.Store(now.Add(min(maxRetryAhead, s.expiry.Sub(now)/2)).UnixNano())
	return s, nil
}

func (t *Transport) refreshTimeout() time.Duration {
	if t.RefreshTimeout > 0 {
		return t.RefreshTimeout
	}
	return DefaultRefreshTimeout
}

// renew returns the session that replaces stale, refreshing stale unless
// that was done already. All callers share one refresh at a time, which
// runs to completion even when they give up waiting on their contexts.
func (t *Transport) renew(ctx context.Context, stale *session, proactive bool, limit time.Duration) (*session, error) {
	if cur := t.state.Load(); cur != stale {
		if !cur.expired(t.clock()) {
			return cur, cur.err
		}
		stale = cur // replaced, but expired as well: refresh that
	}
	if t.Refresher == nil {
		return nil, errors.New("autorefresh: Transport.Refresher is nil")
	}
	t.stats.waits.Add(1)
	onPanic := func(p any) error {
		t.stats.failures.Add(1)
		return &RefreshError{Err: fmt.Errorf("autorefresh: refresh panicked (%T)", p)}
	}
	s, err := t.await(ctx, "refresh", limit, onPanic, func() (*session, error) {
		return t.refresh(ctx, stale, proactive)
	})
	if errors.Is(err, errGaveUp) && limit == 0 {
		err = &RefreshError{Err: fmt.Errorf("autorefresh: refresh did not end within %v", t.refreshTimeout())}
	}
	return s, err
}

// errGaveUp is returned by await when it stopped waiting first.
var errGaveUp = errors.New("autorefresh: gave up waiting")

// await runs fn in the single flight of key, shared with the concurrent
// callers, and waits for its session until ctx is done or, if limit > 0,
// for at most limit; in any case no longer than RefreshTimeout and a
// second, in case fn never ends (it called runtime.Goexit). A panic in fn
// becomes onPanic's error: singleflight would re-panic it in a goroutine
// of its own, where no caller could recover it. Its value is not shown: it
// may hold tokens.
func (t *Transport) await(ctx context.Context, key string, limit time.Duration, onPanic func(any) error, fn func() (*session, error)) (*session, error) {
	ch := t.flight.DoChan(key, func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				v, err = nil, onPanic(p)
			}
		}()
		return fn()
	})
	if max := t.refreshTimeout() + time.Second; limit <= 0 || limit > max {
		limit = max
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*session), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, errGaveUp
	}
}

// refresh replaces stale with new tokens. It runs in the single flight, so
// at most one refresh per Transport runs at a time.
func (t *Transport) refresh(ctx context.Context, stale *session, proactive bool) (*session, error) {
	if cur := t.state.Load(); cur != stale {
		if !cur.expired(t.clock()) {
			return cur, cur.err
		}
		stale = cur
	}
	ctx = context.WithValue(context.WithoutCancel(ctx), refreshKey{}, true)
	ctx, cancel := context.WithTimeout(ctx, t.refreshTimeout())
	defer cancel()

	start := time.Now()
	ev := RefreshEvent{Proactive: proactive, OldExpiry: stale.expiry}
	if proactive {
		t.stats.proactive.Add(1)
	}
	t.log(ctx, "autorefresh: refreshing tokens", slog.Bool("proactive", proactive), slog.Time("oldExpiry", stale.expiry))
	ns, err := t.exchange(ctx, stale, &ev)
	ev.Duration = time.Since(start)
	ev.Err = err
	if err != nil {
		t.stats.failures.Add(1)
		t.log(ctx, "autorefresh: refresh failed", slog.Duration("took", ev.Duration),
			slog.Bool("sessionEnded", ev.SessionEnded), slog.String("error", err.Error()))
	} else {
		t.stats.refreshes.Add(1)
		ev.NewExpiry = ns.expiry
		t.log(ctx, "autorefresh: refreshed tokens", slog.Duration("took", ev.Duration),
			slog.Bool("adopted", ev.Adopted), slog.Time("newExpiry", ns.expiry))
	}
	if ev.StoreErr != nil {
		t.log(ctx, "autorefresh: store failed", slog.String("error", ev.StoreErr.Error()))
	}
	if t.OnRefresh != nil {
		t.OnRefresh(ev)
	}
	return ns, err
}

// exchange does the work of refresh and records what happened in ev.
func (t *Transport) exchange(ctx context.Context, stale *session, ev *RefreshEvent) (*session, error) {
	current := stale.tokens
	if l, ok := t.Store.(Locker); ok {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return nil, &RefreshError{Err: fmt.Errorf("autorefresh: lock store: %w", err)}
		}
		defer unlock()
		stored, err := t.Store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoTokens):
			// Another holder of the store ended the session.
			err := &RefreshError{Err: fmt.Errorf("%w: tokens were removed from the store", ErrSessionExpired)}
			return t.end(stale, err, ev, func() error { return nil })
		case err != nil:
			return nil, &RefreshError{Err: fmt.Errorf("autorefresh: load tokens: %w", err)}
		case stored.AccessToken != stale.tokens.AccessToken:
			// Another holder refreshed. Use its pair, or, when that has
			// expired too, refresh it.
			if ns := t.newSession(stored); !ns.expired(t.clock()) {
				ev.Adopted = true
				return t.replace(stale, ns)
			}
			current = stored
		}
	}

	tok, err := t.Refresher.Refresh(ctx, current)
	if err == nil && tok.AccessToken == "" {
		err = errNoAccessToken
	}
	if err != nil {
		if re := (*RefreshError)(nil); !errors.As(err, &re) {
			err = &RefreshError{Err: err}
		}
		if errors.Is(err, ErrSessionExpired) {
			return t.end(stale, err, ev, func() error { return t.Store.Clear(ctx) })
		}
		if cur := t.state.Load(); cur != stale && cur.hasTokens() {
			return cur, nil // logged in again meanwhile
		}
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = current.RefreshToken
	}
	ns, serr := t.commit(stale, t.makeSession(tok, true), func() error { return t.Store.Save(ctx, tok) })
	ev.StoreErr = serr
	return ns, ns.err
}

// replace makes s the current session unless stale was replaced meanwhile
// (by SetTokens or ClearTokens), and returns the current session.
func (t *Transport) replace(stale, s *session) (*session, error) {
	if t.state.CompareAndSwap(stale, s) {
		return s, s.err
	}
	cur := t.state.Load()
	return cur, cur.err
}

// end replaces stale with an empty session that remembers err, the reason
// the session ended, after clearing the store with clear. If stale was
// replaced meanwhile (a new login), that session is kept and returned.
func (t *Transport) end(stale *session, err error, ev *RefreshEvent, clear func() error) (*session, error) {
	s := t.newSession(Tokens{})
	s.err = err
	cur, cerr := t.commit(stale, s, clear)
	if cur != s {
		return cur, cur.err
	}
	ev.SessionEnded, ev.StoreErr = true, cerr
	return s, err
}
