package autorefresh

import (
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// oauthServer is an httptest server with an OAuth 2.0 token endpoint at
// /token (RFC 6749 sections 2.3.1, 4.4, 5 and 6; private_key_jwt of RFC
// 7523), a revocation endpoint at /revoke (RFC 7009) and a resource server
// under /api/ that takes bearer tokens (RFC 6750). It records what it was
// sent, so that tests can check the requests field by field;
// autorefreshtest is the server of the tests that need less.
type oauthServer struct {
	*httptest.Server

	// Set before the first request.
	clientID, clientSecret string           // required client credentials; "" for none
	clientKey              crypto.PublicKey // set: the client authenticates with private_key_jwt
	expiresIn              string           // raw JSON value of expires_in; "" omits it
	gate                   chan struct{}    // not nil: token requests wait until it is closed

	// Knobs, safe to change while serving.
	noRotate     atomic.Bool            // answer without a refresh_token
	tokenStatus  atomic.Int64           // non-zero: the token endpoint answers this status with tokenBody
	tokenBody    atomic.Pointer[string] // set: the token endpoint answers with this body
	tokenCT      atomic.Pointer[string] // Content-Type of tokenBody; nil: application/json
	apiChallenge atomic.Pointer[string] // set: the API answers valid tokens with 403 and this challenge

	mu         sync.Mutex      // guards the fields below
	access     map[string]bool // valid access tokens
	refresh    map[string]bool // refresh token -> spent
	secrets    []string        // every token value issued
	lastForm   url.Values      // form of the last token or revocation request
	lastHdr    http.Header     // header of the last token or revocation request
	assertions []jwt.Token     // the client assertions accepted, verified
	revoked    []url.Values    // the forms of the revocation requests accepted

	tokenCalls, apiCalls, api401s, reuses atomic.Int64
}

func newOAuthServer(t *testing.T) *oauthServer {
	t.Helper()
	s := &oauthServer{access: map[string]bool{}, refresh: map[string]bool{}, expiresIn: "3600"}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/revoke", s.serveRevoke)
	mux.HandleFunc("/api/", s.serveAPI)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// issue mints a valid pair.
func (s *oauthServer) issue() Tokens {
	tok := Tokens{AccessToken: "at-" + randomString(), RefreshToken: "rt-" + randomString()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access[tok.AccessToken] = true
	s.refresh[tok.RefreshToken] = false
	s.secrets = append(s.secrets, tok.AccessToken, tok.RefreshToken)
	return tok
}

// stale returns a pair whose access token the API refuses but whose
// refresh token is good.
func (s *oauthServer) stale() Tokens {
	tok := s.issue()
	s.mu.Lock()
	delete(s.access, tok.AccessToken)
	s.mu.Unlock()
	return tok
}

// expireAll makes every access token issued so far invalid.
func (s *oauthServer) expireAll() {
	s.mu.Lock()
	clear(s.access)
	s.mu.Unlock()
}

func (s *oauthServer) valid(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access[access]
}

// issued returns every token value issued so far.
func (s *oauthServer) issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

func (s *oauthServer) last() (url.Values, http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastForm, s.lastHdr
}

// accepted returns the client assertions accepted so far.
func (s *oauthServer) accepted() []jwt.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]jwt.Token(nil), s.assertions...)
}

// oauthError writes an error answer of RFC 6749 section 5.2.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *oauthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	s.tokenCalls.Add(1)
	if !s.admit(w, r) || s.canned(w) || !s.authenticate(w, r) {
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "refresh_token":
		s.refreshGrant(w, r.PostForm.Get("refresh_token"))
	case "client_credentials":
		s.writeTokens(w, s.issue(), false)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", gt)
	}
}

// admit waits for the gate, checks that r is a form POST and records it. It
// answers r and reports false if r cannot go on.
func (s *oauthServer) admit(w http.ResponseWriter, r *http.Request) bool {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-r.Context().Done():
			return false
		}
	}
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return false
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want a form")
		return false
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return false
	}
	s.mu.Lock()
	s.lastForm, s.lastHdr = r.PostForm, r.Header.Clone()
	s.mu.Unlock()
	return true
}

// canned answers with tokenBody, if set, and reports whether it did.
func (s *oauthServer) canned(w http.ResponseWriter) bool {
	body := s.tokenBody.Load()
	if body == nil {
		return false
	}
	ct := "application/json"
	if p := s.tokenCT.Load(); p != nil {
		ct = *p
	}
	w.Header().Set("Content-Type", ct)
	if code := s.tokenStatus.Load(); code != 0 {
		w.WriteHeader(int(code))
	}
	io.WriteString(w, *body)
	return true
}

