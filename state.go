package autorefresh

import (
	"sync/atomic"
	"time"
)

// A state is one generation of a Transport's token state: an immutable
// snapshot of the tokens in use, with what requests need to send them. Every
// change of the tokens (a load, a refresh, an adopted pair, SetTokens, a
// logout, the end of a session) makes a new state with a new generation
// number; decisions about "the tokens a request was sent with" compare
// generations, never token strings.
type state struct {
	gen    uint64
	tokens Tokens // zero: no tokens (never logged in, logged out or ended)
	hdr    headers
	bound  bool // the tokens are DPoP-bound (TokenType "DPoP")

	expiry    time.Time // zero: unknown
	refreshAt time.Time // zero: never ahead of time

	// err is set on the state that ended a session (its refresh token was
	// rejected): requests refused with an older generation fail with it.
	err error

	// fresh is set on a state issued by a refresh, proven once a request
	// sent with it was not refused, and futile when it was refused before
	// that: refreshing again would not help (see refused).
	fresh  bool
	proven atomic.Bool
	futile atomic.Bool

	// Back-off after failed refreshes of this generation (see fail), and
	// whether a refresh of it runs in the background.
	started  atomic.Bool
	failures atomic.Int32                 // in a row
	failedAt atomic.Int64                 // Unix ns of the last failure
	retryAt  atomic.Int64                 // Unix ns before which requests do not refresh s; 0: none
	aheadAt  atomic.Int64                 // Unix ns before which s is not refreshed ahead of expiry
	lastErr  atomic.Pointer[RefreshError] // of the last failure

	// Guarded by tokenManager.mu.
	saved bool    // the store holds this state (its tokens, or nothing)
	base  *Tokens // if !saved, what the store holds instead (nil: nothing)
}

func (s *state) hasTokens() bool { return !s.tokens.IsZero() }

// expired reports whether s holds tokens that expired at now, as far as is
// known.
func (s *state) expired(now time.Time) bool {
	return s.hasTokens() && !s.expiry.IsZero() && !now.Before(s.expiry)
}

// due reports whether s should be refreshed ahead of expiry at now.
func (s *state) due(now time.Time) bool {
	return s.hasTokens() && !s.refreshAt.IsZero() && !now.Before(s.refreshAt)
}

// held reports whether a request may not refresh s at now, because of the
// back-off after a failed refresh. A clock set back before the failure ends
// the back-off, rather than make it last as long as the step.
func (s *state) held(now time.Time) bool { return s.within(now, s.retryAt.Load()) }

// heldAhead reports whether s may not be refreshed ahead of expiry at now.
func (s *state) heldAhead(now time.Time) bool { return s.within(now, s.aheadAt.Load()) }

func (s *state) within(now time.Time, until int64) bool {
	n := now.UnixNano()
	return n < until && n >= s.failedAt.Load()
}

// stored returns what the store is known to hold for s: its tokens when it
// was saved, else the pair it was derived from (nil: nothing).
func (s *state) stored() *Tokens {
	if s.saved {
		if s.hasTokens() {
			return &s.tokens
		}
		return nil
	}
	return s.base
}
