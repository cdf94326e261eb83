package autorefreshtest

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// This file holds the RFC 6749 token endpoint, POST /oauth/token, and its
// grants: password, refresh_token and client_credentials.

// oauthTokens is the body of a successful RFC 6749 token response.
type oauthTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// repeatable are the token request parameters that may be sent more than
// once (RFC 8707 section 2 for resource). RFC 6749 section 3.2 forbids it
// for the others.
var repeatable = []string{"resource", "audience"}

// tokenRequest is a token request that passed the checks common to all
// grants.
type tokenRequest struct {
	form      url.Values
	who       caller
	jkt       string // the thumbprint of the DPoP proof key, or ""
	downgrade bool   // SetDPoPDowngrade was on when it arrived
}

func (s *Server) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	s.setNonce(w, authServer, false)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	form := r.PostForm
	grantType := form.Get("grant_type")
	if grantType == "refresh_token" || grantType == "client_credentials" {
		if s.beginRefresh(w, r, true) {
			return
		}
	}
	for k, v := range form {
		if len(v) > 1 && !slices.Contains(repeatable, k) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "parameter "+url.QueryEscape(k)+" is repeated")
			return
		}
	}
	req := tokenRequest{form: form, downgrade: s.downgrade.Load()}
	var ok bool
	if req.jkt, ok = s.tokenProof(w, r, req.downgrade); !ok {
		return
	}
	var cerr *clientError
	if req.who, cerr = s.authenticateClient(r, s.URL+tokenPath); cerr != nil {
		s.writeClientError(w, cerr)
		return
	}
	switch grantType {
	case "password":
		s.passwordGrant(w, req)
	case "refresh_token":
		s.refreshGrant(w, req)
	case "client_credentials":
		s.clientCredentialsGrant(w, req)
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "missing grant_type")
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type",
			"only password, refresh_token and client_credentials are supported")
	}
}

// tokenProof checks the DPoP proof of a token request (RFC 9449 section 5).
// It returns the thumbprint of the proof's key, "" when there is no proof
// and none is required, or answers the request and reports false. With
// downgrade it ignores the proof.
func (s *Server) tokenProof(w http.ResponseWriter, r *http.Request, downgrade bool) (string, bool) {
	if downgrade || !s.opts.RequireDPoP && len(r.Header.Values("DPoP")) == 0 {
		return "", true
	}
	jkt, perr := s.verifyProof(r, authServer, "")
	s.count(func(st *Stats) {
		if perr == nil {
			st.DPoPProofs++
		} else {
			perr.reason.count(st)
		}
	})
	switch {
	case perr == nil:
		s.setNonce(w, authServer, false) // it may have rotated
		return jkt, true
	case perr.reason == refNonce:
		s.setNonce(w, authServer, true)
		writeOAuthError(w, http.StatusBadRequest, "use_dpop_nonce", perr.desc)
	default:
		writeOAuthError(w, http.StatusBadRequest, "invalid_dpop_proof", perr.desc)
	}
	s.logf("autorefreshtest: token request refused: %s", perr.desc)
	return "", false
}

func (s *Server) passwordGrant(w http.ResponseWriter, req tokenRequest) {
	user := req.form.Get("username")
	if !s.login(user, req.form.Get("password")) {
		s.count(func(st *Stats) { st.LoginFailures++ })
		s.logf("autorefreshtest: password grant of %q refused", user)
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "wrong user name or password")
		return
	}
	sess := &session{user: user, client: req.who.id}
	if !req.who.confidential {
		sess.jkt = req.jkt // RFC 9449 section 5: a public client's refresh tokens are bound
	}
	now := s.now()
	sid, rt := s.newSession(sess, now, true)
	at, _ := s.mint(&claims{Subject: user, Session: sid, ClientID: req.who.id,
		Confirmation: confirmation(req.jkt)}, now, s.opts.AccessTTL)
	s.count(func(st *Stats) { st.Logins++ })
	s.logf("autorefreshtest: password grant of %q", user)
	s.writeOAuthTokens(w, oauthTokens{AccessToken: at, RefreshToken: rt}, req.jkt != "")
}

