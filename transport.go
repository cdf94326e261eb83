package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults for the Transport's zero-valued fields.
const (
	DefaultEarlyRefresh    = 30 * time.Second
	DefaultRefreshTimeout  = 30 * time.Second
	DefaultMaxReplayBody   = 1 << 20
	DefaultMaxReplayMemory = 64 << 20
)

// maxDrain is how much of a rejected response body is read before it is
// closed, so that its connection can be reused.
const maxDrain = 4 << 10

// Transport is an http.RoundTripper that authenticates requests with the
// tokens of a TokenStore and keeps them fresh.
//
// It sends every request with the current tokens. When a response says the
// access token was refused (see ShouldRefresh), it refreshes the tokens,
// saves them and sends the request once more with the new ones. Shortly
// before the access token expires, it refreshes first. Concurrent requests
// share a single refresh, so a single-use refresh token is never spent
// twice by one Transport; a Store that implements Locker extends that to
// every process sharing the store.
//
// The tokens are loaded from the Store on first use and then kept in
// memory: a request with a good token takes no lock and does no I/O.
// Requests go out without tokens while none are stored (before logging in,
// or after the session ended). When such a request is refused, the Store is
// read again, in case another process has logged in meanwhile; if it still
// holds nothing, the refusal is returned as is. A refused request whose
// tokens were cleared (Logout) while it waited for the refresh fails with
// ErrNoTokens.
//
// A request whose access token is due for an early refresh but still good
// waits for that refresh at most a second (and at most half of what is left
// of its context's deadline), then goes out with the token it has.
//
// A Transport is safe for concurrent use. Its fields must not be changed
// after its first use. Store must be set.
type Transport struct {
	// Base sends the requests. If nil, http.DefaultTransport is used.
	Base http.RoundTripper

	// Store holds the tokens. It must not be nil.
	Store TokenStore

	// Refresher exchanges the tokens for new ones, for example an
	// *Endpoint. If nil, tokens are never refreshed and rejections are
	// returned as is.
	Refresher Refresher

	// Scheme says which headers carry the tokens. The zero value is
	// BearerScheme when Refresher is an *OAuth2, so that the refresh token
	// only goes to the token endpoint, and DefaultScheme otherwise. A
	// Refresher that wraps an *OAuth2 is not recognised: set BearerScheme
	// yourself then.
	Scheme HeaderScheme

	// ShouldRefresh reports whether a response means the access token was
	// refused, so that the Transport refreshes and replays the request. It
	// must not read the response body. If nil, BearerShouldRefresh is used
	// when Scheme sends the Authorization header (BearerScheme), and
	// DefaultShouldRefresh otherwise; the table of their reactions is in
	// DefaultShouldRefresh's doc.
	ShouldRefresh func(*http.Response) bool

	// EarlyRefresh is how long before the access token expires a request
	// refreshes it first. It is capped at half the token's lifetime. If
	// zero, DefaultEarlyRefresh is used; if negative, tokens are only
	// refreshed when a request is refused (and once they have expired).
	EarlyRefresh time.Duration

	// RefreshTimeout bounds each refresh, which runs on its own and is
	// not cancelled when the request that started it is. If zero,
	// DefaultRefreshTimeout is used.
	RefreshTimeout time.Duration

	// MaxReplayBody is how much of a request body without GetBody is kept
	// so that it can be sent again; a request with GetBody set needs no
	// buffer. If zero, DefaultMaxReplayBody is used; if negative, bodies
	// without GetBody are not buffered. When a request must be replayed
	// and its first attempt read more of its body than that, it fails with
	// ErrBodyNotReplayable.
	MaxReplayBody int64

	// MaxReplayMemory bounds the memory that all the replay buffers of
	// requests in flight may hold together. A request whose body would
	// push the total past it is sent without a replay buffer and, if it is
	// refused, fails with ErrBodyNotReplayable. If zero,
	// DefaultMaxReplayMemory is used; if negative, there is no bound.
	MaxReplayMemory int64

	// Hosts, if not empty, lists the only hosts that get the tokens, as
	// "host" (any port) or "host:port". Whatever the list, a request that
	// follows a redirect gets the tokens only on the same scheme (or an
	// upgrade to https), host and port as the request that started it.
	// Without a list, every request that t sends carries the tokens, over
	// plain http too: list your API's hosts when the client may also reach
	// others.
	Hosts []string

	// AllowHTTP permits Login and Resume to use plain http:// URLs of hosts
	// that are not loopback addresses. Credentials and tokens then cross
	// the network unencrypted.
	AllowHTTP bool

	// Logger, if not nil, gets debug lines on refreshes and replays. Token
	// values are never logged.
	Logger *slog.Logger

	// OnRefresh, if not nil, is called after every refresh attempt from
	// the goroutine that ran it, before the requests waiting on the
	// refresh go on. It must not block for long, and must not wait for a
	// request sent through this Transport: a refused one would wait on the
	// very refresh that is calling the hook. Send such requests from a
	// goroutine of their own.
	OnRefresh func(RefreshEvent)

	// OnReplay, if not nil, is called with the caller's request before it
	// is sent again with new tokens. It must not modify the request.
	OnReplay func(*http.Request)

	now    func() time.Time // for tests; nil: time.Now
	state  atomic.Pointer[session]
	flight singleflight.Group
	stats  stats

	// writeMu serializes the changes of state that write the store
	// (refresh results, SetTokens, ClearTokens), so that the store and
	// state agree. Requests never take it.
	writeMu sync.Mutex
}

