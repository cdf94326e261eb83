package autorefreshtest

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Reasons a refresh is refused. Their texts go into error_description.
var (
	errNoRefresh      = errors.New("no refresh token")
	errRefreshUnknown = errors.New("unknown refresh token")
	errRefreshSpent   = errors.New("the refresh token was already used")
	errRefreshRevoked = errors.New("the session was revoked")
	errRefreshExpired = errors.New("the refresh token expired")
	errRefreshNoProof = errors.New("the refresh token is DPoP-bound: a proof with its key is required")
	errRefreshKey     = errors.New("the refresh token is bound to another DPoP key")
	errRefreshClient  = errors.New("the refresh token was issued to another client")
)

// Paths of the OAuth endpoints.
const (
	tokenPath      = "/oauth/token"
	revocationPath = "/oauth/revoke"
	oauthMetaPath  = "/.well-known/oauth-authorization-server"
	oidcMetaPath   = "/.well-known/openid-configuration"
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
	mux.HandleFunc("POST "+tokenPath, s.handleOAuthToken)
	mux.HandleFunc("POST "+revocationPath, s.handleRevocation)
	mux.HandleFunc("GET "+oauthMetaPath+s.opts.IssuerPath, s.handleDiscovery)
	mux.HandleFunc("GET "+s.opts.IssuerPath+oidcMetaPath, s.handleDiscovery)
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
		s.count(func(st *Stats) { st.LoginFailures++ })
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the body is not a JSON login"})
		return
	}
	if !s.login(req.Username, req.Password) {
		s.count(func(st *Stats) { st.LoginFailures++ })
		s.logf("autorefreshtest: login of %q refused", req.Username)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_grant", "wrong user name or password"})
		return
	}
	t := s.Issue(req.Username)
	s.count(func(st *Stats) { st.Logins++ })
	s.logf("autorefreshtest: login of %q", req.Username)
	writeJSON(w, http.StatusOK, customTokens{t.AccessToken, t.RefreshToken})
}

// handleRefresh serves GET /auth/refreshtoken. It knows nothing of DPoP: a
// refresh token bound to a key is refused here.
func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	if s.beginRefresh(w, r, false) {
		return
	}
	g, err := s.rotate(r.Header.Get("refreshToken"), holder{bindKey: true})
	if err != nil {
		s.logf("autorefreshtest: refresh refused: %v", err)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_grant", err.Error()})
		return
	}
	s.logf("autorefreshtest: session %s refreshed", g.sid)
	if g.drop {
		dropConnection(w, `{"accessToken":"`)
		return
	}
	resp := customTokens{AccessToken: g.tokens.AccessToken}
	if g.rotated {
		resp.RefreshToken = g.tokens.RefreshToken
	}
	writeJSON(w, http.StatusOK, resp)
}