// authenticate checks the client authentication of r (RFC 6749 section
// 2.3.1: the Basic user and password are form-urlencoded; a client uses
// one method only), and answers r and reports false if it fails.
func (s *oauthServer) authenticate(w http.ResponseWriter, r *http.Request) bool {
	if s.clientKey != nil {
		return s.authenticateAssertion(w, r)
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if r.PostForm.Has("client_secret") {
			oauthError(w, http.StatusBadRequest, "invalid_request", "more than one client authentication method")
			return false
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "bad encoding")
			return false
		}
	}
	if s.clientID != "" && (id != s.clientID || secret != s.clientSecret) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return false
	}
	return true
}

// authenticateAssertion checks a private_key_jwt client assertion (RFC 7523
// sections 2.2 and 3): signed by clientKey, iss = sub = client_id = the
// client ID, a jti never seen.
func (s *oauthServer) authenticateAssertion(w http.ResponseWriter, r *http.Request) bool {
	f := r.PostForm
	if f.Get("client_assertion_type") != clientAssertionType || r.Header.Get("Authorization") != "" || f.Has("client_secret") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want a client assertion only")
		return false
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(f.Get("client_assertion"), claims, func(*jwt.Token) (any, error) { return s.clientKey, nil },
		// Times are checked by the tests, whose clients may run on a
		// clock of their own.
		jwt.WithValidMethods([]string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}), jwt.WithoutClaimsValidation())
	if err == nil && (claims["iss"] != s.clientID || claims["sub"] != s.clientID || f.Get("client_id") != s.clientID) {
		err = fmt.Errorf("iss %v, sub %v, client_id %q; want %q", claims["iss"], claims["sub"], f.Get("client_id"), s.clientID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seen := range s.assertions {
		if err == nil && seen.Claims.(jwt.MapClaims)["jti"] == claims["jti"] {
			err = fmt.Errorf("jti %v seen before", claims["jti"])
		}
	}
	if err != nil {
		// Servers do echo what they got; the client must redact it.
		oauthError(w, http.StatusBadRequest, "invalid_client", fmt.Sprintf("assertion %s refused: %v", f.Get("client_assertion"), err))
		return false
	}
	s.assertions = append(s.assertions, *tok)
	return true
}

// refreshGrant answers a refresh_token grant for rt.
func (s *oauthServer) refreshGrant(w http.ResponseWriter, rt string) {
	s.mu.Lock()
	spent, ok := s.refresh[rt]
	if ok && !spent && !s.noRotate.Load() {
		s.refresh[rt] = true
	}
	s.mu.Unlock()
	if !ok || spent {
		if spent {
			s.reuses.Add(1)
		}
		// Servers do echo what they got; the client must redact it.
		oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token "+rt+" is invalid, expired or revoked")
		return
	}
	s.writeTokens(w, s.issue(), !s.noRotate.Load())
}

// writeTokens answers a successful token request with tok, with its
// refresh token if withRefresh.
func (s *oauthServer) writeTokens(w http.ResponseWriter, tok Tokens, withRefresh bool) {
	answer := map[string]any{"access_token": tok.AccessToken, "token_type": "Bearer"}
	if withRefresh {
		answer["refresh_token"] = tok.RefreshToken
	}
	if s.expiresIn != "" {
		answer["expires_in"] = json.RawMessage(s.expiresIn)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(answer)
}

// serveRevoke is the revocation endpoint (RFC 7009): it authenticates the
// client as the token endpoint does, and invalidates the token.
func (s *oauthServer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) || s.canned(w) || !s.authenticate(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	s.mu.Lock()
	delete(s.access, token)
	if _, ok := s.refresh[token]; ok {
		s.refresh[token] = true
	}
	s.revoked = append(s.revoked, r.PostForm)
	s.mu.Unlock()
}

// revocations returns the forms of the revocation requests accepted.
func (s *oauthServer) revocations() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.revoked...)
}

func (s *oauthServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.apiCalls.Add(1)
	access, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.valid(access) {
		s.api401s.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token", error_description="The access token expired"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if c := s.apiChallenge.Load(); c != nil {
		w.Header().Set("WWW-Authenticate", *c)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
}

// refresher returns an OAuth2 for s's token endpoint, with a fixed clock.
func (s *oauthServer) refresher(now time.Time) *OAuth2 {
	return &OAuth2{TokenURL: s.URL + "/token", ClientID: s.clientID, ClientSecret: s.clientSecret,
		now: func() time.Time { return now }}
}

// credentials returns a ClientCredentials for s's token endpoint, with a
// fixed clock.
func (s *oauthServer) credentials(now time.Time) *ClientCredentials {
	return &ClientCredentials{TokenURL: s.URL + "/token", ClientID: s.clientID, ClientSecret: s.clientSecret,
		now: func() time.Time { return now }}
}
