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
//   - POST /oauth/token is an RFC 6749 token endpoint for the "password",
//     "refresh_token" and "client_credentials" grants, with the same
//     rotation rules, client authentication (Client) and DPoP (RFC 9449).
//   - POST /oauth/revoke is an RFC 7009 revocation endpoint.
//   - GET /.well-known/oauth-authorization-server (RFC 8414) and GET
//     /.well-known/openid-configuration (OpenID Connect Discovery) serve
//     the server's metadata.
//   - /api/echo (any method) answers 200 {"method","path","body","user"};
//     /api/me answers {"user"}; /api/status/{code} answers code; /api/admin
//     always answers 403 (insufficient_scope). A missing, malformed, forged,
//     expired or revoked access token gets 403, or 401 with a
//     WWW-Authenticate challenge (RFC 6750, RFC 9449) when it was sent as
//     "Authorization: Bearer" or "Authorization: DPoP".
//
// README.md in this package's folder describes every route, knob and
// counter in detail.
//
// Access tokens are read from the "accessToken" header or from
// "Authorization: Bearer" or "Authorization: DPoP". Their "exp" and "iat" claims carry a millisecond
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
	"strings"
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

	// ClientID and ClientSecret register a client, as a Client with this
	// ID and Secret in Clients would.
	ClientID, ClientSecret string

	// Clients are the OAuth clients of POST /oauth/token and POST
	// /oauth/revoke. When at least one client is registered (here or with
	// ClientID), every request to these endpoints must come from one: a
	// confidential client authenticates, a public one sends its client_id.
	// When none is, clients are not authenticated, credentials are ignored
	// and every client is public. NewServer panics on an invalid Client
	// (no ID, an ID registered twice, an unsupported Key), as
	// httptest.NewServer panics when it cannot listen.
	Clients []Client

	// IssuerPath, if not empty, is the path of the server's issuer
	// identifier (see Server.Issuer), such as "/tenant1": the RFC 8414
	// metadata is then served at /.well-known/oauth-authorization-server/tenant1
	// and the OpenID metadata at /tenant1/.well-known/openid-configuration.
	// It must start with a slash, not end with one, and hold only letters,
	// digits and "-._~/"; NewServer panics otherwise.
	IssuerPath string

	// RequireDPoP makes DPoP (RFC 9449) mandatory: token requests without
	// a proof are refused with invalid_dpop_proof, and the resource routes
	// refuse access tokens that are not DPoP-bound, including those of
	// Issue, POST /auth/login and GET /auth/refreshtoken, which never are.
	// If false, DPoP is optional: a token request with a valid proof gets
	// DPoP-bound tokens, one without gets Bearer tokens.
	RequireDPoP bool

	// RequireDPoPNonce makes every DPoP proof carry the server's current
	// nonce (RFC 9449 sections 8 and 9). The token endpoint and the
	// resource routes keep separate nonces, send the current one in the
	// DPoP-Nonce header of every response, and answer a proof without it
	// with use_dpop_nonce.
	RequireDPoPNonce bool

	// DPoPNonceEvery, if positive, rotates the token endpoint's nonce
	// after every DPoPNonceEvery proofs it accepted, and the resource
	// routes' nonce likewise. If zero, nonces change only with
	// RotateDPoPNonce and DemandDPoPNonce.
	DPoPNonceEvery int

	// DPoPProofWindow is how far the iat of a DPoP proof may be from the
	// server's time, before or after. A proof's jti is remembered that
	// long, and refused if seen again. If zero, DefaultDPoPProofWindow is
	// used.
	DPoPProofWindow time.Duration

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

	clients map[string]*Client // by ID; read-only after NewServer

	stats     counters
	latency   atomic.Int64 // time.Duration of SetRefreshLatency
	apiReject atomic.Bool
	downgrade atomic.Bool  // SetDPoPDowngrade
	tokenGen  atomic.Int64 // ExpireAccessTokens: access tokens of older generations are expired

	// mu guards the sessions and tokens, the faults, and the remembered
	// jti values and nonces.
	mu            sync.Mutex
	sessions      map[string]*session
	refresh       map[string]*refreshToken
	nextSID       int
	faults        faultQueue
	revokedAccess seenSet       // jti of access tokens revoked at /oauth/revoke
	assertionJTIs seenSet       // client ID and jti of private_key_jwt assertions
	proofJTIs     seenSet       // jti of DPoP proofs
	nonces        [2]nonceState // by domain
	nonceDemands  int           // DemandDPoPNonce
}

