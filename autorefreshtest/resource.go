package autorefreshtest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// This file holds the resource routes, /api/ and /auth/check, and how they
// authenticate a request: Bearer (RFC 6750), DPoP (RFC 9449 section 7) or
// the custom accessToken header.

// Schemes of the Authorization header.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
	schemeCustom = "" // the accessToken header
)

// accessToken returns the access token of r and how it was sent: from
// "Authorization: Bearer" or "Authorization: DPoP", or else from the
// "accessToken" header.
func accessToken(r *http.Request) (token, scheme string) {
	auth := r.Header.Get("Authorization")
	sch, tok, _ := strings.Cut(auth, " ")
	switch {
	case strings.EqualFold(sch, schemeBearer):
		return strings.TrimSpace(tok), schemeBearer
	case strings.EqualFold(sch, schemeDPoP):
		return strings.TrimSpace(tok), schemeDPoP
	}
	return r.Header.Get("accessToken"), schemeCustom
}

// denial is why a resource request is refused, and how to answer it.
type denial struct {
	code, desc string
	challenge  string  // the WWW-Authenticate scheme; "" for the accessToken header
	reason     refusal // the DPoP counter to move; 0 for none
}

// algsParam is the algs parameter of DPoP challenges (RFC 9449 section 7.1).
var algsParam = strings.Join(signingAlgs, " ")

// writeDenial answers a refused resource request: 401 with a challenge, or
// 403 for the accessToken header (and for /auth/check without DPoP).
func (s *Server) writeDenial(w http.ResponseWriter, dn *denial, status int) {
	switch dn.challenge {
	case schemeBearer:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer realm="%s", error="%s", error_description="%s"`, issuer, dn.code, dn.desc))
	case schemeDPoP:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`DPoP error="%s", error_description="%s", algs="%s"`, dn.code, dn.desc, algsParam))
	}
	if dn.reason == refNonce {
		s.setNonce(w, resourceServer, true)
	}
	writeJSON(w, status, oauthError{dn.code, dn.desc})
}

// authorize authenticates a resource request. It returns the token's
// claims, whether a DPoP proof was accepted, and the denial when the
// request is refused.
func (s *Server) authorize(r *http.Request) (c *claims, scheme string, proofOK bool, dn *denial) {
	token, scheme := accessToken(r)
	if scheme == schemeDPoP {
		c, proofOK, dn := s.authorizeDPoP(r, token)
		return c, scheme, proofOK, dn
	}
	c, err := s.verify(token)
	if err != nil {
		challenge := scheme
		if s.opts.RequireDPoP {
			challenge = dpopChallenge(scheme) // the only scheme accepted
		}
		return nil, scheme, false, &denial{code: "invalid_token", desc: err.Error(), challenge: challenge}
	}
	switch {
	case c.jkt() != "":
		return nil, scheme, false, &denial{code: "invalid_token", challenge: dpopChallenge(scheme),
			desc: "the access token is DPoP-bound: send it with Authorization: DPoP and a proof", reason: refBinding}
	case s.opts.RequireDPoP:
		return nil, scheme, false, &denial{code: "invalid_token", challenge: dpopChallenge(scheme),
			desc: "a DPoP-bound access token is required", reason: refBinding}
	}
	return c, scheme, false, nil
}

// dpopChallenge returns the DPoP scheme, unless the request used the
// accessToken header, which gets no challenge.
func dpopChallenge(scheme string) string {
	if scheme == schemeCustom {
		return schemeCustom
	}
	return schemeDPoP
}

// authorizeDPoP authenticates "Authorization: DPoP": the proof, then the
// token, then the token's binding to the proof's key (RFC 9449 section
// 4.3, step 12). It reports whether the proof was accepted, even when the
// token is then refused.
func (s *Server) authorizeDPoP(r *http.Request, token string) (c *claims, proofOK bool, dn *denial) {
	jkt, perr := s.verifyProof(r, resourceServer, token)
	switch {
	case perr != nil && perr.reason == refNonce:
		return nil, false, &denial{code: "use_dpop_nonce", desc: perr.desc, challenge: schemeDPoP, reason: refNonce}
	case perr != nil:
		return nil, false, &denial{code: "invalid_dpop_proof", desc: perr.desc, challenge: schemeDPoP, reason: perr.reason}
	}
	c, err := s.verify(token)
	switch {
	case err != nil:
		return nil, true, &denial{code: "invalid_token", desc: err.Error(), challenge: schemeDPoP}
	case c.jkt() != jkt:
		return nil, true, &denial{code: "invalid_token", desc: "the access token is not bound to the proof's key",
			challenge: schemeDPoP, reason: refBinding}
	}
	return c, true, nil
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	s.count(func(st *Stats) { st.Checks++ })
	s.setNonce(w, resourceServer, false)
	c, scheme, proofOK, dn := s.authorize(r)
	s.setNonce(w, resourceServer, false) // an accepted proof may have rotated it
	s.count(func(st *Stats) {
		if proofOK {
			st.DPoPProofs++
		}
		if dn != nil {
			st.CheckFailures++
			dn.reason.count(st)
		}
	})
	switch {
	case dn != nil && scheme == schemeDPoP:
		s.writeDenial(w, dn, http.StatusUnauthorized)
	case dn != nil:
		// The custom protocol: 403, without a challenge.
		writeJSON(w, http.StatusForbidden, oauthError{dn.code, dn.desc})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"user": c.Subject})
	}
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	s.count(func(st *Stats) { st.APICalls++ })
	s.setNonce(w, resourceServer, false)
	if s.apiReject.Load() {
		s.count(func(st *Stats) { st.API403s++ })
		writeJSON(w, http.StatusForbidden, oauthError{"forbidden", "rejected by SetAPIReject"})
		return
	}
	c, scheme, proofOK, dn := s.authorize(r)
	s.setNonce(w, resourceServer, false) // an accepted proof may have rotated it
	status := http.StatusUnauthorized
	if dn != nil && dn.challenge == schemeCustom {
		status = http.StatusForbidden
	}
	s.count(func(st *Stats) {
		if proofOK {
			st.DPoPProofs++
		}
		if dn == nil {
			return
		}
		dn.reason.count(st)
		if status == http.StatusForbidden {
			st.API403s++
		} else {
			st.API401s++
		}
	})
	if dn != nil {
		s.logf("autorefreshtest: %s %s refused: %s", r.Method, r.URL.Path, dn.desc)
		s.writeDenial(w, dn, status)
		return
	}
	s.serveAPI(w, r, c.Subject, scheme)
}

// serveAPI answers an authenticated /api/ request.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, user, scheme string) {
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
		s.count(func(st *Stats) { st.API403s++ })
		switch scheme {
		case schemeBearer:
			w.Header().Set("WWW-Authenticate",
				`Bearer realm="`+issuer+`", error="insufficient_scope", scope="admin"`)
		case schemeDPoP:
			w.Header().Set("WWW-Authenticate", `DPoP error="insufficient_scope", scope="admin", algs="`+algsParam+`"`)
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
			s.count(func(st *Stats) { st.API401s++ })
		case http.StatusForbidden:
			s.count(func(st *Stats) { st.API403s++ })
		}
		writeJSON(w, code, map[string]int{"status": code})
	default:
		http.NotFound(w, r)
	}
}