var _ http.RoundTripper = (*Transport)(nil)

// session is an immutable snapshot of the tokens in use, with the header
// values ready to be set on requests.
type session struct {
	tokens    Tokens
	expiry    time.Time // zero: unknown
	refreshAt time.Time // zero: never ahead of time

	// Header names and values; a nil value slice is not sent.
	accessName, accessCanon   string
	access                    []string
	refreshName, refreshCanon string
	refresh                   []string

	// err is set on the session that replaced one whose refresh token
	// was rejected: requests sent with the old tokens fail with it.
	err error

	// retryAt, in Unix nanoseconds, holds back the next refresh ahead of
	// expiry after one failed; zero: no failure.
	retryAt atomic.Int64
}

// expired reports whether s holds tokens that expired at now (as far as is
// known).
func (s *session) expired(now time.Time) bool {
	return s.err == nil && s.hasTokens() && !s.expiry.IsZero() && !now.Before(s.expiry)
}

// retryDue reports whether a refresh ahead of expiry may be tried at now:
// the last one did not fail, or its back-off has passed, or the token
// expired.
func (s *session) retryDue(now time.Time) bool {
	r := s.retryAt.Load()
	return r == 0 || now.UnixNano() >= r || !now.Before(s.expiry)
}

func (s *session) hasTokens() bool { return s.access != nil || s.refresh != nil }

func (t *Transport) newSession(tok Tokens) *session { return t.makeSession(tok, false) }

// makeSession returns the session for tok. A fresh token, just issued by a
// refresh, that is already due for refreshing tells that the local clock
// is ahead of the issuer's (or that the answer took most of its life to
// arrive): its expiry is then taken as unknown, so that it is refreshed when
// refused, rather than on every request.
func (t *Transport) makeSession(tok Tokens, fresh bool) *session {
	sc := t.scheme()
	s := &session{
		tokens:       tok,
		accessName:   sc.AccessHeader,
		accessCanon:  textproto.CanonicalMIMEHeaderKey(sc.AccessHeader),
		refreshName:  sc.RefreshHeader,
		refreshCanon: textproto.CanonicalMIMEHeaderKey(sc.RefreshHeader),
	}
	if tok.AccessToken != "" {
		s.access = []string{sc.AccessPrefix + tok.AccessToken}
	}
	if sc.RefreshHeader != "" && tok.RefreshToken != "" {
		s.refresh = []string{tok.RefreshToken}
	}
	now := t.clock()
	exp, iat := tok.Expiry, time.Time{}
	if exp.IsZero() {
		exp, iat = jwtTimes(tok.AccessToken)
	}
	s.expiry = exp
	if exp.IsZero() {
		return s
	}
	if iat.IsZero() || iat.After(now) {
		iat = now
	}
	window := t.EarlyRefresh
	if window == 0 {
		window = DefaultEarlyRefresh
	}
	window = max(0, min(window, exp.Sub(iat)/2))
	s.refreshAt = exp.Add(-window)
	if fresh && !now.Before(s.refreshAt) {
		s.expiry, s.refreshAt = time.Time{}, time.Time{}
	}
	return s
}

