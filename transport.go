package autorefresh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the Transport's zero-valued fields.
const (
	// DefaultEarlyRefresh caps the share of a token's lifetime that the
	// early-refresh window takes when Transport.EarlyRefresh is zero (see
	// its doc for how that window is sized).
	DefaultEarlyRefresh = 30 * time.Second

	// DefaultRefreshTimeout is the Transport.RefreshTimeout used when it is
	// zero.
	DefaultRefreshTimeout = 30 * time.Second

	// DefaultMaxReplayBody is the Transport.MaxReplayBody used when it is
	// zero: 1 MiB.
	DefaultMaxReplayBody = 1 << 20

	// DefaultMaxReplayMemory is the Transport.MaxReplayMemory used when it
	// is zero: 64 MiB.
	DefaultMaxReplayMemory = 64 << 20
)

// Transport is an http.RoundTripper that authenticates requests with the
// tokens of a TokenStore and keeps them fresh.
//
// It sends every request with the current tokens. When a response says the
// access token was refused (see ShouldRefresh), it refreshes the tokens,
// saves them and sends the request once more with the new ones. Shortly
// before the access token expires it refreshes in the background, while
// requests go on with the token they have: no request waits for a refresh
// while its token is good. Concurrent requests share a single refresh, so a
// single-use refresh token is never spent twice by one Transport; a Store
// that implements Locker extends that to every process sharing the store.
//
// The tokens are loaded from the Store on first use and then kept in
// memory: a request with a good token takes no lock and does no I/O.
// Requests go out without tokens while none are stored (before logging in,
// or after the session ended), unless the Refresher is a Starter, which
// obtains the first tokens. When such a request is refused, the Store is
// read again, in case another process has logged in meanwhile; if it still
// holds nothing, the refusal is returned as is. A refused request whose
// tokens were dropped (Logout) while it waited for the refresh fails with
// ErrNoTokens.
//
// How the token state moves from one generation to the next, and who may
// move it, is described in the package documentation ("How it works").
//
// A Transport is safe for concurrent use. Its fields must not be changed
// after its first use. Store must be set; the zero Transport returns
// ErrNoStore from its methods.
type Transport struct {
	// Base sends the requests. If nil, http.DefaultTransport is used.
	Base http.RoundTripper

	// Store holds the tokens. It must not be nil: a Transport without a
	// Store returns ErrNoStore.
	Store TokenStore

	// Refresher exchanges the tokens for new ones, for example an
	// *Endpoint. If nil, tokens are never refreshed and rejections are
	// returned as is.
	Refresher Refresher

	// Scheme says which headers carry the tokens. If it is the zero
	// HeaderScheme, the tokens say: tokens whose TokenType is "Bearer" (as
	// OAuth2 returns them) are sent with BearerScheme; tokens without a
	// type are sent the way the Refresher declares (see Refresher: OAuth2
	// declares BearerScheme, so that the refresh token only goes to the
	// token endpoint), and with DefaultScheme when it declares nothing.
	Scheme HeaderScheme

	// ShouldRefresh reports whether a response means the access token was
	// refused, so that the Transport refreshes and replays the request. It
	// must not read the response body. If nil, BearerShouldRefresh is used
	// when the scheme in use sends the Authorization header (BearerScheme),
	// and DefaultShouldRefresh otherwise; the table of their reactions is
	// in DefaultShouldRefresh's doc.
	ShouldRefresh func(*http.Response) bool

	// EarlyRefresh is how long before the access token expires it is
	// refreshed, in the background, while requests go on with it. It is
	// capped at half the token's lifetime, so that a token is renewed once
	// in its life. If zero, the window is sized to the token and to the
	// refresh: a tenth of the token's lifetime, at most
	// DefaultEarlyRefresh, but at least one and a half times the duration
	// of the last refresh, so that the refresh ends before the token
	// expires (a quarter of the lifetime before any refresh was measured).
	// If negative, tokens are only refreshed when a request is refused, or
	// before a request once they have expired.
	EarlyRefresh time.Duration

	// RefreshTimeout bounds each refresh, which runs on its own and is
	// not cancelled when the request that started it is. The save of the
	// new pair gets a RefreshTimeout of its own after it, since it may
	// hold the only copy of a rotated refresh token. If zero,
	// DefaultRefreshTimeout is used.
	RefreshTimeout time.Duration

	// MaxReplayBody is how much of a request body without GetBody is kept
	// so that it can be sent again; a request with GetBody set needs no
	// buffer. If zero, DefaultMaxReplayBody is used; if negative, bodies
	// without GetBody are not buffered. When a request must be replayed
	// and its first attempt read more of its body than that, it fails with
	// ErrBodyNotReplayable.
	//
	// MaxReplayMemory bounds what the replay buffers of all the requests in
	// flight hold together. A request whose body would push the total past
	// it stops being recorded (its bytes so far are dropped) and, if it is
	// refused, fails with ErrBodyNotReplayable. If zero,
	// DefaultMaxReplayMemory is used; if negative, there is no bound.
	MaxReplayBody, MaxReplayMemory int64

	// Hosts, if not empty, lists the only origins that get the tokens.
	// An entry is one of:
	//
	//	"api.example.com"              the host, any scheme, any port
	//	"api.example.com:8443"         the host on that port, any scheme
	//	"https://api.example.com"      the host over https on port 443 only
	//	"https://api.example.com:8443" the host over https on port 8443 only
	//	"http://localhost:8080"        the host over http on port 8080 only
	//
	// Host names compare without regard to case; IPv6 addresses are
	// written "::1" or "[::1]", "[::1]:8080" with a port. A URL entry may
	// end with "/" but have no other path, no query, fragment or user
	// information, and its scheme must be http or https. Any other entry
	// makes every request fail with an error wrapping ErrInvalidHosts,
	// without sending anything.
	//
	// Whatever the list, a request that follows a redirect gets the tokens
	// only on the same scheme (or an upgrade from http to https on the
	// default ports), host and port as the request that started the
	// chain, as t sent it: what the Base puts in a response's Request
	// does not change it. Without a list, every request that t sends
	// carries the tokens, over plain http too: list your API's origins
	// when the client may also reach others.
	Hosts []string

	// DPoP, if not nil, makes the tokens sender-constrained (RFC 9449): see
	// DPoP. The Refresher (OAuth2, ClientCredentials) uses it for its token
	// requests when it has no DPoP of its own. If nil, the DPoP of the
	// Refresher is used, if it has one. Requests with tokens of type "DPoP"
	// need one.
	DPoP *DPoP

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

	now func() time.Time // for tests; nil: time.Now

	once  sync.Once    // sets up m and hosts on first use
	m     tokenManager // owns the tokens
	hosts hostRules    // Hosts, parsed
	stats stats

	// replayMemory is what the replay buffers of the requests in flight
	// hold together, in bytes.
	replayMemory atomic.Int64
}

