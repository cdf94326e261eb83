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
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
