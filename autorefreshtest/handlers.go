package autorefreshtest

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Reasons a refresh is refused. Their texts go into error_description.
var (
	errNoRefresh      = errors.New("no refresh token")
	errRefreshUnknown = errors.New("unknown refresh token")
	errRefreshSpent   = errors.New("the refresh token was already used")
	errRefreshRevoked = errors.New("the session was revoked")
	errRefreshExpired = errors.New("the refresh token expired")
)

// Body limits.
const (
	maxFormBody = 64 << 10
	maxEchoBody = 1 << 20
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/login", s.handleLogin)
	mux.HandleFunc("GET /auth/refreshtoken", s.handleRefresh)
	mux.HandleFunc("GET /auth/check", s.handleCheck)
	mux.HandleFunc("POST /oauth/token", s.handleOAuthToken)
	mux.HandleFunc("/api/", s.handleAPI)
	return mux
}

// oauthError is an RFC 6749 section 5.2 error response, which the custom
// endpoints answer too.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// customTokens is the body of the custom login and refresh responses.
type customTokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken,omitempty"`
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBody)).Decode(&req); err != nil {
		s.stats.loginFailures.Add(1)
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the body is not a JSON login"})
		return
	}
	if !s.login(req.Username, req.Password) {
		s.stats.loginFailures.Add(1)
		s.logf("autorefreshtest: login of %q refused", req.Username)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_grant", "wrong user name or password"})
		return
	}
	t := s.Issue(req.Username)
	s.stats.logins.Add(1)
	s.logf("autorefreshtest: login of %q", req.Username)
	writeJSON(w, http.StatusOK, customTokens{t.AccessToken, t.RefreshToken})
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	fault, done := s.beginRefresh(w, r, false)
	if done {
		return
	}
	g, err := s.rotate(r.Header.Get("refreshToken"))
	if err != nil {
		s.logf("autorefreshtest: refresh refused: %v", err)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_grant", err.Error()})
		return
	}
	s.logf("autorefreshtest: session %s refreshed", g.sid)
	if fault == FaultDropAfterRotate {
		dropConnection(w, `{"accessToken":"`)
		return
	}
	resp := customTokens{AccessToken: g.tokens.AccessToken}
	if g.rotated {
		resp.RefreshToken = g.tokens.RefreshToken
	}
	writeJSON(w, http.StatusOK, resp)
}

// accessToken returns the access token of r, from "Authorization: Bearer"
// (bearer is then true) or else from the "accessToken" header.
func accessToken(r *http.Request) (token string, bearer bool) {
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	if strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok), true
	}
	return r.Header.Get("accessToken"), false
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	s.stats.checks.Add(1)
	token, _ := accessToken(r)
	user, err := s.authenticate(token)
	if err != nil {
		s.stats.checkFailures.Add(1)
		writeJSON(w, http.StatusForbidden, oauthError{"invalid_token", err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	s.stats.apiCalls.Add(1)
	if s.apiReject.Load() {
		s.stats.api403s.Add(1)
		writeJSON(w, http.StatusForbidden, oauthError{"forbidden", "rejected by SetAPIReject"})
		return
	}
	token, bearer := accessToken(r)
	user, err := s.authenticate(token)
	if err != nil {
		s.logf("autorefreshtest: %s %s refused: %v", r.Method, r.URL.Path, err)
		if bearer {
			s.stats.api401s.Add(1)
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(
				`Bearer realm="%s", error="invalid_token", error_description="%s"`, issuer, err))
			writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_token", err.Error()})
			return
		}
		s.stats.api403s.Add(1)
		writeJSON(w, http.StatusForbidden, oauthError{"invalid_token", err.Error()})
		return
	}

	switch path := r.URL.Path; {
	case path == "/api/echo":
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEchoBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, oauthError{"invalid_request", "body too large"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"method": r.Method, "path": path, "body": string(body), "user": user,
		})
	case path == "/api/me":
		writeJSON(w, http.StatusOK, map[string]string{"user": user})
	case path == "/api/admin":
		s.stats.api403s.Add(1)
		if bearer {
			w.Header().Set("WWW-Authenticate",
				`Bearer realm="`+issuer+`", error="insufficient_scope", scope="admin"`)
		}
		writeJSON(w, http.StatusForbidden, oauthError{"insufficient_scope", "the admin scope is required"})
	case strings.HasPrefix(path, "/api/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(path, "/api/status/"))
		if err != nil || code < 200 || code > 599 {
			http.NotFound(w, r)
			return
		}
		switch code {
		case http.StatusUnauthorized:
			s.stats.api401s.Add(1)
		case http.StatusForbidden:
			s.stats.api403s.Add(1)
		}
		writeJSON(w, code, map[string]int{"status": code})
	default:
		http.NotFound(w, r)
	}
}

// oauthTokens is the body of a successful RFC 6749 token response.
type oauthTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

func (s *Server) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form body"})
		return
	}
	form := r.PostForm
	grantType := form.Get("grant_type")
	fault := FaultNone
	if grantType == "refresh_token" {
		var done bool
		if fault, done = s.beginRefresh(w, r, true); done {
			return
		}
	}
	if !s.clientOK(w, r) {
		return
	}
	switch grantType {
	case "password":
		user := form.Get("username")
		if !s.login(user, form.Get("password")) {
			s.stats.loginFailures.Add(1)
			s.logf("autorefreshtest: password grant of %q refused", user)
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "wrong user name or password")
			return
		}
		t := s.Issue(user)
		s.stats.logins.Add(1)
		s.logf("autorefreshtest: password grant of %q", user)
		s.writeOAuthTokens(w, oauthTokens{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken})
	case "refresh_token":
		g, err := s.rotate(form.Get("refresh_token"))
		switch {
		case errors.Is(err, errNoRefresh):
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "missing refresh_token")
			return
		case err != nil:
			s.logf("autorefreshtest: refresh_token grant refused: %v", err)
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
			return
		}
		s.logf("autorefreshtest: session %s refreshed", g.sid)
		if fault == FaultDropAfterRotate {
			dropConnection(w, `{"access_token":"`)
			return
		}
		resp := oauthTokens{AccessToken: g.tokens.AccessToken}
		if g.rotated {
			resp.RefreshToken = g.tokens.RefreshToken
		}
		s.writeOAuthTokens(w, resp)
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "missing grant_type")
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only password and refresh_token are supported")
	}
}

// clientOK authenticates the OAuth client when Options.ClientID is set, by
// HTTP Basic (RFC 6749 section 2.3.1, form-encoded credentials) or else by
// client_id and client_secret in the body. It answers 401 invalid_client
// and reports false when that fails.
func (s *Server) clientOK(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ClientID == "" {
		return true
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == s.opts.ClientID &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) == 1 {
		return true
	}
	s.stats.clientAuthFail.Add(1)
	s.logf("autorefreshtest: client authentication failed (basic=%t)", basic)
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+issuer+`"`)
	}
	writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
	return false
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, oauthError{code, description})
}

// writeOAuthTokens answers t as a Bearer token response. expires_in is the
// access-token lifetime in whole seconds, rounded down, and left out for
// lifetimes under a second, which it cannot express; the token's "exp"
// claim is exact.
func (s *Server) writeOAuthTokens(w http.ResponseWriter, t oauthTokens) {
	t.TokenType = "Bearer"
	t.ExpiresIn = int64(s.opts.AccessTTL.Seconds())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, t)
}