// session is one login: the family of tokens that rotation derives from it.
type session struct {
	user    string
	client  string // the client_id it was issued to; "" for none
	jkt     string // the DPoP key its refresh tokens are bound to; "" for none
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
	checkIssuerPath(opts.IssuerPath)
	s := &Server{
		opts:     opts,
		users:    map[string]string{DefaultUser: DefaultPassword},
		key:      opts.SigningKey,
		now:      opts.Now,
		clients:  registerClients(opts),
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
	s.RotateDPoPNonce()
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
	now := s.now()
	sid, rt := s.newSession(&session{user: user}, now, true)
	at, exp := s.mint(&claims{Subject: user, Session: sid}, now, accessTTL)
	return autorefresh.Tokens{AccessToken: at, RefreshToken: rt, Expiry: exp}
}

// newSession records sess and returns its ID and, if withRefresh, its first
// refresh token.
func (s *Server) newSession(sess *session, now time.Time, withRefresh bool) (sid, rt string) {
	if withRefresh {
		rt = randomString(32)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextSID++
	sid = fmt.Sprintf("s%d", s.nextSID)
	s.sessions[sid] = sess
	if withRefresh {
		s.refresh[rt] = &refreshToken{sid: sid, expiry: now.Add(s.opts.RefreshTTL)}
	}
	return sid, rt
}

// mint fills in the issuer, ID, times and generation of c, which holds the
// subject, session and any other claims, and returns the signed access
// token and its expiry.
func (s *Server) mint(c *claims, now time.Time, ttl time.Duration) (string, time.Time) {
	c.Issuer = issuer
	c.ID = randomString(12)
	c.IssuedAt = numericDate{time.UnixMilli(now.UnixMilli())}
	c.ExpiresAt = numericDate{time.UnixMilli(now.Add(ttl).UnixMilli())}
	c.Generation = s.tokenGen.Load()
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
	drop    bool // FaultDropAfterRotate fired: lose the response
}

// holder is who presents a refresh token: the client and the DPoP key of
// the request.
type holder struct {
	// client is the client_id of the request, checked against the one the
	// session was issued to if checkClient is set (RFC 6749 section 6).
	client      string
	checkClient bool
	// jkt is the thumbprint of the request's DPoP proof key, or "". If
	// bindKey is set (RFC 9449 section 5: a public client), a session
	// bound to a key needs a proof with that key, and an unbound one is
	// bound to jkt.
	jkt     string
	bindKey bool
}

// rotate redeems the refresh token rt: it returns a new access token and,
// unless Options.NoRotation is set, a new refresh token, and marks rt spent.
// The error is one of the errRefresh values.
func (s *Server) rotate(rt string, b holder) (grant, error) {
	if rt == "" {
		s.count(func(st *Stats) { st.RefreshRejections++ })
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
	err = s.redeemableLocked(e, sess, now, b)
	switch {
	case err == errRefreshSpent && s.opts.RevokeOnReuse && !sess.revoked:
		sess.revoked, revoked = true, true
	case err == nil:
		if b.bindKey && sess.jkt == "" {
			sess.jkt = b.jkt // a public client's refresh tokens are bound from now on
		}
		g = grant{sid: e.sid, tokens: autorefresh.Tokens{RefreshToken: rt}, drop: s.faults.takeDropLocked()}
		if !s.opts.NoRotation {
			e.spent = true
			s.refresh[next] = &refreshToken{sid: e.sid, expiry: now.Add(s.opts.RefreshTTL)}
			g.tokens.RefreshToken, g.rotated = next, true
		}
	}
	s.mu.Unlock()

	if err != nil {
		s.count(func(st *Stats) {
			st.RefreshRejections++
			if err == errRefreshSpent {
				st.ReuseRejections++
			}
			if revoked {
				st.Revocations++
			}
		})
		if revoked {
			s.logf("autorefreshtest: session %s revoked: refresh token reused", e.sid)
		}
		return grant{}, err
	}
	g.tokens.AccessToken, g.tokens.Expiry = s.mint(&claims{Subject: sess.user, Session: g.sid,
		ClientID: sess.client, Confirmation: confirmation(b.jkt)}, now, s.opts.AccessTTL)
	s.count(func(st *Stats) {
		st.Refreshes++
		if g.drop {
			st.RefreshFaults++
		}
	})
	return g, nil
}

// redeemableLocked returns why the refresh token e of session sess may not
// be redeemed by b at now, or nil. The caller holds s.mu.
func (s *Server) redeemableLocked(e *refreshToken, sess *session, now time.Time, b holder) error {
	switch {
	case e == nil:
		return errRefreshUnknown
	case e.spent:
		return errRefreshSpent
	case sess.revoked:
		return errRefreshRevoked
	case !now.Before(e.expiry):
		return errRefreshExpired
	case b.checkClient && sess.client != b.client:
		return errRefreshClient
	case b.bindKey && sess.jkt != "" && b.jkt == "":
		return errRefreshNoProof
	case b.bindKey && sess.jkt != "" && b.jkt != sess.jkt:
		return errRefreshKey
	}
	return nil
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
	if n > 0 {
		s.count(func(st *Stats) { st.Revocations += int64(n) })
		s.logf("autorefreshtest: %d session(s) revoked", n)
	}
	return n
}

// Issuer returns the server's issuer identifier (RFC 8414): URL followed by
// Options.IssuerPath. It is the "issuer" of the metadata, and an audience
// that private_key_jwt assertions may name.
func (s *Server) Issuer() string { return s.URL + s.opts.IssuerPath }

// checkIssuerPath panics if p is not a valid Options.IssuerPath.
func checkIssuerPath(p string) {
	if p == "" {
		return
	}
	ok := p[0] == '/' && p[len(p)-1] != '/'
	for i := 0; i < len(p) && ok; i++ {
		ok = unreserved(p[i]) || p[i] == '/'
	}
	if !ok || strings.Contains(p, "//") {
		panic(fmt.Sprintf("autorefreshtest: IssuerPath %q must be a path such as /tenant1", p))
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}