// clock returns the wall-clock time, without a monotonic reading, so that
// it compares correctly with expiries after the machine slept.
func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now().Round(0)
	}
	return time.Now().Round(0)
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// refreshKey marks the context of a refresh, so that a refresh request that
// comes back through the Transport is passed through untouched.
type refreshKey struct{}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.stats.requests.Add(1)
	ctx := req.Context()
	if ctx.Value(refreshKey{}) != nil || !t.sendsTokens(req) {
		return t.base().RoundTrip(req)
	}
	s, err := t.session(ctx)
	if err == nil && !s.refreshAt.IsZero() {
		if now := t.clock(); !now.Before(s.refreshAt) && s.retryDue(now) {
			s, err = t.refreshAhead(ctx, s, now)
		}
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if s.hasTokens() && t.Refresher == nil {
		return t.base().RoundTrip(t.authorize(req, s, req.Body))
	}

	// Keep what is needed to send the body again.
	body, rec := req.Body, (*bodyRecorder)(nil)
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil && t.MaxReplayBody >= 0 {
		limit := t.MaxReplayBody
		if limit == 0 {
			limit = DefaultMaxReplayBody
		}
		rec = newBodyRecorder(req.Body, limit, req.ContentLength)
		body = rec
	}
	resp, err := t.base().RoundTrip(t.authorize(req, s, body))
	if err != nil || !t.shouldRefresh(resp) {
		rec.release()
		return resp, err
	}

	// The tokens were refused: send the request again with new ones.
	ns, err := t.replacement(ctx, s, resp)
	if ns == nil && err == nil {
		rec.release()
		return resp, nil
	}
	if err != nil {
		rec.release()
		return nil, err
	}
	replayBody, err := t.replayBody(ctx, req, rec)
	if err != nil {
		return nil, err
	}
	t.stats.replays.Add(1)
	if t.OnReplay != nil {
		t.OnReplay(req)
	}
	if l := t.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelDebug, "autorefresh: replaying request",
			slog.String("method", req.Method), slog.String("host", req.URL.Host), slog.String("path", req.URL.Path))
	}
	return t.base().RoundTrip(t.authorize(req, ns, replayBody))
}

// replacement returns the session to send again a request that was refused
// with s, and closes the refused response: a refreshed session or, when s
// had no tokens, the tokens that another holder of the store (a login in
// another process) saved since. It returns nil and no error when there is
// none, and then leaves the refused response to the caller.
func (t *Transport) replacement(ctx context.Context, s *session, refused *http.Response) (*session, error) {
	if !s.hasTokens() {
		ns, err := t.load(ctx, s)
		if err != nil || !ns.hasTokens() {
			return nil, nil
		}
		drainClose(refused.Body)
		return ns, nil
	}
	drainClose(refused.Body)
	ns, err := t.renew(ctx, s, false, 0)
	if err == nil && !ns.hasTokens() {
		err = ErrNoTokens // logged out meanwhile
	}
	return ns, err
}

// session returns the current session, loading the tokens from the store
// on first use.
func (t *Transport) session(ctx context.Context) (*session, error) {
	if s := t.state.Load(); s != nil {
		return s, nil
	}
	return t.load(ctx, nil)
}

// load returns the current session, loading it from the store if it is
// still stale: nil before first use, or an empty session whose refused
// request hopes that the store has tokens by now.
func (t *Transport) load(ctx context.Context, stale *session) (*session, error) {
	if t.Store == nil {
		return nil, errors.New("autorefresh: Transport.Store is nil")
	}
	onPanic := func(p any) error { return fmt.Errorf("autorefresh: Store.Load panicked (%T)", p) }
	s, err := t.await(ctx, "load", 0, onPanic, func() (*session, error) {
		// Under writeMu, so that a load never brings back tokens that
		// SetTokens or ClearTokens is replacing.
		t.writeMu.Lock()
		defer t.writeMu.Unlock()
		if s := t.state.Load(); s != stale {
			return s, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.refreshTimeout())
		defer cancel()
		tok, err := t.Store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoTokens) && stale != nil:
			return stale, nil
		case errors.Is(err, ErrNoTokens):
			tok = Tokens{}
		case err != nil:
			return nil, fmt.Errorf("autorefresh: load tokens: %w", err)
		}
		s := t.newSession(tok)
		t.state.Store(s)
		return s, nil
	})
	if errors.Is(err, errGaveUp) {
		err = fmt.Errorf("autorefresh: loading the tokens did not end within %v", t.refreshTimeout())
	}
	return s, err
}

