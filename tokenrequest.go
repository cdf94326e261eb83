package autorefresh

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file holds what every request to an OAuth 2.0 authorization server
// shares: the client's configuration (oauthClient), the one function that
// sends a request to the token or revocation endpoint (post), and the
// reading of token answers (RFC 6749 sections 5.1 and 5.2).

// ErrClientRejected is wrapped by the *RefreshError of a token request that
// the authorization server refused because of the client or its
// configuration, not because of the tokens: the error codes invalid_client
// (unknown client, wrong secret or key), unauthorized_client (the grant is
// not allowed to this client), invalid_scope, invalid_target (RFC 8707) and
// unsupported_grant_type; for ClientCredentials, whose requests are made of
// the configuration alone, every 4xx error answer (invalid_grant,
// invalid_request, ...). It never wraps ErrSessionExpired: the stored
// tokens are kept, and the Transport tries again after a back-off. Fix the
// configuration.
var ErrClientRejected = errors.New("autorefresh: client rejected by the authorization server")

// maxDescription bounds the length of an error description taken from an
// authorization server's answer.
const maxDescription = 256

// oauthClient is what a request to an authorization server needs from an
// OAuth2 or a ClientCredentials: its endpoints (or the issuer to discover
// them from), how the client authenticates, and how requests are sent. It
// is read from their fields for each call; only the discovered metadata is
// kept, in meta.
type oauthClient struct {
	tokenURL, revocationURL, issuer string

	id, secret string
	style      AuthStyle
	key        crypto.Signer // for AuthStylePrivateKeyJWT
	keyID      string
	keyAlg     string
	audience   string // of client assertions; "" for the token endpoint

	base      http.RoundTripper
	maxBytes  int64
	allowHTTP bool
	now       func() time.Time // nil: time.Now
	meta      *metadataCache
	dpop      *DPoP // nil: no proofs
}

func (c *oauthClient) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// answer is an authorization server's answer to a POST.
type answer struct {
	status int
	header http.Header
	body   []byte
	at     time.Time // when the answer arrived: expires_in counts from it

	// secrets are the client credentials the request carried (its secret,
	// its assertion), which an answer must never show.
	secrets []string
}

// reservedParams are the form parameters that carry client authentication:
// only the client's configuration sets them, never Params.
var reservedParams = []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"}

// post sends form to endpoint, a token or revocation endpoint, with the
// client's authentication, and reads the answer (at most maxBytes of it).
// aud is the audience of a client assertion. Every request to the
// authorization server goes through post, with a new client assertion for
// each: it is where a DPoP proof of the request is to be added, and where a
// use_dpop_nonce answer is to be retried once with the nonce (RFC 9449
// section 8), for every grant and for revocation alike.
//
// post does not modify form. Its errors are those of the configuration or
// of sending (no answer), or of reading the answer (then a is not nil and
// has the status).
func (c *oauthClient) post(ctx context.Context, endpoint, aud string, form url.Values, prove func(http.Header) error) (a *answer, err error) {
	if err := checkSecureURL(endpoint, c.allowHTTP, "credentials"); err != nil {
		return nil, err
	}
	body := make(url.Values, len(form)+2)
	for k, v := range form {
		body[k] = v
	}
	for _, k := range reservedParams {
		delete(body, k)
	}
	auth, err := c.authenticate(body, aud)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body.Encode()))
	if err != nil {
		return nil, &wrapped{"token request", err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if prove != nil {
		if err := prove(req.Header); err != nil {
			return nil, err
		}
	}
	if auth.basic {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	a = &answer{secrets: auth.secrets}
	resp, err := roundTripVia(baseOr(c.base), req)
	if err != nil {
		return nil, err
	}
	a.at = c.clock()
	defer resp.Body.Close()
	a.status, a.header = resp.StatusCode, resp.Header
	if a.body, err = readLimited(resp.Body, c.maxBytes); err != nil {
		return a, err
	}
	return a, nil
}

// A grant is the grant type of a token request, which decides what the
// error codes of its answer mean.
type grant int

const (
	grantRefreshToken      grant = iota // RFC 6749 section 6
	grantClientCredentials              // RFC 6749 section 4.4
)

// requestTokens sends form, a token request, to the token endpoint
// (discovered when only the issuer is known) and returns the tokens of the
// answer. current holds the tokens in use, whose values the errors never
// show. Every error is a *RefreshError.
func (c *oauthClient) requestTokens(ctx context.Context, g grant, form url.Values, current Tokens) (Tokens, error) {
	c.dpop = dpopFor(ctx, c.dpop)
	if isDPoP(current) && c.dpop == nil {
		// Its refresh token may be bound to a key: refreshing without it
		// could end the session.
		return Tokens{}, &RefreshError{Err: ErrDPoPKeyMissing}
	}
	ep, err := c.endpoints(ctx, false)
	if err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	a, err := c.postToken(ctx, ep.token, c.assertionAudience(ep), form)
	if err != nil {
		re := &RefreshError{Err: err}
		if a != nil {
			re.StatusCode = a.status
		}
		return Tokens{}, re
	}
	return a.tokens(g, current, c.dpop)
}

// postToken is post for a token request: with DPoP, each attempt carries a
// new proof, and an answer that asks for a nonce (400 use_dpop_nonce with a
// DPoP-Nonce header) is retried once with it. Every answer's nonce is kept
// for the next requests to the token endpoint.
func (c *oauthClient) postToken(ctx context.Context, endpoint, aud string, form url.Values) (*answer, error) {
	if c.dpop == nil {
		return c.post(ctx, endpoint, aud, form, nil)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, &wrapped{"token request", err}
	}
	d := c.dpop
	prove := func(h http.Header) error {
		proof, err := d.tokenProof(http.MethodPost, u)
		if err == nil {
			h.Set(dpopHeader, proof)
		}
		return err
	}
	for retried := false; ; retried = true {
		a, err := c.post(ctx, endpoint, aud, form, prove)
		if a == nil {
			return a, err
		}
		_, gave := d.state().tokenNonces.update(u, a.header)
		if err != nil || retried || !gave || a.status != http.StatusBadRequest || a.errorCode() != "use_dpop_nonce" {
			return a, err
		}
	}
}

// errorCode returns the "error" of a JSON error answer, or "".
func (a *answer) errorCode() string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(trimBOM(a.body), &e)
	return e.Error
}

// tokens reads a token answer to a request made with d (nil: without DPoP):
// the tokens of a successful one, or the *RefreshError for any other.
func (a *answer) tokens(g grant, current Tokens, d *DPoP) (Tokens, error) {
	tr, decodeErr := decodeTokenResponse(a.header.Get("Content-Type"), a.body)
	if tr.Error != "" || a.status < 200 || a.status > 299 {
		secrets := append([]string{current.AccessToken, current.RefreshToken}, a.secrets...)
		e := &RefreshError{
			StatusCode:  a.status,
			ErrorCode:   sanitizeCode(tr.Error, 64, secrets),
			Description: sanitize(tr.ErrorDescription, maxDescription, secrets),
			Err:         rejection(g, a.status, tr.Error),
		}
		return Tokens{}, e
	}
	if decodeErr != nil {
		return Tokens{}, &RefreshError{StatusCode: a.status, Err: decodeErr}
	}
	return tr.tokens(g, current, d, a.at, a.status)
}

// rejection returns what an error answer (status, code) to a request for
// grant g means: ErrSessionExpired for a rejected refresh token,
// ErrClientRejected for a rejected client, or nil for a failure that may
// pass. A client credentials request is made of the configuration alone,
// so every refusal of it (a 4xx with an error code, such as the
// invalid_request that some servers answer to a grant the client may not
// use) is a rejected client, except server_error and temporarily_unavailable,
// and use_dpop_nonce, which asks for a retry.
func rejection(g grant, status int, code string) error {
	switch code {
	case "invalid_grant", "bad_refresh_token": // bad_refresh_token: GitHub's
		if g == grantRefreshToken {
			return ErrSessionExpired
		}
		return ErrClientRejected
	case "invalid_client", "unauthorized_client", "invalid_scope", "invalid_target", "unsupported_grant_type":
		return ErrClientRejected
	case "", "server_error", "temporarily_unavailable", "use_dpop_nonce":
		return nil
	}
	if g == grantClientCredentials && status >= 400 && status <= 499 {
		return ErrClientRejected
	}
	return nil
}

// tokens converts a successful answer to a request for grant g into
// Tokens. A refresh answer without a refresh token keeps current's; a
// client credentials answer never has one (RFC 6749 section 4.4.3 says a
// server should not issue one, and nothing would use it).
func (tr tokenResponse) tokens(g grant, current Tokens, d *DPoP, at time.Time, status int) (Tokens, error) {
	if tr.AccessToken == "" {
		return Tokens{}, &RefreshError{StatusCode: status, Err: errNoAccessToken}
	}
	typ, err := tr.tokenType(d)
	if err != nil {
		return Tokens{}, &RefreshError{StatusCode: status, Err: err}
	}
	t := Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, TokenType: typ}
	switch {
	case g == grantClientCredentials:
		t.RefreshToken = ""
	case t.RefreshToken == "":
		t.RefreshToken = current.RefreshToken
	}
	if tr.ExpiresIn > 0 {
		t.Expiry = at.Add(time.Duration(tr.ExpiresIn) * time.Second).Round(0)
	}
	return t, nil
}

// tokenType returns the type of the tokens of tr, an answer to a request
// made with d (nil: without DPoP): "Bearer" (also when the answer has no
// token_type), or "DPoP" when a proof was sent. A Bearer answer to a DPoP
// request is a downgrade, refused unless d.AllowBearer; a DPoP answer
// without a proof, or another type, cannot be used.
func (tr tokenResponse) tokenType(d *DPoP) (string, error) {
	switch {
	case tr.TokenType == "" || strings.EqualFold(tr.TokenType, "bearer"):
		if d != nil && !d.AllowBearer {
			// The server has spent the refresh token: trying again
			// would present it twice. The session is over.
			return "", fmt.Errorf("%w: %w", ErrSessionExpired, ErrDPoPDowngrade)
		}
		return "Bearer", nil
	case strings.EqualFold(tr.TokenType, "dpop") && d != nil:
		return "DPoP", nil
	case strings.EqualFold(tr.TokenType, "dpop"):
		return "", ErrDPoPKeyMissing
	}
	return "", fmt.Errorf("%w: the token endpoint issued a %q token; only Bearer and DPoP tokens are supported",
		ErrMalformedResponse, sanitize(tr.TokenType, 32, []string{tr.AccessToken, tr.RefreshToken}))
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
	body = trimBOM(body)
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
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("%w: %s", ErrMalformedResponse, describeJSONError(err, len(body)))
	}
	return tr, nil
}
