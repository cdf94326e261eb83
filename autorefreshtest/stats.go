package autorefreshtest

import "sync/atomic"

// Stats counts what a Server did since it started. Each counter is
// incremented before the response it describes is written, so a client that
// has read a response sees it counted.
type Stats struct {
	// Logins counts successful logins: POST /auth/login and password
	// grants. Issue does not count.
	Logins int64
	// LoginFailures counts logins refused for wrong credentials or a
	// malformed request.
	LoginFailures int64

	// RefreshCalls counts every request to a refresh endpoint (GET
	// /auth/refreshtoken or a refresh_token grant), whatever its outcome,
	// including injected faults.
	RefreshCalls int64
	// Refreshes counts successful refreshes, which issued new tokens.
	Refreshes int64
	// RefreshRejections counts refreshes refused because the refresh
	// token was missing, unknown, expired, revoked or spent.
	RefreshRejections int64
	// ReuseRejections counts the refreshes among RefreshRejections that
	// presented a spent refresh token.
	ReuseRejections int64
	// RefreshFaults counts refresh calls answered with an injected fault
	// (FailRefresh or SetRefreshFault).
	RefreshFaults int64
	// ClientAuthFailures counts POST /oauth/token requests refused with
	// invalid_client.
	ClientAuthFailures int64
	// Revocations counts sessions revoked, by reuse of a refresh token
	// (Options.RevokeOnReuse) or by Revoke, RevokeUser and RevokeAll.
	Revocations int64

	// APICalls counts every request to /api/.
	APICalls int64
	// API401s counts /api/ requests answered 401: invalid access tokens
	// sent as "Authorization: Bearer".
	API401s int64
	// API403s counts /api/ requests answered 403: invalid access tokens
	// sent in the "accessToken" header or missing, SetAPIReject, /api/admin
	// and /api/status/403.
	API403s int64

	// Checks counts requests to GET /auth/check.
	Checks int64
	// CheckFailures counts the Checks answered 403.
	CheckFailures int64
}

// counters are the live counts behind Stats.
type counters struct {
	logins, loginFailures                          atomic.Int64
	refreshCalls, refreshes, refreshRejections     atomic.Int64
	reuseRejections, refreshFaults, clientAuthFail atomic.Int64
	revocations                                    atomic.Int64
	apiCalls, api401s, api403s                     atomic.Int64
	checks, checkFailures                          atomic.Int64
}

// Stats returns a snapshot of the counters. It is safe to call while the
// server serves requests; each counter is read atomically, but the snapshot
// as a whole may interleave with requests in flight. The outcomes of calls
// are read before the calls, so that a snapshot never shows more outcomes
// (Refreshes, rejections, faults, API 401s and 403s, check failures) than
// calls.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		LoginFailures:      c.loginFailures.Load(),
		Refreshes:          c.refreshes.Load(),
		RefreshRejections:  c.refreshRejections.Load(),
		ReuseRejections:    c.reuseRejections.Load(),
		RefreshFaults:      c.refreshFaults.Load(),
		ClientAuthFailures: c.clientAuthFail.Load(),
		Revocations:        c.revocations.Load(),
		API401s:            c.api401s.Load(),
		API403s:            c.api403s.Load(),
		CheckFailures:      c.checkFailures.Load(),
	}
	st.Logins = c.logins.Load()
	st.RefreshCalls = c.refreshCalls.Load()
	st.APICalls = c.apiCalls.Load()
	st.Checks = c.checks.Load()
	return st
}