var _ http.RoundTripper = (*Transport)(nil)

// init sets up what the Transport needs from its fields, on first use.
func (t *Transport) init() {
	t.once.Do(func() {
		t.m.t = t
		t.hosts = parseHosts(t.Hosts)
	})
}

// manager returns the owner of t's tokens.
func (t *Transport) manager() *tokenManager {
	t.init()
	return &t.m
}

// clock returns the wall-clock time, without a monotonic reading, so that
// it compares correctly with expiries after the machine slept.
func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now().Round(0)
	}
	return time.Now().Round(0)
}

// base returns the RoundTripper that sends t's requests.
func (t *Transport) base() http.RoundTripper { return baseOr(t.Base) }

// baseOr returns rt, or http.DefaultTransport when rt is nil.
func baseOr(rt http.RoundTripper) http.RoundTripper {
	if rt != nil {
		return rt
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.stats.requests.Add(1)
	if req.Context().Value(refreshKey{}) != nil {
		return t.base().RoundTrip(req) // a refresh request that came back through t
	}
	ok, err := t.sendsTokens(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if !ok {
		return t.send(req)
	}
	resp, _, err := t.roundTrip(req)
	return resp, err
}

// roundTrip sends req with the current tokens. When the server refuses
// them it sends req once more with new ones, and when a DPoP server asks for
// a nonce, once more with it: at most one of each, in whichever order they
// come. It returns the state of the last attempt.
func (t *Transport) roundTrip(req *http.Request) (*http.Response, *state, error) {
	ctx := req.Context()
	s, err := t.manager().ready(ctx)
	if err != nil {
		closeBody(req)
		return nil, nil, err
	}
	bodies, body := t.newReplays(req)
	defer bodies.done()
	var nonced, refreshed bool
	for {
		resp, wantsNonce, err := t.attempt(req, s, body)
		if err != nil {
			return nil, s, err
		}
		refused := t.refuses(s, resp)
		replay := false
		switch {
		case wantsNonce && !nonced:
			nonced = true
			t.stats.nonceRetries.Add(1)
		case refused && !refreshed:
			refreshed = true
			ns, err := t.manager().refused(ctx, s)
			if ns == nil {
				return refusal(resp, err), s, err
			}
			s, replay = ns, true
		default:
			if !refused && !s.proven.Load() {
				s.proven.Store(true)
			}
			return resp, s, nil
		}
		discard(resp.Body)
		if body, err = bodies.next(ctx); err != nil {
			return nil, s, err
		}
		if replay {
			t.noteReplay(req)
		}
	}
}

// refusal returns resp, a refused answer, to the caller, unless err says
// why it cannot be: then it discards it.
func refusal(resp *http.Response, err error) *http.Response {
	if err != nil {
		discard(resp.Body)
		return nil
	}
	return resp
}

// noteReplay counts, reports and logs the replay of req.
func (t *Transport) noteReplay(req *http.Request) {
	t.stats.replays.Add(1)
	if t.OnReplay != nil {
		t.OnReplay(req)
	}
	t.log(req.Context(), "autorefresh: replaying request",
		slog.String("method", req.Method), slog.String("host", req.URL.Host), slog.String("path", req.URL.Path))
}

// Tokens returns the tokens in use, loading them from the store on first
// use. It returns ErrNoTokens when there are none.
func (t *Transport) Tokens(ctx context.Context) (Tokens, error) {
	s, err := t.manager().current(ctx)
	if err != nil {
		return Tokens{}, err
	}
	if !s.hasTokens() {
		return Tokens{}, ErrNoTokens
	}
	return s.tokens, nil
}

// SetTokens makes tok the tokens that requests carry from now on, and saves
// it to the store, for example after logging in. A refresh under way when
// SetTokens is called never overwrites tok, in the store or in memory. When
// the store is a Locker, SetTokens takes its lock for the save, so that no
// other process is refreshing the old tokens meanwhile. tok must hold an
// access or a refresh token (use Logout to drop them), and each must be a
// valid header value (else the error wraps ErrInvalidToken). When the save
// fails, tok is used all the same, the error is returned, and the save is
// tried again before the next refresh.
func (t *Transport) SetTokens(ctx context.Context, tok Tokens) error {
	if tok.IsZero() {
		return fmt.Errorf("%w: SetTokens needs an access or a refresh token (use Logout to drop them)", ErrNoTokens)
	}
	if err := tok.validate(); err != nil {
		return err
	}
	return t.manager().set(ctx, tok)
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

// String describes t by the types of its Base, Store and Refresher and its
// Scheme. It shows no token, secret or state: fmt and slog print a
// Transport through it, so that printing one in use is safe.
func (t *Transport) String() string {
	if t == nil {
		return "autorefresh.Transport(nil)"
	}
	sc := "by token type"
	if t.Scheme != (HeaderScheme{}) {
		sc = fmt.Sprintf("%q", t.Scheme.AccessHeader)
	}
	return fmt.Sprintf("autorefresh.Transport{Base: %T, Store: %T, Refresher: %T, Scheme: %s}", t.Base, t.Store, t.Refresher, sc)
}

// GoString is like String.
func (t *Transport) GoString() string { return t.String() }

// Format implements fmt.Formatter: every verb prints String.
func (t *Transport) Format(f fmt.State, verb rune) { io.WriteString(f, t.String()) }

// LogValue implements slog.LogValuer: a Transport logs as String.
func (t *Transport) LogValue() slog.Value { return slog.StringValue(t.String()) }

// MarshalJSON encodes t as the JSON string of String, so that a struct
// that holds it, encoded or logged as JSON (slog's JSONHandler), shows no
// secret.
func (t *Transport) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }
