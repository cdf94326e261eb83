package autorefresh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AuthStyle says how an OAuth2 refresher authenticates its client to the
// token endpoint.
type AuthStyle int

const (
	// AuthStyleInHeader sends the client ID and secret with HTTP Basic
	// authentication, each form-urlencoded first as RFC 6749 section
	// 2.3.1 requires. It is the zero AuthStyle.
	AuthStyleInHeader AuthStyle = iota

	// AuthStyleInParams sends the client ID and secret as the client_id
	// and client_secret form parameters of the request body.
	AuthStyleInParams
)

// OAuth2 is a Refresher for an OAuth 2.0 token endpoint (RFC 6749 section
// 6). It POSTs grant_type=refresh_token with the current refresh token and
// reads the access_token, refresh_token, expires_in and token_type of the
// JSON answer (section 5.1). Only the refresh token is sent; the access
// token never reaches the token endpoint. A Transport whose Refresher is an
// *OAuth2 sends BearerScheme unless its Scheme is set; if you wrap an OAuth2
// in a Refresher of your own, set Scheme to BearerScheme, or the refresh
// token goes to the API too.
//
// When the answer has no refresh_token, the current one is kept. When it has
// expires_in, the new Tokens' Expiry is that many seconds after the request
// was sent. A token_type other than Bearer is refused: the Transport only
// sends bearer tokens.
//
// An "invalid_grant" error answer (section 5.2) means the refresh token was
// rejected: the *RefreshError wraps ErrSessionExpired and the session ends.
// So does GitHub's "bad_refresh_token". Any other failure is returned as a
// transient *RefreshError that keeps the tokens: other error codes such as
// "invalid_client" or "unauthorized_client" (a configuration problem, not a
// dead session), 5xx and other statuses, error pages that are not JSON,
// network errors, timeouts, redirects and oversized or malformed answers.
// The error's ErrorCode and Description hold the server's "error" and
// "error_description", with every occurrence of the tokens and the client
// secret redacted.
//
// Only TokenURL needs to be set. An OAuth2 is safe for concurrent use.
//
// OAuth2 does the refresh that golang.org/x/oauth2's Config.TokenSource and
// oauth2.Transport do. It is not oauth2.Endpoint, which only names the URLs
// (AuthURL, TokenURL) of the server: set TokenURL to the oauth2.Endpoint's
// TokenURL. Keep x/oauth2 for the login (Config.Exchange, the device flow)
// and hand the token it gives, here from an oauth2.TokenSource ts, to the
// Transport:
//
//	tok, err := ts.Token()
//	// ...
//	err = tr.SetTokens(ctx, autorefresh.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry})
type OAuth2 struct {
	// TokenURL is the token endpoint, for example
	// "https://oauth2.example.com/token". It must be https, or http to a
	// loopback host, unless AllowHTTP is set.
	TokenURL string

	// ClientID and ClientSecret authenticate the client, as AuthStyle
	// says. If ClientID is empty, the client does not authenticate. If
	// only ClientSecret is empty (a public client), client_id is sent as a
	// form parameter whatever AuthStyle says.
	ClientID     string
	ClientSecret string

	// AuthStyle says how the client authenticates. The zero value is
	// AuthStyleInHeader, HTTP Basic authentication.
	AuthStyle AuthStyle

	// Scopes, if not empty, are sent as the "scope" parameter to ask for
	// a narrower set of scopes than the one originally granted. If empty,
	// the new access token has the scopes of the old one.
	Scopes []string

	// Params, if not nil, are more form parameters sent with every
	// refresh, such as "audience" or "resource" for servers that want
	// them. They cannot replace grant_type, refresh_token, scope or the
	// client credentials.
	Params url.Values

	// Base sends the refresh request. If nil, http.DefaultTransport is
	// used. Redirects are never followed, so the refresh token and client
	// secret cannot be sent to another place.
	Base http.RoundTripper

	// MaxResponseBytes bounds the size of the response read. If zero,
	// DefaultMaxResponseBytes is used.
	MaxResponseBytes int64

	// AllowHTTP permits a plain http:// TokenURL to a host that is not a
	// loopback address. Tokens then cross the network unencrypted.
	AllowHTTP bool

	now func() time.Time // for tests; nil: time.Now
}

// HeaderScheme declares BearerScheme: a Transport whose Scheme is not set
// sends the access token of an OAuth2 in "Authorization: Bearer", and the
// refresh token only to the token endpoint. See Transport.Scheme.
func (o *OAuth2) HeaderScheme() HeaderScheme { return BearerScheme }

// maxDescription bounds the length of an error description taken from a
// token endpoint's answer.
const maxDescription = 256

