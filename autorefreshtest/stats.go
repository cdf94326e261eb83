package autorefreshtest

import "sync"

// Stats counts what a Server did since it started. Each counter is
// incremented before the response it describes is written, so a client that
// has read a response sees it counted.
//
// Every snapshot is exact: the counters that one event moves (a refresh
// call refused as a reuse moves RefreshRejections and ReuseRejections) move
// together, under one lock, so a snapshot never shows half an event. It
// follows that every snapshot satisfies, among others:
//
//	ReuseRejections <= RefreshRejections
//	Refreshes + ClientCredentialsGrants + RefreshRejections <= RefreshCalls
//	RefreshFaults + RefreshRejections <= RefreshCalls
//	API401s + API403s <= APICalls
//	CheckFailures <= Checks
//	DiscoveryFaults <= DiscoveryFetches
//	RevocationFaults + RevokedAccessTokens <= RevocationCalls
//
// and no counter ever decreases.
type Stats struct {
	// Logins counts successful logins: POST /auth/login and password
	// grants. Issue does not count.
	Logins int64
	// LoginFailures counts logins refused for wrong credentials or a
	// malformed request.
	LoginFailures int64

	// RefreshCalls counts every refresh call (GET /auth/refreshtoken, or a
	// refresh_token or client_credentials grant at POST /oauth/token),
	// whatever its outcome, including injected faults.
	RefreshCalls int64
	// Refreshes counts successful refreshes, which issued new tokens.
	Refreshes int64
	// RefreshRejections counts refreshes refused because the refresh
	// token was missing, unknown, expired, revoked or spent, or bound to
	// another DPoP key.
	RefreshRejections int64
	// ReuseRejections counts the refreshes among RefreshRejections that
	// presented a spent refresh token.
	ReuseRejections int64
	// RefreshFaults counts refresh calls answered with an injected fault
	// (FailRefresh or SetRefreshFault). A FaultDropAfterRotate counts
	// only when it fired, that is when tokens were issued and then lost,
	// so such a call counts in Refreshes (or ClientCredentialsGrants) too.
	RefreshFaults int64
	// ClientCredentialsGrants counts client_credentials grants that
	// issued an access token.
	ClientCredentialsGrants int64
	// ClientAuthFailures counts requests to POST /oauth/token and POST
	// /oauth/revoke refused with invalid_client.
	ClientAuthFailures int64
	// Revocations counts sessions revoked: by reuse of a refresh token
	// (Options.RevokeOnReuse), by Revoke, RevokeUser and RevokeAll, and by
	// revoking a refresh token at POST /oauth/revoke.
	Revocations int64

	// RevocationCalls counts every request to POST /oauth/revoke,
	// whatever its outcome, including injected failures.
	RevocationCalls int64
	// RevocationFaults counts the RevocationCalls answered with an
	// injected failure (FailRevocation).
	RevocationFaults int64
	// RevokedAccessTokens counts access tokens revoked at POST
	// /oauth/revoke. A refresh token revoked there counts in Revocations.
	RevokedAccessTokens int64

	// DiscoveryFetches counts every request for the authorization server
	// metadata, at either well-known path, including injected faults.
	DiscoveryFetches int64
	// DiscoveryFaults counts the DiscoveryFetches answered with an
	// injected fault (FailDiscovery or SetDiscoveryFault).
	DiscoveryFaults int64

	// DPoPProofs counts DPoP proofs accepted, at the token endpoint and
	// at the resource routes (/api/ and /auth/check).
	DPoPProofs int64
	// DPoPRefusals counts DPoP proofs and DPoP-bound tokens refused, by
	// reason.
	DPoPRefusals DPoPRefusals
	// DPoPNonceDemands counts answers that demanded a nonce
	// (use_dpop_nonce) because a proof had none, a stale one, or
	// DemandDPoPNonce asked for it.
	DPoPNonceDemands int64

	// APICalls counts every request to /api/.
	APICalls int64
	// API401s counts /api/ requests answered 401: invalid access tokens
	// sent as "Authorization: Bearer" or "Authorization: DPoP", and DPoP
	// refusals.
	API401s int64
	// API403s counts /api/ requests answered 403: invalid access tokens
	// sent in the "accessToken" header or missing, SetAPIReject, /api/admin
	// and /api/status/403.
	API403s int64

	// Checks counts requests to GET /auth/check.
	Checks int64
	// CheckFailures counts the Checks answered 403, or 401 to a request
	// that used DPoP.
	CheckFailures int64
}

// DPoPRefusals counts refused DPoP proofs by reason (RFC 9449 section 4.3).
// A refused request counts once, under the first check that failed, in the
// order of the fields.
type DPoPRefusals struct {
	// Missing counts requests without a proof where one was required:
	// Options.RequireDPoP, an "Authorization: DPoP" request, or a refresh
	// token bound to a key.
	Missing int64
	// Malformed counts proofs that are not a single well-formed JWT with
	// the typ "dpop+jwt" and the claims jti, htm, htu and iat.
	Malformed int64
	// Algorithm counts proofs whose alg is none, symmetric (HMAC),
	// unsupported, or not the one of their key.
	Algorithm int64
	// Key counts proofs whose jwk is not a supported public key or holds
	// private members.
	Key int64
	// Signature counts proofs whose signature does not verify with their
	// jwk.
	Signature int64
	// IssuedAt counts proofs whose iat is outside the window
	// (Options.DPoPProofWindow).
	IssuedAt int64
	// Replay counts proofs whose jti was seen before.
	Replay int64
	// Method counts proofs whose htm is not the request's method.
	Method int64
	// URI counts proofs whose htu is not the request's URI.
	URI int64
	// TokenHash counts proofs at the resource routes whose ath is not the
	// hash of the access token.
	TokenHash int64
	// Binding counts access tokens refused for their binding: a
	// DPoP-bound token sent as Bearer (or in the accessToken header), a
	// token sent with "Authorization: DPoP" that is not bound to the
	// proof's key, and a Bearer token where Options.RequireDPoP holds.
	Binding int64
}

// counters are the live counts behind Stats.
type counters struct {
	mu sync.Mutex // guards st
	st Stats
}

// count applies one event's increments to the counters, all at once.
func (s *Server) count(event func(st *Stats)) {
	s.stats.mu.Lock()
	event(&s.stats.st)
	s.stats.mu.Unlock()
}

// Stats returns a snapshot of the counters. It is safe to call while the
// server serves requests, and every snapshot is exact (see Stats).
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.st
}