// Tokens returns the tokens in use, loading them from the store on first
// use. It returns ErrNoTokens when there are none.
func (t *Transport) Tokens(ctx context.Context) (Tokens, error) {
	s, err := t.session(ctx)
	if err != nil {
		return Tokens{}, err
	}
	if !s.hasTokens() {
		return Tokens{}, ErrNoTokens
	}
	return s.tokens, nil
}

// SetTokens saves tok to the store and sends it from now on, for example
// after logging in. A refresh that is under way when SetTokens is called
// does not overwrite tok, in the store or in memory. When the store is a
// Locker, SetTokens takes its lock, so that no other process is refreshing
// the old tokens meanwhile. Tokens with neither an access nor a refresh
// token are an error; use ClearTokens (or Logout) to log out.
func (t *Transport) SetTokens(ctx context.Context, tok Tokens) error {
	if tok.IsZero() {
		return errors.New("autorefresh: SetTokens with empty tokens")
	}
	return t.write(ctx, t.newSession(tok), func(ctx context.Context) error { return t.Store.Save(ctx, tok) })
}

// ClearTokens removes the tokens from memory and from the store: requests
// go out without tokens until SetTokens is called, or until another holder
// of the store saves tokens. Like SetTokens, it is not undone by a refresh
// under way, and takes the store's lock when it is a Locker.
func (t *Transport) ClearTokens(ctx context.Context) error {
	return t.write(ctx, t.newSession(Tokens{}), t.Store.Clear)
}

// write makes s the current session and writes the store with w, holding
// the store's lock when it is a Locker.
func (t *Transport) write(ctx context.Context, s *session, w func(context.Context) error) error {
	if t.Store == nil {
		return errors.New("autorefresh: Transport.Store is nil")
	}
	// A Refresher that logs in again runs under the lock already.
	if l, ok := t.Store.(Locker); ok && ctx.Value(refreshKey{}) == nil {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return fmt.Errorf("autorefresh: lock store: %w", err)
		}
		defer unlock()
	}
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.state.Store(s)
	return w(ctx)
}

// commit makes s the current session in place of stale, after writing the
// store with w, and returns it with w's error. If stale was replaced
// meanwhile (by SetTokens or ClearTokens), it writes nothing and returns
// the current session: a refresh never undoes a login or a logout.
func (t *Transport) commit(stale, s *session, w func() error) (*session, error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	if cur := t.state.Load(); cur != stale {
		return cur, nil
	}
	err := w()
	t.state.Store(s)
	return s, err
}

func (t *Transport) log(ctx context.Context, msg string, attrs ...slog.Attr) {
	if t.Logger != nil {
		t.Logger.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
	}
}

// authorize returns a shallow copy of req with the session's headers and
// the given body. The caller's request and its header map are not
// modified; the header value slices are shared, as nothing modifies them.
func (t *Transport) authorize(req *http.Request, s *session, body io.ReadCloser) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Body = body
	h := make(http.Header, len(req.Header)+2)
	for k, v := range req.Header {
		h[k] = v
	}
	if s.access != nil {
		delete(h, s.accessCanon)
		h[s.accessName] = s.access
	}
	if s.refresh != nil {
		delete(h, s.refreshCanon)
		h[s.refreshName] = s.refresh
	}
	r.Header = h
	return r
}

// replayBody returns the body for sending req again.
func (t *Transport) replayBody(ctx context.Context, req *http.Request, rec *bodyRecorder) (io.ReadCloser, error) {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return req.Body, nil
	case req.GetBody != nil:
		b, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("autorefresh: replay body: %w", err)
		}
		return b, nil
	case rec == nil:
		return nil, fmt.Errorf("%w: it has no GetBody and body buffering is off", ErrBodyNotReplayable)
	}
	return rec.replay(ctx, t.refreshTimeout())
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func drainClose(body io.ReadCloser) {
	io.CopyN(io.Discard, body, maxDrain)
	body.Close()
}

// NewClient returns a copy of base (http.DefaultClient if nil) whose
// Transport is t. If t.Base is nil and base has a Transport, t.Base is set
// to it, so that t sends its requests the way base did: call NewClient
// before t is used. base itself is not modified.
func NewClient(base *http.Client, t *Transport) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	if t == nil {
		t = new(Transport)
	}
	if t.Base == nil && base.Transport != nil && base.Transport != t {
		t.Base = base.Transport
	}
	c.Transport = t
	return &c
}