func (s *Server) refreshGrant(w http.ResponseWriter, req tokenRequest) {
	g, err := s.rotate(req.form.Get("refresh_token"), holder{
		client:      req.who.id,
		checkClient: len(s.clients) > 0,
		jkt:         req.jkt,
		bindKey:     !req.who.confidential && !req.downgrade,
	})
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
	if g.drop {
		dropConnection(w, `{"access_token":"`)
		return
	}
	resp := oauthTokens{AccessToken: g.tokens.AccessToken}
	if g.rotated {
		resp.RefreshToken = g.tokens.RefreshToken
	}
	s.writeOAuthTokens(w, resp, req.jkt != "")
}

// clientCredentialsGrant serves RFC 6749 section 4.4: an access token for
// the authenticated client itself, with no refresh token.
func (s *Server) clientCredentialsGrant(w http.ResponseWriter, req tokenRequest) {
	who := req.who
	switch {
	case who.client == nil:
		s.writeClientError(w, invalidClient(true, "client_credentials requires a registered client that authenticates"))
		return
	case !who.confidential:
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", "a public client may not use client_credentials")
		return
	}
	scope, ok := grantScope(who.client, strings.Fields(req.form.Get("scope")))
	if !ok {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "the client may not ask for this scope")
		return
	}
	var aud []string
	for _, res := range req.form["resource"] {
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(res, "#") {
			// RFC 8707 section 2.
			writeOAuthError(w, http.StatusBadRequest, "invalid_target", "a resource must be an absolute URI without a fragment")
			return
		}
	}
	for _, a := range slices.Concat(req.form["resource"], req.form["audience"]) {
		if a != "" && !slices.Contains(aud, a) {
			aud = append(aud, a)
		}
	}

	now := s.now()
	sid, _ := s.newSession(&session{user: who.id, client: who.id}, now, false)
	at, _ := s.mint(&claims{Subject: who.id, Session: sid, ClientID: who.id, Scope: scope, Audience: aud,
		Confirmation: confirmation(req.jkt)}, now, s.opts.AccessTTL)
	s.mu.Lock()
	drop := s.faults.takeDropLocked()
	s.mu.Unlock()
	s.count(func(st *Stats) {
		st.ClientCredentialsGrants++
		if drop {
			st.RefreshFaults++
		}
	})
	s.logf("autorefreshtest: client_credentials grant to %q", who.id)
	if drop {
		dropConnection(w, `{"access_token":"`)
		return
	}
	s.writeOAuthTokens(w, oauthTokens{AccessToken: at, Scope: scope}, req.jkt != "")
}

// grantScope returns the scope granted to c for the scopes asked, and
// false if c may not have one of them.
func grantScope(c *Client, asked []string) (string, bool) {
	if c.Scopes == nil {
		return strings.Join(asked, " "), true
	}
	if len(asked) == 0 {
		return strings.Join(c.Scopes, " "), true
	}
	for _, sc := range asked {
		if !slices.Contains(c.Scopes, sc) {
			return "", false
		}
	}
	return strings.Join(asked, " "), true
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, oauthError{code, description})
}

// writeOAuthTokens answers t as a token response, of token_type "DPoP" if
// dpop is set, else "Bearer". expires_in is the access-token lifetime in
// whole seconds, rounded down, and left out for lifetimes under a second,
// which it cannot express; the token's "exp" claim is exact.
func (s *Server) writeOAuthTokens(w http.ResponseWriter, t oauthTokens, dpop bool) {
	t.TokenType = "Bearer"
	if dpop {
		t.TokenType = "DPoP"
	}
	t.ExpiresIn = int64(s.opts.AccessTTL.Seconds())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, t)
}
