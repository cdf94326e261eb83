package autorefresh

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// This file revokes tokens at the authorization server (RFC 7009), which
// Transport.Logout asks a Revoker to do.

// RevocationError describes a failed revocation of a token at an
// authorization server's revocation endpoint (RFC 7009). It never holds
// token values or client credentials.
type RevocationError struct {
	// TokenTypeHint names the token that may not have been revoked:
	// "refresh_token" or "access_token"; "" when the failure came before
	// either (the metadata could not be fetched).
	TokenTypeHint string

	// StatusCode is the endpoint's HTTP status, or 0 when no answer was
	// received.
	StatusCode int

	// ErrorCode and Description are the OAuth 2.0 "error" and
	// "error_description" of the answer, such as "unsupported_token_type"
	// (RFC 7009 section 2.2.1), with token values redacted.
	ErrorCode   string
	Description string

	// Err is the cause, if any besides the status: a network error, a
	// *DiscoveryError, an error wrapping ErrClientAssertion.
	Err error
}

// Error describes e without token values.
func (e *RevocationError) Error() string {
	var b strings.Builder
	b.WriteString("autorefresh: revocation")
	switch e.TokenTypeHint {
	case "refresh_token":
		b.WriteString(" of the refresh token")
	case "access_token":
		b.WriteString(" of the access token")
	}
	b.WriteString(" failed")
	if e.StatusCode != 0 {
		b.WriteString(": endpoint answered ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.ErrorCode != "" {
		b.WriteString(": ")
		b.WriteString(e.ErrorCode)
		if e.Description != "" {
			b.WriteString(" (")
			b.WriteString(e.Description)
			b.WriteString(")")
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(trimPrefix(e.Err))
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *RevocationError) Unwrap() error { return e.Err }

// revoke revokes the tokens t at the revocation endpoint: the refresh token
// (token_type_hint=refresh_token), and the access token too when access is
// set or there is no refresh token. It tries both, and returns their
// *RevocationErrors joined. Without a revocation endpoint (none configured,
// and none in the issuer's metadata) it does nothing and returns nil.
func (c *oauthClient) revoke(ctx context.Context, t Tokens, access bool) error {
	ep, err := c.endpoints(ctx, true)
	if err != nil {
		return &RevocationError{Err: err}
	}
	if ep.revocation == "" {
		return nil
	}
	var errs []error
	if t.RefreshToken != "" {
		errs = append(errs, c.revokeToken(ctx, ep, "refresh_token", t.RefreshToken, t))
	}
	if t.AccessToken != "" && (access || t.RefreshToken == "") {
		errs = append(errs, c.revokeToken(ctx, ep, "access_token", t.AccessToken, t))
	}
	return errors.Join(errs...)
}

// revokeToken revokes token, one of t's, which hint names. Any 2xx answer
// means it is revoked (or was not valid anyway: RFC 7009 section 2.2).
func (c *oauthClient) revokeToken(ctx context.Context, ep endpoints, hint, token string, t Tokens) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	a, err := c.post(ctx, ep.revocation, c.assertionAudience(ep), form, nil)
	if a != nil && a.status >= 200 && a.status <= 299 {
		return nil
	}
	e := &RevocationError{TokenTypeHint: hint, Err: err}
	if a == nil {
		return e
	}
	e.StatusCode = a.status
	if err == nil {
		tr, _ := decodeTokenResponse(a.header.Get("Content-Type"), a.body)
		secrets := append([]string{t.AccessToken, t.RefreshToken}, a.secrets...)
		e.ErrorCode = sanitizeCode(tr.Error, 64, secrets)
		e.Description = sanitize(tr.ErrorDescription, maxDescription, secrets)
	}
	return e
}
