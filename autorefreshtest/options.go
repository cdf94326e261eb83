package autorefreshtest

import "time"

// DefaultUser and DefaultPassword are the only credentials a Server accepts
// when Options.Users is nil.
const (
	DefaultUser     = "alice"
	DefaultPassword = "wonderland"
)

// Options configure a Server. The zero value is a server with one user
// (DefaultUser), one-minute access tokens, one-day rotating refresh tokens and
// no client authentication; DPoP is optional.
type Options struct {
	// AccessTTL is the lifetime of access tokens. Values below a second
	// work. If zero, it is one minute.
	AccessTTL time.Duration

	// RefreshTTL is the lifetime of each refresh token, counted from when
	// it was issued. If zero, it is 24 hours.
	RefreshTTL time.Duration

	// Users maps user names to passwords. If nil, the only user is
	// DefaultUser with DefaultPassword. NewServer copies the map.
	Users map[string]string

	// RevokeOnReuse makes the presentation of a spent refresh token revoke
	// its whole session (Auth0 and Okta style): the session's current
	// refresh token stops working and its access tokens are rejected.
	RevokeOnReuse bool

	// NoRotation makes refreshes keep the presented refresh token valid
	// and omit the refresh token from their responses, like servers that
	// do not rotate refresh tokens.
	NoRotation bool

	// ClientID and ClientSecret register a client, as a Client with this
	// ID and Secret in Clients would.
	ClientID, ClientSecret string

	// Clients are the OAuth clients of POST /oauth/token and POST
	// /oauth/revoke. When at least one client is registered (here or with
	// ClientID), every request to these endpoints must come from one: a
	// confidential client authenticates, a public one sends its client_id.
	// When none is, clients are not authenticated, credentials are ignored
	// and every client is public. NewServer panics on an invalid Client
	// (no ID, an ID registered twice, an unsupported Key), as
	// httptest.NewServer panics when it cannot listen.
	Clients []Client

	// IssuerPath, if not empty, is the path of the server's issuer
	// identifier (see Server.Issuer), such as "/tenant1": the RFC 8414
	// metadata is then served at /.well-known/oauth-authorization-server/tenant1
	// and the OpenID metadata at /tenant1/.well-known/openid-configuration.
	// It must start with a slash, not end with one, and hold only letters,
	// digits and "-._~/"; NewServer panics otherwise.
	IssuerPath string

	// RequireDPoP makes DPoP (RFC 9449) mandatory: token requests without
	// a proof are refused with invalid_dpop_proof, and the resource routes
	// refuse access tokens that are not DPoP-bound, including those of
	// Issue, POST /auth/login and GET /auth/refreshtoken, which never are.
	// If false, DPoP is optional: a token request with a valid proof gets
	// DPoP-bound tokens, one without gets Bearer tokens.
	RequireDPoP bool

	// RequireDPoPNonce makes every DPoP proof carry the server's current
	// nonce (RFC 9449 sections 8 and 9). The token endpoint and the
	// resource routes keep separate nonces, send the current one in the
	// DPoP-Nonce header of every response, and answer a proof without it
	// with use_dpop_nonce.
	RequireDPoPNonce bool

	// DPoPNonceEvery, if positive, rotates the token endpoint's nonce
	// after every DPoPNonceEvery proofs it accepted, and the resource
	// routes' nonce likewise. If zero, nonces change only with
	// RotateDPoPNonce and DemandDPoPNonce.
	DPoPNonceEvery int

	// DPoPProofWindow is how far the iat of a DPoP proof may be from the
	// server's time, before or after. A proof's jti is remembered that
	// long, and refused if seen again. If zero, DefaultDPoPProofWindow is
	// used.
	DPoPProofWindow time.Duration

	// SigningKey is the HS256 key of the access tokens. If nil, a random
	// key is used.
	SigningKey []byte

	// Now returns the server's current time, which decides when tokens
	// were issued and whether they expired. If nil, time.Now is used.
	Now func() time.Time

	// Logf, if not nil, receives one line per request outcome, for
	// debugging. It never receives token values. It must be safe for
	// concurrent use; testing.T.Logf is, as long as Close is called
	// before the test ends (t.Cleanup(srv.Close)).
	Logf func(format string, args ...any)
}
