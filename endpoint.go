package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// DefaultMaxResponseBytes is the largest refresh response read when no
// other limit is set.
const DefaultMaxResponseBytes = 1 << 20

// Endpoint is a Refresher for the header protocol of many single-page apps:
// it sends the current tokens in the accessToken and refreshToken headers to
// URL and reads a JSON answer {"accessToken": "...", "refreshToken": "..."}
// (an optional "expiry" in RFC 3339 is read too).
//
// A 400, 401 or 403 answer means the refresh token was rejected and yields
// an error wrapping ErrSessionExpired. Any other failure (network error,
// timeout, redirect, other status, malformed or oversized JSON, a response
// without an access token) is returned as a transient *RefreshError.
//
// Only URL needs to be set. An Endpoint is safe for concurrent use.
//
// Endpoint is not golang.org/x/oauth2's oauth2.Endpoint, which only names
// the URLs (AuthURL, TokenURL) of an OAuth 2.0 server: an Endpoint is a
// Refresher, and it speaks the header protocol above, not OAuth 2.0. For an
// OAuth 2.0 server, use OAuth2 with the oauth2.Endpoint's TokenURL; its doc
// shows how to hand a token from an x/oauth2 login to the Transport.
type Endpoint struct {
	// URL is the refresh endpoint, for example
	// "https://api.example.com/auth/refreshtoken". It must be https, or
	// http to a loopback host, unless AllowHTTP is set.
	URL string

	// Method is the HTTP method. If empty, GET is used.
	Method string

	// Scheme says which headers carry the tokens to the endpoint. The zero
	// value is DefaultScheme. The refresh token is always sent: when
	// Scheme.RefreshHeader is empty, the "refreshToken" header is used.
	Scheme HeaderScheme

	// Base sends the refresh request. If nil, http.DefaultTransport is
	// used. Redirects are never followed, so the tokens cannot be sent to
	// another place.
	Base http.RoundTripper

	// MaxResponseBytes bounds the size of the response read. If zero,
	// DefaultMaxResponseBytes is used.
	MaxResponseBytes int64

	// AllowHTTP permits a plain http:// URL to a host that is not a
	// loopback address. Tokens then cross the network unencrypted.
	AllowHTTP bool
}

// Refresh implements Refresher.
func (e *Endpoint) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	if current.RefreshToken == "" {
		return Tokens{}, &RefreshError{Err: fmt.Errorf("%w: no refresh token", ErrSessionExpired)}
	}
	if err := checkSecureURL(e.URL, e.AllowHTTP, "tokens"); err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	method := e.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, e.URL, nil)
	if err != nil {
		return Tokens{}, &RefreshError{Err: &wrapped{"refresh request", err}}
	}
	sc := e.Scheme.orDefault()
	req.Header[sc.AccessHeader] = []string{sc.AccessPrefix + current.AccessToken}
	refreshHeader := sc.RefreshHeader
	if refreshHeader == "" {
		refreshHeader = DefaultScheme.RefreshHeader
	}
	req.Header[refreshHeader] = []string{current.RefreshToken}
	req.Header.Set("Accept", "application/json")

	resp, err := roundTripVia(baseOr(e.Base), req)
	if err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	defer resp.Body.Close()

	switch {
	case isRefusal(resp.StatusCode):
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode, Err: ErrSessionExpired}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode}
	}
	body, err := readLimited(resp.Body, e.MaxResponseBytes)
	if err != nil {
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode, Err: err}
	}
	t, err := decodeTokens(body)
	if err != nil {
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode, Err: err}
	}
	return t, nil
}

// errNoAccessToken is the error of an answer that holds no access token.
var errNoAccessToken = fmt.Errorf("%w: it has no access token", ErrMalformedResponse)

// decodeTokens parses the JSON answer of the header protocol. Its errors
// wrap ErrMalformedResponse and never quote the body, which may hold
// tokens.
func decodeTokens(body []byte) (Tokens, error) {
	var t Tokens
	if err := json.Unmarshal(trimBOM(body), &t); err != nil {
		return Tokens{}, fmt.Errorf("%w: %s", ErrMalformedResponse, describeJSONError(err, len(body)))
	}
	if t.AccessToken == "" {
		return Tokens{}, errNoAccessToken
	}
	return t, nil
}

// trimBOM drops a UTF-8 byte order mark from the start of body: it is not
// JSON, but some servers send one.
func trimBOM(body []byte) []byte { return bytes.TrimPrefix(body, []byte("\ufeff")) }

// readLimited reads all of r, failing when it holds more than limit bytes
// (DefaultMaxResponseBytes when limit is 0).
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("autorefresh: read response: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformedResponse, limit)
	}
	return buf.Bytes(), nil
}
