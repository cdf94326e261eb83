package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ErrLoginRejected means the login endpoint refused the credentials: it
// answered 400, 401 or 403.
var ErrLoginRejected = errors.New("autorefresh: login rejected")

// A SessionError is returned by Transport.Login and Transport.Resume when
// they fail. It holds no credentials and no token values.
//
// A SessionError wrapping ErrLoginRejected or ErrSessionExpired is a
// refusal; any other is transient (network error, timeout, an unexpected
// status such as 5xx, a malformed answer) and the stored tokens are kept.
type SessionError struct {
	// Op is "login" or "resume".
	Op string

	// StatusCode is the endpoint's HTTP status, or 0 when the failure
	// happened before an answer (or was a failed refresh).
	StatusCode int

	// Err is the cause: ErrLoginRejected, ErrSessionExpired, a
	// *RefreshError, or a network, timeout or decoding error. It may be
	// nil when StatusCode says all there is to say.
	Err error
}

// Error describes e without token values.
func (e *SessionError) Error() string {
	var b strings.Builder
	b.WriteString("autorefresh: ")
	b.WriteString(e.Op)
	if e.StatusCode != 0 {
		b.WriteString(": endpoint answered ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "autorefresh: "))
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *SessionError) Unwrap() error { return e.Err }

// Login starts a session: it POSTs creds, encoded as JSON, to loginURL and
// saves the answer {"accessToken": "...", "refreshToken": "..."} (an
// optional "expiry" in RFC 3339 is read too) with SetTokens, so that
// requests carry the new tokens from then on.
//
// loginURL must be https, or http to a loopback host unless t.AllowHTTP is
// set. The request is sent
// with t.Base, without tokens, and redirects are not followed. A 400, 401
// or 403 answer yields a *SessionError wrapping ErrLoginRejected; any other
// failure leaves the stored tokens as they were. To log in some other way
// (an HTML form, an OAuth grant), make the request yourself and call
// SetTokens.
func (t *Transport) Login(ctx context.Context, loginURL string, creds any) error {
	if err := checkSecureURL(loginURL, t.AllowHTTP, "credentials"); err != nil {
		return &SessionError{Op: "login", Err: err}
	}
	body, err := json.Marshal(creds)
	if err != nil {
		// json errors describe types, not values.
		return &SessionError{Op: "login", Err: fmt.Errorf("autorefresh: encode credentials: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, loginURL, bytes.NewReader(body))
	if err != nil {
		return &SessionError{Op: "login", Err: fmt.Errorf("autorefresh: login request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := t.base().RoundTrip(req)
	if err != nil {
		return &SessionError{Op: "login", Err: err}
	}
	defer drainClose(resp.Body)
	switch {
	case resp.StatusCode == http.StatusBadRequest ||
		resp.StatusCode == http.StatusUnauthorized ||
		resp.StatusCode == http.StatusForbidden:
		return &SessionError{Op: "login", StatusCode: resp.StatusCode, Err: ErrLoginRejected}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &SessionError{Op: "login", StatusCode: resp.StatusCode}
	}
	var tok Tokens
	data, err := readLimited(resp.Body, 0)
	if err == nil {
		tok, err = decodeTokens(data)
	}
	if err != nil {
		return &SessionError{Op: "login", StatusCode: resp.StatusCode, Err: err}
	}
	if err := t.SetTokens(ctx, tok); err != nil {
		return &SessionError{Op: "login", Err: fmt.Errorf("autorefresh: save tokens: %w", err)}
	}
	return nil
}

// Resume checks, typically at start-up, whether the stored session is
// still good, by sending a GET to checkURL through t itself: an access
// token that is due is refreshed first, and a refused one is refreshed and
// the check sent again, sharing the refresh with concurrent requests.
//
// Resume returns nil when checkURL answers 2xx, and ErrNoTokens when no
// tokens are stored. When the session is over, the tokens are cleared and
// the *SessionError returned wraps ErrSessionExpired. A session is over
// when the refresh token is rejected, or when checkURL refuses the tokens
// even after a refresh (or at once if t.Refresher is nil): it answers what
// t.ShouldRefresh accepts, or 401 or 403 without an RFC 6750 error code
// that says otherwise (insufficient_scope, invalid_request). Any other
// failure (the network, a 5xx, a refresh endpoint that is down) returns a
// *SessionError and keeps the tokens: the session may well be good once
// the server is reachable again.
//
// checkURL must be https, or http to a loopback host unless t.AllowHTTP is
// set, and a host that t.Hosts (if set) lets the tokens go to. Its response body is discarded.
func (t *Transport) Resume(ctx context.Context, checkURL string) error {
	if err := checkSecureURL(checkURL, t.AllowHTTP, "tokens"); err != nil {
		return &SessionError{Op: "resume", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, checkURL, nil)
	if err != nil {
		return &SessionError{Op: "resume", Err: fmt.Errorf("autorefresh: check request: %w", err)}
	}
	if !t.sendsTokens(req) {
		return &SessionError{Op: "resume", Err: fmt.Errorf("autorefresh: check URL host %s is not in Transport.Hosts", req.URL.Hostname())}
	}
	if _, err := t.Tokens(ctx); err != nil {
		if errors.Is(err, ErrNoTokens) {
			return ErrNoTokens
		}
		return &SessionError{Op: "resume", Err: err}
	}
	req.Header.Set("Accept", "application/json")

	resp, err := t.RoundTrip(req)
	if err == nil && t.refused(resp) && !t.shouldRefresh(resp) && t.Refresher != nil {
		// The Transport did not take the answer for a refusal (ShouldRefresh
		// does not cover it), so it did not refresh: do that here, once,
		// rather than end a session that a refresh may save.
		drainClose(resp.Body)
		resp = nil
		if _, err = t.renew(ctx, t.state.Load(), false, 0); err == nil {
			resp, err = t.RoundTrip(req)
		}
	}
	if err != nil {
		// The Transport has cleared the store if the refresh token was
		// rejected.
		return &SessionError{Op: "resume", Err: err}
	}
	drainClose(resp.Body)
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		return nil
	case t.refused(resp):
		// Refused after a refresh, or with no way to refresh.
		if err := t.ClearTokens(ctx); err != nil {
			return &SessionError{Op: "resume", StatusCode: code,
				Err: fmt.Errorf("%w (clearing the store failed: %w)", ErrSessionExpired, err)}
		}
		return &SessionError{Op: "resume", StatusCode: code, Err: ErrSessionExpired}
	default:
		return &SessionError{Op: "resume", StatusCode: code}
	}
}

// refused reports whether a check endpoint's answer refuses the tokens:
// ShouldRefresh accepts it, or it is a 401 or 403 that does not say the
// token is good but not sufficient, or the request malformed (the RFC 6750
// error codes insufficient_scope and invalid_request).
func (t *Transport) refused(resp *http.Response) bool {
	if t.shouldRefresh(resp) {
		return true
	}
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return false
	}
	switch bearerError(resp.Header) {
	case "insufficient_scope", "invalid_request":
		return false
	}
	return true
}

// Logout ends the session: it clears the tokens from the store and from
// memory, like ClearTokens. Requests then go out without tokens until the
// next Login or SetTokens.
func (t *Transport) Logout(ctx context.Context) error {
	return t.ClearTokens(ctx)
}
