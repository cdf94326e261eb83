package autorefresh

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Bounds of the back-off after a failed refresh.
const (
	minBackoff = 100 * time.Millisecond

	// maxBackoffExpired caps the back-off of requests whose token has
	// expired or was refused: they fail fast meanwhile, so it stays short.
	maxBackoffExpired = 500 * time.Millisecond

	// maxBackoffValid caps the back-off of refreshes ahead of expiry:
	// requests go out with their good token meanwhile.
	maxBackoffValid = 5 * time.Second

	// The back-off after a configuration error (a rejected client, bad
	// metadata, an assertion that cannot be signed) is longer: retrying
	// soon cannot help, and the errors say what to fix.
	minBackoffConfig = time.Second
	maxBackoffConfig = 30 * time.Second
)

// fail records a transient failure of the refresh of s at now. Further
// refreshes of s ahead of expiry wait for half the time left, at most five
// seconds: requests go out with the token meanwhile. A request whose token
// has expired or was refused tries again at once after a first failure; from
// the second failure in a row, such requests fail fast for a jittered
// back-off that doubles from 100 ms up to half a second, and the first request
// after it tries again. That keeps a token endpoint that is down from being
// called by every request, and one that recovers from being waited for
// long. A configuration error holds requests back from the first failure,
// for a second doubling up to thirty.
func (s *state) fail(err error, now time.Time) {
	re := (*RefreshError)(nil)
	if !errors.As(err, &re) {
		re = &RefreshError{Err: err}
	}
	s.lastErr.Store(re)
	s.failedAt.Store(now.UnixNano())
	n := min(s.failures.Add(1), 16)
	ahead := maxBackoffValid
	if !s.expiry.IsZero() {
		ahead = max(0, min(ahead, s.expiry.Sub(now)/2))
	}
	var d time.Duration
	switch {
	case configError(err):
		d = min(minBackoffConfig<<(n-1), maxBackoffConfig)
		ahead = max(ahead, d)
	case n >= 2:
		d = min(minBackoff<<(n-2), maxBackoffExpired)
	}
	s.aheadAt.Store(now.Add(ahead).UnixNano())
	if d > 0 {
		s.retryAt.Store(now.Add(d/2 + rand.N(d/2+1)).UnixNano())
	}
}

// configError reports whether err says that the client is configured
// wrong, rather than that a server is unwell.
func configError(err error) bool {
	return errors.Is(err, ErrClientRejected) || errors.Is(err, ErrBadMetadata) || errors.Is(err, ErrClientAssertion) ||
		errors.Is(err, ErrDPoPKeyMissing) || errors.Is(err, errRefusedFresh)
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