// Refresh implements Refresher.
func (o *OAuth2) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	if current.RefreshToken == "" {
		return Tokens{}, &RefreshError{Err: fmt.Errorf("%w: no refresh token", ErrSessionExpired)}
	}
	if err := checkSecureURL(o.TokenURL, o.AllowHTTP, "tokens"); err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	form := url.Values{}
	for k, v := range o.Params {
		form[k] = v
	}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", current.RefreshToken)
	if len(o.Scopes) > 0 {
		form.Set("scope", strings.Join(o.Scopes, " "))
	} else {
		form.Del("scope")
	}
	form.Del("client_id")
	form.Del("client_secret")
	basic := o.ClientID != "" && o.ClientSecret != "" && o.AuthStyle == AuthStyleInHeader
	if o.ClientID != "" && !basic {
		form.Set("client_id", o.ClientID)
		if o.ClientSecret != "" {
			form.Set("client_secret", o.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, &RefreshError{Err: &wrapped{"refresh request", err}}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	}

	sent := time.Now()
	if o.now != nil {
		sent = o.now()
	}
	resp, err := baseOr(o.Base).RoundTrip(req)
	if err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	defer resp.Body.Close()

	body, err := readLimited(resp.Body, o.MaxResponseBytes)
	if err != nil {
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode, Err: err}
	}
	tr, decodeErr := decodeTokenResponse(resp.Header.Get("Content-Type"), body)
	if tr.Error != "" || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Tokens{}, o.errorResponse(resp.StatusCode, tr, current)
	}
	if decodeErr != nil {
		return Tokens{}, &RefreshError{StatusCode: resp.StatusCode, Err: decodeErr}
	}
	return tr.tokens(current, sent, resp.StatusCode)
}

// errorResponse returns the error for a token endpoint's error answer.
func (o *OAuth2) errorResponse(status int, tr tokenResponse, current Tokens) error {
	secrets := []string{current.AccessToken, current.RefreshToken, o.ClientSecret}
	e := &RefreshError{
		StatusCode:  status,
		ErrorCode:   sanitizeCode(tr.Error, 64, secrets),
		Description: sanitize(tr.ErrorDescription, maxDescription, secrets),
	}
	switch tr.Error {
	case "invalid_grant", "bad_refresh_token":
		e.Err = ErrSessionExpired
	}
	return e
}

// tokens converts a successful answer into Tokens.
func (tr tokenResponse) tokens(current Tokens, sent time.Time, status int) (Tokens, error) {
	if tr.AccessToken == "" {
		return Tokens{}, &RefreshError{StatusCode: status, Err: errNoAccessToken}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return Tokens{}, &RefreshError{StatusCode: status,
			Err: fmt.Errorf("autorefresh: token endpoint issued a %q token; only Bearer tokens are supported", sanitize(tr.TokenType, 32, []string{tr.AccessToken, tr.RefreshToken, current.RefreshToken}))}
	}
	t := Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, TokenType: "Bearer"}
	if t.RefreshToken == "" {
		t.RefreshToken = current.RefreshToken
	}
	if tr.ExpiresIn > 0 {
		t.Expiry = sent.Add(time.Duration(tr.ExpiresIn) * time.Second).Round(0)
	}
	return t, nil
}

// tokenResponse is the answer of an OAuth 2.0 token endpoint: the fields of
// RFC 6749 section 5.1 on success, those of section 5.2 on failure.
type tokenResponse struct {
	AccessToken      string    `json:"access_token"`
	TokenType        string    `json:"token_type"`
	RefreshToken     string    `json:"refresh_token"`
	ExpiresIn        expiresIn `json:"expires_in"`
	Error            string    `json:"error"`
	ErrorDescription string    `json:"error_description"`
}

// maxExpiresIn is the largest expires_in honoured, about 100 years; a
// larger value is taken as unknown.
const maxExpiresIn = 100 * 366 * 24 * 60 * 60

// expiresIn is a lifetime in seconds. It decodes from a JSON number or, as
// some servers (GitHub) send it, a string holding one. Values that are not positive
// whole numbers of seconds up to maxExpiresIn decode as 0 (unknown).
type expiresIn int64

func (e *expiresIn) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	*e = parseExpiresIn(s)
	return nil
}

func parseExpiresIn(s string) expiresIn {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f > 0 && f <= maxExpiresIn) {
		return 0
	}
	return expiresIn(f)
}

// decodeTokenResponse parses a token endpoint's answer: JSON, or the
// form-urlencoded answer of some older servers when contentType says so.
func decodeTokenResponse(contentType string, body []byte) (tokenResponse, error) {
	var tr tokenResponse
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		if v, err := url.ParseQuery(string(body)); err == nil && (v.Has("access_token") || v.Has("error")) {
			tr.AccessToken = v.Get("access_token")
			tr.TokenType = v.Get("token_type")
			tr.RefreshToken = v.Get("refresh_token")
			tr.ExpiresIn = parseExpiresIn(v.Get("expires_in"))
			tr.Error = v.Get("error")
			tr.ErrorDescription = v.Get("error_description")
			return tr, nil
		}
	}
	body = trimBOM(body)
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("%w: %s", ErrMalformedResponse, describeJSONError(err, len(body)))
	}
	return tr, nil
}

// String describes o with its client secret redacted.
func (o *OAuth2) String() string {
	if o == nil {
		return "autorefresh.OAuth2(nil)"
	}
	return fmt.Sprintf("autorefresh.OAuth2{TokenURL: %q, ClientID: %q, ClientSecret: %s}", o.TokenURL, o.ClientID, redact(o.ClientSecret))
}

// GoString is like String.
func (o *OAuth2) GoString() string { return o.String() }

// Format implements fmt.Formatter: every verb prints String, so that the
// client secret never shows.
func (o *OAuth2) Format(f fmt.State, verb rune) { io.WriteString(f, o.String()) }

// LogValue implements slog.LogValuer: an OAuth2 logs as String.
func (o *OAuth2) LogValue() slog.Value { return slog.StringValue(o.String()) }
