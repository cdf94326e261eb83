package autorefreshtest

import "time"

// seenSet remembers identifiers (the jti of assertions and DPoP proofs, of
// revoked access tokens) until they expire. It is not safe for concurrent
// use; the Server guards it with its mutex. The zero value is empty.
type seenSet struct {
	m     map[string]time.Time
	sweep int // size at which expired entries are deleted next
}

// minSweep is the smallest size at which a seenSet is swept.
const minSweep = 1024

// add records id until exp. It reports false, and changes nothing, when id
// is already recorded and not expired at now.
func (s *seenSet) add(id string, exp, now time.Time) bool {
	if s.has(id, now) {
		return false
	}
	if s.m == nil {
		s.m = make(map[string]time.Time)
	}
	if len(s.m) >= max(s.sweep, minSweep) {
		for k, e := range s.m {
			if !now.Before(e) {
				delete(s.m, k)
			}
		}
		s.sweep = 2 * len(s.m) // amortized: a sweep per doubling
	}
	s.m[id] = exp
	return true
}

// has reports whether id is recorded and not expired at now.
func (s *seenSet) has(id string, now time.Time) bool {
	exp, ok := s.m[id]
	return ok && now.Before(exp)
}
