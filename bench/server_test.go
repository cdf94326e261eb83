package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

// refreshLatency is how long the refresh endpoints take to answer, as a
// real identity service on the network would.
const refreshLatency = 2 * time.Millisecond

// benchServer is a loopback server with an API and two refresh endpoints
// that hand out the same kind of tokens:
//
//   - /api/ answers 200 "ok" to a request whose accessToken header, or
//     Authorization: Bearer header, holds a valid access token. It refuses
//     any other token the way each protocol does: 403 for the header
//     protocol, 401 with an invalid_token challenge for a bearer token
//     (RFC 6750 section 3.1);
//   - GET /auth/refreshtoken speaks autorefresh's header protocol;
//   - POST /oauth/token speaks OAuth 2.0's refresh_token grant.
//
// Access tokens are JWTs valid for an hour. Refresh tokens are single use
// and rotate on every refresh; spending one twice is counted in reuses.
type benchServer struct {
	*httptest.Server

	access  sync.Map // valid access token -> struct{}
	refresh sync.Map // unspent refresh token -> struct{}

	refreshCalls, reuses, refusals atomic.Int64 // refusals: API requests refused
}

func newBenchServer(tb testing.TB) *benchServer {
	tb.Helper()
	s := new(benchServer)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("GET /auth/refreshtoken", s.serveRefresh)
	mux.HandleFunc("POST /oauth/token", s.serveOAuthToken)
	s.Server = httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
}

func randomString() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// signJWT returns an HS256 JWT issued at iat and expiring at exp.
func signJWT(iat, exp time.Time) string {
	claims := jwt.RegisteredClaims{
		ID:        randomString(),
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("bench key"))
	if err != nil {
		panic(err)
	}
	return s
}

// issue mints a valid pair whose access token expires in an hour.
func (s *benchServer) issue() autorefresh.Tokens {
	now := time.Now()
	tok := autorefresh.Tokens{AccessToken: signJWT(now, now.Add(time.Hour)), RefreshToken: "ref-" + randomString()}
	s.access.Store(tok.AccessToken, struct{}{})
	s.refresh.Store(tok.RefreshToken, struct{}{})
	return tok
}

// staleOpaque returns a pair whose opaque access token the server refuses
// (the client cannot tell it expired) and whose refresh token is good.
func (s *benchServer) staleOpaque() autorefresh.Tokens {
	tok := autorefresh.Tokens{AccessToken: "acc-" + randomString(), RefreshToken: "ref-" + randomString()}
	s.refresh.Store(tok.RefreshToken, struct{}{})
	return tok
}

// staleExpired returns a pair whose access token is a JWT that expired a
// second ago (the server refuses it too) and whose refresh token is good.
func (s *benchServer) staleExpired() autorefresh.Tokens {
	now := time.Now()
	exp := now.Add(-time.Second)
	tok := autorefresh.Tokens{
		AccessToken:  signJWT(exp.Add(-time.Hour), exp),
		RefreshToken: "ref-" + randomString(),
	}
	s.refresh.Store(tok.RefreshToken, struct{}{})
	return tok
}

func (s *benchServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !bearer {
		token = r.Header.Get("accessToken")
	}
	if _, ok := s.access.Load(token); ok {
		io.WriteString(w, "ok")
		return
	}
	s.refusals.Add(1)
	if bearer {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusForbidden)
}

// spend takes a refresh token out of circulation and reports whether it
// was valid and unspent.
func (s *benchServer) spend(rt string) bool {
	if _, ok := s.refresh.LoadAndDelete(rt); ok {
		return true
	}
	s.reuses.Add(1)
	return false
}

func (s *benchServer) serveRefresh(w http.ResponseWriter, r *http.Request) {
	s.refreshCalls.Add(1)
	time.Sleep(refreshLatency)
	if !s.spend(r.Header.Get("refreshToken")) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	tok := s.issue()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"accessToken": tok.AccessToken, "refreshToken": tok.RefreshToken})
}

func (s *benchServer) serveOAuthToken(w http.ResponseWriter, r *http.Request) {
	s.refreshCalls.Add(1)
	time.Sleep(refreshLatency)
	if r.FormValue("grant_type") != "refresh_token" || !s.spend(r.FormValue("refresh_token")) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant"}`)
		return
	}
	tok := s.issue()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token":  tok.AccessToken,
		"token_type":    "Bearer",
		"expires_in":    3600,
		"refresh_token": tok.RefreshToken,
	})
}

// oauth2Token converts tok for golang.org/x/oauth2.
func oauth2Token(tok autorefresh.Tokens) *oauth2.Token {
	return &oauth2.Token{
		AccessToken:  tok.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: tok.RefreshToken,
		Expiry:       tok.ExpiresAt(),
	}
}
