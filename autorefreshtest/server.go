// Package autorefreshtest provides an in-process auth and API server for tests
// and demos of token-refreshing clients, in the spirit of net/http/httptest.
//
// NewServer starts it on a loopback address. It issues HS256 JWT access
// tokens and opaque single-use refresh tokens, serves a small API that
// rejects expired or revoked access tokens, and can inject faults into its
// refresh endpoints:
//
//	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: 300 * time.Millisecond})
//	defer srv.Close()
//	tokens := srv.Issue("alice")
//	req, _ := http.NewRequest("GET", srv.URL+"/api/echo", nil)
//	req.Header.Set("accessToken", tokens.AccessToken)
//	resp, err := srv.Client().Do(req) // 200 now, 403 once the token expired
//
// # Routes
//
//   - POST /auth/login with JSON {"username","password"} answers 200
//     {"accessToken","refreshToken"}, 401 for wrong credentials and 400 for
//     a malformed body.
//   - GET /auth/refreshtoken with the headers "accessToken" (optional, may be
//     expired) and "refreshToken" answers 200 {"accessToken","refreshToken"}
//     with a new refresh token; the presented one is spent. An unknown,
//     expired, revoked or spent refresh token gets 401.
//   - GET /auth/check answers 200 {"user"} for a valid access token, 403
//     otherwise.
//   - POST /oauth/token is an RFC 6749 token endpoint for the "password" and
//     "refresh_token" grants, with the same rotation rules.
//   - /api/echo (any method) answers 200 {"method","path","body","user"};
//     /api/me answers {"user"}; /api/status/{code} answers code; /api/admin
//     always answers 403 (insufficient_scope). A missing, malformed, forged,
//     expired or revoked access token gets 403, or 401 with a
//     WWW-Authenticate challenge (RFC 6750) when it was sent as
//     "Authorization: Bearer".
//
// Access tokens are read from the "accessToken" header or from
// "Authorization: Bearer". Their "exp" and "iat" claims carry a millisecond
// fraction, so lifetimes below a second work. Code that verifies them with
// golang-jwt (Options.SigningKey) should set jwt.TimePrecision to
// time.Millisecond, or it rounds a sub-second token's times to seconds.
package autorefreshtest

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autorefresh/autorefresh"
)

// DefaultUser and DefaultPassword are the only credentials a Server accepts
// when Options.Users is nil.
const (
	DefaultUser     = "alice"
	DefaultPassword = "wonderland"
)

// Options configure a Server. The zero value is a server with one user
// (DefaultUser), one-minute access tokens, one-day rotating refresh tokens and
// no client authentication.
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

	// ClientID and ClientSecret are the client credentials that POST
	// /oauth/token requires, sent with HTTP Basic or in the form body. If
	// ClientID is empty, no client authentication is required.
	ClientID, ClientSecret string

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

// Server is an auth and API server listening on a loopback address. It is
// safe for concurrent use: every method, including fault injection, may be
// called while it serves requests.
type Server struct {
	// URL is the base URL of the server, "http://127.0.0.1:port", with
	// no trailing slash.
	URL string

	opts   Options
	users  map[string]string
	key    []byte
	now    func() time.Time
	ts     *httptest.Server
	cancel context.CancelFunc
	close  sync.Once

	stats     counters
	latency   atomic.Int64 // time.Duration of SetRefreshLatency
	apiReject atomic.Bool

	mu       sync.Mutex // guards sessions, refresh, nextSID and faults
	sessions map[string]*session
	refresh  map[string]*refreshToken
	nextSID  int
	faults   faultQueue
}

// session is one login: the family of tokens that rotation derives from it.
type session struct {
	user    string
	revoked bool
}

// refreshToken is the state of one issued refresh token.
type refreshToken struct {
	sid    string
	expiry time.Time
	spent  bool
}

