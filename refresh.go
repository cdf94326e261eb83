package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// A Refresher exchanges the current tokens for new ones.
//
// A Refresher reports that the refresh token was rejected, so that the
// session is over, by returning an error that wraps ErrSessionExpired; the
// Transport then clears its store. Any other error is taken as transient and
// the tokens are kept. A returned Tokens without a RefreshToken keeps the
// current one.
type Refresher interface {
	Refresh(ctx context.Context, current Tokens) (Tokens, error)
}

// RefreshFunc is a function that implements Refresher.
type RefreshFunc func(ctx context.Context, current Tokens) (Tokens, error)

// Refresh calls f(ctx, current).
func (f RefreshFunc) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	return f(ctx, current)
}

// RefreshEvent describes a refresh attempt, for Transport.OnRefresh. It
// holds no token values.
type RefreshEvent struct {
	// Proactive is true for a refresh made ahead of expiry, false for one
	// made because a request was refused.
	Proactive bool

	// OldExpiry and NewExpiry are the access tokens' expiries, zero when
	// unknown.
	OldExpiry, NewExpiry time.Time

	// Duration is how long the attempt took.
	Duration time.Duration

	// Err is nil on success. SessionEnded reports whether it ended the
	// session (the store was cleared).
	Err          error
	SessionEnded bool

	// Adopted is true when the Store's lock showed that another process
	// had already refreshed, and its tokens were used.
	Adopted bool

	// StoreErr, if not nil, is the error of saving (or, when the session
	// ended, clearing) the store. The new tokens are used in memory even
	// when saving them failed.
	StoreErr error
}

// maxRetryAhead is the longest wait before a failed refresh ahead of
// expiry is tried again.
const maxRetryAhead = 5 * time.Second

// refreshAhead refreshes s, which is due or expired at now, before a
// request is sent with it. A transient failure is not fatal while s has
// not expired: the request goes out with s, and further refreshes ahead of
// expiry wait for half the time left (at most maxRetryAhead), so that
// requests do not each wait on a failing endpoint while their token is good.
func (t *Transport) refreshAhead(ctx context.Context, s *session, now time.Time) (*session, error) {
	if t.Refresher == nil {
		return s, nil
	}
	ns, err := t.renew(ctx, s, true)
	switch {
	case err == nil:
		return ns, nil
	case errors.Is(err, ErrSessionExpired), ctx.Err() != nil, !now.Before(s.expiry):
		return nil, err
	}
	wait := min(maxRetryAhead, s.expiry.Sub(now)/2)
	s.retryAt.Store(now.Add(wait).UnixNano())
	return s, nil
}

func (t *Transport) refreshTimeout() time.Duration {
	if t.RefreshTimeout > 0 {
		return t.RefreshTimeout
	}
	return DefaultRefreshTimeout
}

// renew returns the session that replaces stale, refreshing stale unless
// that was done already. All callers share one refresh at a time, which
// runs to completion even when they give up waiting on their contexts.
func (t *Transport) renew(ctx context.Context, stale *session, proactive bool) (*session, error) {
	if cur := t.state.Load(); cur != stale {
		if !cur.expired(t.clock()) {
			return cur, cur.err
		}
		stale = cur // replaced, but expired as well: refresh that
	}
	if t.Refresher == nil {
		return nil, errors.New("autorefresh: Transport.Refresher is nil")
	}
	t.stats.waits.Add(1)
	ch := t.flight.DoChan("refresh", func() (any, error) {
		return t.refresh(ctx, stale, proactive)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*session), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refresh replaces stale with new tokens. It runs in the single flight, so
// at most one refresh per Transport runs at a time.
func (t *Transport) refresh(ctx context.Context, stale *session, proactive bool) (*session, error) {
	if cur := t.state.Load(); cur != stale {
		if !cur.expired(t.clock()) {
			return cur, cur.err
		}
		stale = cur
	}
	ctx = context.WithValue(context.WithoutCancel(ctx), refreshKey{}, true)
	ctx, cancel := context.WithTimeout(ctx, t.refreshTimeout())
	defer cancel()

	start := time.Now()
	ev := RefreshEvent{Proactive: proactive, OldExpiry: stale.expiry}
	if proactive {
		t.stats.proactive.Add(1)
	}
	t.log(ctx, "autorefresh: refreshing tokens", slog.Bool("proactive", proactive), slog.Time("oldExpiry", stale.expiry))
	ns, err := t.exchange(ctx, stale, &ev)
	ev.Duration = time.Since(start)
	ev.Err = err
	if err != nil {
		t.stats.failures.Add(1)
		t.log(ctx, "autorefresh: refresh failed", slog.Duration("took", ev.Duration),
			slog.Bool("sessionEnded", ev.SessionEnded), slog.String("error", err.Error()))
	} else {
		t.stats.refreshes.Add(1)
		ev.NewExpiry = ns.expiry
		t.log(ctx, "autorefresh: refreshed tokens", slog.Duration("took", ev.Duration),
			slog.Bool("adopted", ev.Adopted), slog.Time("newExpiry", ns.expiry))
	}
	if ev.StoreErr != nil {
		t.log(ctx, "autorefresh: store failed", slog.String("error", ev.StoreErr.Error()))
	}
	if t.OnRefresh != nil {
		t.OnRefresh(ev)
	}
	return ns, err
}

// exchange does the work of refresh and records what happened in ev.
func (t *Transport) exchange(ctx context.Context, stale *session, ev *RefreshEvent) (*session, error) {
	current := stale.tokens
	if l, ok := t.Store.(Locker); ok {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return nil, &RefreshError{Err: fmt.Errorf("autorefresh: lock store: %w", err)}
		}
		defer unlock()
		stored, err := t.Store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoTokens):
			// Another holder of the store ended the session.
			ev.SessionEnded = true
			return t.end(stale, &RefreshError{Err: fmt.Errorf("%w: tokens were removed from the store", ErrSessionExpired)})
		case err != nil:
			return nil, &RefreshError{Err: fmt.Errorf("autorefresh: load tokens: %w", err)}
		case stored.AccessToken != stale.tokens.AccessToken:
			// Another holder refreshed. Use its pair, or, when that has
			// expired too, refresh it.
			if ns := t.newSession(stored); !ns.expired(t.clock()) {
				ev.Adopted = true
				return t.replace(stale, ns)
			}
			current = stored
		}
	}

	tok, err := t.Refresher.Refresh(ctx, current)
	if err == nil && tok.AccessToken == "" {
		err = errNoAccessToken
	}
	if err != nil {
		if re := (*RefreshError)(nil); !errors.As(err, &re) {
			err = &RefreshError{Err: err}
		}
		if errors.Is(err, ErrSessionExpired) {
			ev.SessionEnded = true
			ev.StoreErr = t.Store.Clear(ctx)
			return t.end(stale, err)
		}
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = current.RefreshToken
	}
	ev.StoreErr = t.Store.Save(ctx, tok)
	return t.replace(stale, t.newSession(tok))
}

