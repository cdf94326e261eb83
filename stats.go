package autorefresh

import "sync/atomic"

// Stats are the Transport's counters since it was created.
type Stats struct {
	Requests           int64 // calls to RoundTrip
	Refreshes          int64 // successful refreshes, Adopted ones included
	RefreshFailures    int64 // failed refresh attempts
	ProactiveRefreshes int64 // refresh attempts made ahead of expiry
	Replays            int64 // requests sent again after a refresh
	Waits              int64 // requests that waited on a refresh
	NonceRetries       int64 // requests sent again with a new DPoP nonce
}

type stats struct {
	requests, refreshes, failures, proactive, replays, waits, nonceRetries atomic.Int64
}

// Stats returns a snapshot of t's counters.
func (t *Transport) Stats() Stats {
	return Stats{
		Requests:           t.stats.requests.Load(),
		Refreshes:          t.stats.refreshes.Load(),
		RefreshFailures:    t.stats.failures.Load(),
		ProactiveRefreshes: t.stats.proactive.Load(),
		Replays:            t.stats.replays.Load(),
		Waits:              t.stats.waits.Load(),
		NonceRetries:       t.stats.nonceRetries.Load(),
	}
}