// NewServer starts a Server on 127.0.0.1. The caller must Close it.
func NewServer(opts Options) *Server {
	if opts.AccessTTL == 0 {
		opts.AccessTTL = time.Minute
	}
	if opts.RefreshTTL == 0 {
		opts.RefreshTTL = 24 * time.Hour
	}
	s := &Server{
		opts:     opts,
		users:    map[string]string{DefaultUser: DefaultPassword},
		key:      opts.SigningKey,
		now:      opts.Now,
		sessions: make(map[string]*session),
		refresh:  make(map[string]*refreshToken),
	}
	if opts.Users != nil {
		s.users = make(map[string]string, len(opts.Users))
		for u, p := range opts.Users {
			s.users[u] = p
		}
	}
	if s.key == nil {
		s.key = []byte(randomString(32))
	}
	if s.now == nil {
		s.now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.ts = httptest.NewUnstartedServer(s.routes())
	s.ts.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	s.ts.Start()
	s.URL = s.ts.URL
	return s
}

// Close shuts the server down and returns once every handler has returned.
// Requests in flight are cut off, including those waiting in
// SetRefreshLatency, so Close does not hang. Calling Close again does
// nothing.
func (s *Server) Close() {
	s.close.Do(func() {
		s.cancel()
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// Client returns an HTTP client for the server. Its idle connections are
// closed by Close.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Issue starts a session for user, who need not be in Options.Users, and
// returns its tokens as a login would, without any HTTP exchange and
// without counting a login. Expiry is set to the access token's expiry.
func (s *Server) Issue(user string) autorefresh.Tokens {
	return s.IssueTTL(user, s.opts.AccessTTL)
}

// IssueTTL is like Issue with an access-token lifetime of accessTTL, which
// may be zero or negative to start a session whose access token has already
// expired while its refresh token is valid.
func (s *Server) IssueTTL(user string, accessTTL time.Duration) autorefresh.Tokens {
	rt := randomString(32)
	now := s.now()
	s.mu.Lock()
	s.nextSID++
	sid := fmt.Sprintf("s%d", s.nextSID)
	s.sessions[sid] = &session{user: user}
	s.refresh[rt] = &refreshToken{sid: sid, expiry: now.Add(s.opts.RefreshTTL)}
	s.mu.Unlock()
	at, exp := s.mint(user, sid, now, accessTTL)
	return autorefresh.Tokens{AccessToken: at, RefreshToken: rt, Expiry: exp}
}

// mint returns a signed access token of session sid and its expiry.
func (s *Server) mint(user, sid string, now time.Time, ttl time.Duration) (string, time.Time) {
	c := &claims{
		Issuer:    issuer,
		Subject:   user,
		Session:   sid,
		ID:        randomString(12),
		IssuedAt:  numericDate{time.UnixMilli(now.UnixMilli())},
		ExpiresAt: numericDate{time.UnixMilli(now.Add(ttl).UnixMilli())},
	}
	return s.sign(c), c.ExpiresAt.Time
}

// login checks user's password.
func (s *Server) login(user, password string) bool {
	want, ok := s.users[user]
	return ok && subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
}

// grant is the outcome of a successful refresh.
type grant struct {
	tokens  autorefresh.Tokens
	sid     string
	rotated bool // tokens.RefreshToken is new
}

// rotate redeems the refresh token rt: it returns a new access token and,
// unless Options.NoRotation is set, a new refresh token, and marks rt spent.
// The error is one of the errRefresh values.
func (s *Server) rotate(rt string) (grant, error) {
	if rt == "" {
		s.stats.refreshRejections.Add(1)
		return grant{}, errNoRefresh
	}
	next := randomString(32)
	now := s.now()
	var err error
	var g grant
	revoked := false

	s.mu.Lock()
	e := s.refresh[rt]
	var sess *session
	if e != nil {
		sess = s.sessions[e.sid]
	}
	switch {
	case e == nil:
		err = errRefreshUnknown
	case e.spent:
		err = errRefreshSpent
		s.stats.reuseRejections.Add(1)
		if s.opts.RevokeOnReuse && !sess.revoked {
			sess.revoked, revoked = true, true
		}
	case sess.revoked:
		err = errRefreshRevoked
	case !now.Before(e.expiry):
		err = errRefreshExpired
	default:
		g = grant{sid: e.sid, tokens: autorefresh.Tokens{RefreshToken: rt}}
		if !s.opts.NoRotation {
			e.spent = true
			s.refresh[next] = &refreshToken{sid: e.sid, expiry: now.Add(s.opts.RefreshTTL)}
			g.tokens.RefreshToken, g.rotated = next, true
		}
	}
	s.mu.Unlock()

	if revoked {
		s.stats.revocations.Add(1)
		s.logf("autorefreshtest: session %s revoked: refresh token reused", e.sid)
	}
	if err != nil {
		s.stats.refreshRejections.Add(1)
		return grant{}, err
	}
	g.tokens.AccessToken, g.tokens.Expiry = s.mint(sess.user, g.sid, now, s.opts.AccessTTL)
	s.stats.refreshes.Add(1)
	return g, nil
}

// Revoke ends the session that token belongs to, as a server-side logout:
// its refresh tokens stop working and its access tokens are rejected. token
// is any access or refresh token the session issued, current or not, even
// expired. Revoke reports whether token identified a session.
func (s *Server) Revoke(token string) bool {
	var sid string
	s.mu.Lock()
	if e := s.refresh[token]; e != nil {
		sid = e.sid
	}
	s.mu.Unlock()
	if sid == "" {
		if c, err := s.parse(token, false); err == nil {
			sid = c.Session
		}
	}
	n := s.revokeWhere(func(id string, _ *session) bool { return id == sid })
	s.mu.Lock()
	defer s.mu.Unlock()
	return n > 0 || s.sessions[sid] != nil
}

// RevokeUser revokes every session of user and returns how many were live.
func (s *Server) RevokeUser(user string) int {
	return s.revokeWhere(func(_ string, sess *session) bool { return sess.user == user })
}

// RevokeAll revokes every session and returns how many were live.
func (s *Server) RevokeAll() int {
	return s.revokeWhere(func(string, *session) bool { return true })
}

// revokeWhere revokes the live sessions that match and returns their number.
func (s *Server) revokeWhere(match func(sid string, sess *session) bool) int {
	n := 0
	s.mu.Lock()
	for sid, sess := range s.sessions {
		if !sess.revoked && match(sid, sess) {
			sess.revoked = true
			n++
		}
	}
	s.mu.Unlock()
	s.stats.revocations.Add(int64(n))
	if n > 0 {
		s.logf("autorefreshtest: %d session(s) revoked", n)
	}
	return n
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}