// replace makes s the current session unless stale was replaced meanwhile
// (by SetTokens or ClearTokens), and returns the current session.
func (t *Transport) replace(stale, s *session) (*session, error) {
	if t.state.CompareAndSwap(stale, s) {
		return s, s.err
	}
	cur := t.state.Load()
	return cur, cur.err
}

// end replaces stale with an empty session that remembers why it ended.
func (t *Transport) end(stale *session, err error) (*session, error) {
	s := t.newSession(Tokens{})
	s.err = err
	t.replace(stale, s)
	return s, err
}

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
		return Tokens{}, &RefreshError{Err: fmt.Errorf("autorefresh: refresh request: %w", err)}
	}
	sc := e.Scheme.orDefault()
	req.Header[sc.AccessHeader] = []string{sc.AccessPrefix + current.AccessToken}
	refreshHeader := sc.RefreshHeader
	if refreshHeader == "" {
		refreshHeader = DefaultScheme.RefreshHeader
	}
	req.Header[refreshHeader] = []string{current.RefreshToken}
	req.Header.Set("Accept", "application/json")

	base := e.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return Tokens{}, &RefreshError{Err: err}
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusBadRequest ||
		resp.StatusCode == http.StatusUnauthorized ||
		resp.StatusCode == http.StatusForbidden:
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

// errNoAccessToken is wrapped by errors for responses that hold no access
// token.
var errNoAccessToken = errors.New("autorefresh: response has no access token")

// decodeTokens parses the JSON answer of the header protocol. Its errors
// never quote the body, which may hold tokens.
func decodeTokens(body []byte) (Tokens, error) {
	var t Tokens
	if err := json.Unmarshal(body, &t); err != nil {
		var (
			syn *json.SyntaxError
			typ *json.UnmarshalTypeError
		)
		switch {
		case errors.As(err, &syn):
			return Tokens{}, fmt.Errorf("autorefresh: malformed JSON response at offset %d", syn.Offset)
		case errors.As(err, &typ):
			return Tokens{}, fmt.Errorf("autorefresh: malformed JSON response: %s is a JSON %s", typ.Field, typ.Value)
		}
		return Tokens{}, errors.New("autorefresh: malformed JSON response")
	}
	if t.AccessToken == "" {
		return Tokens{}, errNoAccessToken
	}
	return t, nil
}

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
		return nil, fmt.Errorf("autorefresh: response larger than %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// checkSecureURL refuses URLs that would send what (tokens, credentials) in
// clear text over the network: it must be https, or http to a loopback
// host, unless allowHTTP is set.
func checkSecureURL(raw string, allowHTTP bool, what string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// Not the *url.Error, which quotes raw with any password in it.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("autorefresh: bad URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if allowHTTP || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("autorefresh: refusing to send %s over plain http to %s (set AllowHTTP to permit it)", what, u.Hostname())
	}
	return fmt.Errorf("autorefresh: URL %q is not http or https", u.Redacted())
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

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
// token never reaches the token endpoint. Use it with a Transport whose
// Scheme is BearerScheme.
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
		return Tokens{}, &RefreshError{Err: fmt.Errorf("autorefresh: refresh request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	}

	base := o.Base
	if base == nil {
		base = http.DefaultTransport
	}
	sent := time.Now()
	if o.now != nil {
		sent = o.now()
	}
	resp, err := base.RoundTrip(req)
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
		ErrorCode:   sanitize(tr.Error, 64, secrets),
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
	t := Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken}
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
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("autorefresh: malformed token response: %w", err)
	}
	return tr, nil
}

// sanitize makes s from a token endpoint safe to show: every occurrence of
// the non-empty secrets is redacted, control characters become spaces, and
// the result is cut to at most limit bytes.
func sanitize(s string, limit int, secrets []string) string {
	secrets = slices.DeleteFunc(slices.Clone(secrets), func(sec string) bool { return sec == "" })
	if len(secrets) > 0 {
		// One pass, longest secret first, so that no secret is looked for
		// inside another or inside "[redacted]".
		slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
		pairs := make([]string, 0, 2*len(secrets))
		for _, sec := range secrets {
			pairs = append(pairs, sec, redacted)
		}
		s = strings.NewReplacer(pairs...).Replace(s)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		cut := limit - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
