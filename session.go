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
// set. The request is sent with t.Base, without tokens, and redirects are
// not followed. A 400, 401 or 403 answer yields a *SessionError wrapping
// ErrLoginRejected; any other failure leaves the stored tokens as they
// were. To log in some other way (an HTML form, an OAuth grant), make the
// request yourself and call SetTokens.
func (t *Transport) Login(ctx context.Context, loginURL string, creds any) error {
	if t.Store == nil {
		return &SessionError{Op: "login", Err: ErrNoStore} // before the credentials go anywhere
	}
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

	resp, err := roundTripVia(t.base(), req)
	if err != nil {
		return &SessionError{Op: "login", Err: err}
	}
	defer discard(resp.Body)
	switch {
	case isRefusal(resp.StatusCode):
		return &SessionError{Op: "login", StatusCode: resp.StatusCode, Err: ErrLoginRejected}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &SessionError{Op: "login", StatusCode: resp.StatusCode}
	}
	var tok Tokens
	data, err := readLimited(resp.Body, 0)
	if err == nil {
		tok, err = decodeTokens(data)
	}
	if err == nil {
		err = tok.validate()
	}
	if err != nil {
		return &SessionError{Op: "login", StatusCode: resp.StatusCode, Err: err}
	}
	if err := t.SetTokens(ctx, tok); err != nil {
		return &SessionError{Op: "login", Err: &wrapped{"save tokens", err}}
	}
	return nil
}

// isRefusal reports whether status is a refusal of what was sent (400, 401
// or 403): bad credentials, or a rejected refresh token.
func isRefusal(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden
}

// Resume checks, typically at start-up, whether the stored session is
// still good, by sending a GET to checkURL through t itself: an access
// token that has expired is refreshed first, and a refused one is
// refreshed and the check sent again, sharing the refresh with concurrent
// requests.
//
// Resume returns nil when checkURL answers 2xx, and ErrNoTokens when no
// tokens are stored. When the session is over, the tokens are cleared and
// the *SessionError returned wraps ErrSessionExpired. A session is over
// when the refresh token is rejected, or when checkURL refuses the tokens
// even after a refresh (or at once if t.Refresher is nil), by the same
// policy as requests (t.ShouldRefresh, or the default of the scheme: a 403
// with the default scheme, a 401 with Bearer; see DefaultShouldRefresh).
// The tokens cleared are only those the check refused: a login made while
// the check was under way is kept, and so is a newer pair that another
// holder of the store saved meanwhile (Resume then returns a *SessionError
// that wraps neither sentinel: call it again to check the new tokens).
// Any other answer (a 403 with Bearer,
// a 5xx, a network failure, a refresh endpoint that is down) returns a
// *SessionError and keeps the tokens: the session may well be good.
//
// checkURL must be https, or http to a loopback host unless t.AllowHTTP is
// set, and a host that t.Hosts (if set) lets the tokens go to. Its response
// body is discarded.
func (t *Transport) Resume(ctx context.Context, checkURL string) error {
	req, err := t.checkRequest(ctx, checkURL)
	if err != nil {
		return &SessionError{Op: "resume", Err: err}
	}
	if _, err := t.Tokens(ctx); err != nil {
		if errors.Is(err, ErrNoTokens) {
			return ErrNoTokens
		}
		return &SessionError{Op: "resume", Err: err}
	}
	resp, s, err := t.roundTrip(req)
	if err != nil {
		// The Transport has ended the session if the refresh token was
		// rejected.
		return &SessionError{Op: "resume", Err: err}
	}
	discard(resp.Body)
	code := resp.StatusCode
	switch {
	case code >= 200 && code <= 299:
		return nil
	case !t.refuses(s, resp):
		return &SessionError{Op: "resume", StatusCode: code}
	}
	// Refused after a refresh, or with no way to refresh.
	ended, err := t.manager().drop(ctx, s, ErrSessionExpired)
	switch {
	case err != nil:
		return &SessionError{Op: "resume", StatusCode: code,
			Err: fmt.Errorf("%w (clearing the store failed: %w)", ErrSessionExpired, err)}
	case !ended:
		return &SessionError{Op: "resume", StatusCode: code,
			Err: errors.New("autorefresh: the check refused tokens that were replaced while it ran; the new ones are kept")}
	}
	return &SessionError{Op: "resume", StatusCode: code, Err: ErrSessionExpired}
}

// checkRequest returns the GET request of Resume.
func (t *Transport) checkRequest(ctx context.Context, checkURL string) (*http.Request, error) {
	if err := checkSecureURL(checkURL, t.AllowHTTP, "tokens"); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, checkURL, nil)
	if err != nil {
		return nil, &wrapped{"check request", err}
	}
	ok, err := t.sendsTokens(req)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: the check URL's host %s is not in Transport.Hosts", ErrUnsafeURL, req.URL.Hostname())
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// Logout ends the session. When the Refresher is a Revoker (OAuth2 with a
// revocation endpoint), it first revokes the tokens at the server, waiting
// at most RefreshTimeout for it. Then, whatever the server said, it drops
// the tokens from memory, so that
// requests go out without them from now on, and clears the store (under its
// lock when it is a Locker). A refresh under way does not bring them back.
//
// Logout returns the errors of the revocation and of clearing the store,
// joined. If clearing the store fails, t stays logged out all the same: it
// does not read the store again (which still holds the old pair) until
// SetTokens or Login succeeds. Call Logout again to retry clearing the
// store.
//
// With a Starter (ClientCredentials), there is no user's session to end:
// the next request obtains a new token with the client's credentials.
func (t *Transport) Logout(ctx context.Context) error {
	var rerr error
	if r, ok := t.Refresher.(Revoker); ok {
		if tok, err := t.Tokens(ctx); err == nil {
			rctx, cancel := context.WithTimeout(ctx, t.refreshTimeout())
			if rerr = r.Revoke(rctx, tok); rerr != nil {
				rerr = &wrapped{"revoke tokens", rerr}
			}
			cancel()
		}
	}
	return errors.Join(rerr, t.manager().logout(ctx))
}
