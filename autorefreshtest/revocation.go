package autorefreshtest

import (
	"errors"
	"net/http"
)

// This file holds the RFC 7009 revocation endpoint, POST /oauth/revoke.

// errForeignToken refuses to revoke a token issued to another client.
var errForeignToken = errors.New("the token was issued to another client")

// FailRevocation makes the next n requests to POST /oauth/revoke answer
// status (for example 503) with the JSON body {"error":"server_error"},
// without revoking anything. If n is negative every request does until
// FailRevocation(0, 0) or ResetFaults.
func (s *Server) FailRevocation(n, status int) {
	s.mu.Lock()
	s.faults.revocationFailN, s.faults.revocationFailStatus = n, status
	s.mu.Unlock()
}

// takeRevocationFault uses up one pending FailRevocation and returns its
// status, or 0.
func (s *Server) takeRevocationFault() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.faults
	if q.revocationFailN == 0 || q.revocationFailStatus == 0 {
		return 0
	}
	take(&q.revocationFailN)
	return q.revocationFailStatus
}

// handleRevocation serves POST /oauth/revoke (RFC 7009 section 2): the
// client authenticates as at the token endpoint and sends "token" and
// optionally "token_type_hint". Revoking a current refresh token ends its
// session, so that its access tokens are refused too; revoking an access
// token refuses that token only. An unknown, invalid, spent or expired
// token is answered 200 as well (section 2.2), and so is a token whose
// session was revoked before. A token issued to another client is refused
// with 400 unauthorized_client (section 2.1).
func (s *Server) handleRevocation(w http.ResponseWriter, r *http.Request) {
	status := s.takeRevocationFault()
	s.count(func(st *Stats) {
		st.RevocationCalls++
		if status != 0 {
			st.RevocationFaults++
		}
	})
	if status != 0 {
		s.logf("autorefreshtest: revocation answered injected status %d", status)
		writeOAuthError(w, status, "server_error", "injected failure")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	for _, v := range r.PostForm {
		if len(v) > 1 {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "a parameter is repeated")
			return
		}
	}
	who, cerr := s.authenticateClient(r, s.URL+revocationPath)
	if cerr != nil {
		s.writeClientError(w, cerr)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "missing token")
		return
	}
	// Section 2.1: the hint only orders the search; an unknown hint is
	// ignored.
	var err error
	if r.PostForm.Get("token_type_hint") == "access_token" {
		if found, e := s.revokeAccess(token, who); !found {
			_, err = s.revokeRefresh(token, who)
		} else {
			err = e
		}
	} else {
		if found, e := s.revokeRefresh(token, who); !found {
			_, err = s.revokeAccess(token, who)
		} else {
			err = e
		}
	}
	if err != nil {
		s.logf("autorefreshtest: revocation refused: %v", err)
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// foreign reports whether a token of a session issued to owner may not be
// revoked by who.
func (s *Server) foreign(owner string, who caller) bool {
	return len(s.clients) > 0 && owner != "" && owner != who.id
}

// revokeRefresh revokes the session of the refresh token rt if it is
// current. It reports whether rt is a refresh token of this server.
func (s *Server) revokeRefresh(rt string, who caller) (found bool, err error) {
	now := s.now()
	s.mu.Lock()
	e := s.refresh[rt]
	if e == nil {
		s.mu.Unlock()
		return false, nil
	}
	sess := s.sessions[e.sid]
	if s.foreign(sess.client, who) {
		s.mu.Unlock()
		return true, errForeignToken
	}
	revoked := !e.spent && !sess.revoked && now.Before(e.expiry)
	if revoked {
		sess.revoked = true
	}
	s.mu.Unlock()
	if revoked {
		s.count(func(st *Stats) { st.Revocations++ })
		s.logf("autorefreshtest: session %s revoked at the revocation endpoint", e.sid)
	}
	return true, nil
}

// revokeAccess revokes the access token at if it is still accepted. It
// reports whether at is an access token of this server.
func (s *Server) revokeAccess(at string, who caller) (found bool, err error) {
	c, err := s.parse(at, false)
	if err != nil {
		return false, nil
	}
	if s.foreign(c.ClientID, who) {
		return true, errForeignToken
	}
	if _, err := s.verify(at); err != nil {
		return true, nil // expired or revoked already
	}
	s.mu.Lock()
	added := s.revokedAccess.add(c.ID, c.ExpiresAt.Time, s.now())
	s.mu.Unlock()
	if added {
		s.count(func(st *Stats) { st.RevokedAccessTokens++ })
		s.logf("autorefreshtest: an access token of session %s revoked", c.Session)
	}
	return true, nil
}
