package autorefreshtest

import (
	"net/http"
	"strconv"
	"strings"
)

// This file serves the authorization server metadata of RFC 8414 and
// OpenID Connect Discovery 1.0, and the faults that break it.

// A DiscoveryFault is a broken answer of the metadata routes, injected with
// SetDiscoveryFault.
type DiscoveryFault int

const (
	// DiscoveryNone answers normally. SetDiscoveryFault(DiscoveryNone, 0)
	// clears a pending fault.
	DiscoveryNone DiscoveryFault = iota
	// DiscoveryOIDCOnly answers 404 at the RFC 8414 path, as servers that
	// only do OpenID Connect Discovery do; the OpenID path answers
	// normally and does not use the fault up.
	DiscoveryOIDCOnly
	// DiscoveryWrongIssuer answers metadata whose issuer is not the
	// server's: Issuer() followed by "/other".
	DiscoveryWrongIssuer
	// DiscoveryNoTokenEndpoint answers metadata without token_endpoint.
	DiscoveryNoTokenEndpoint
	// DiscoveryInsecureEndpoints answers metadata whose token_endpoint and
	// revocation_endpoint are plain http on a host that is not loopback
	// (http://autorefreshtest.example.com/...), which clients must refuse.
	DiscoveryInsecureEndpoints
	// DiscoveryHTML answers 200 with an HTML page, as a login portal or a
	// proxy does.
	DiscoveryHTML
	// DiscoveryMalformedJSON answers 200 with truncated JSON.
	DiscoveryMalformedJSON
	// DiscoveryHugeBody answers 200 with a valid JSON document of
	// HugeBodySize bytes, to test that clients bound what they read.
	DiscoveryHugeBody
)

var discoveryFaultNames = [...]string{"DiscoveryNone", "DiscoveryOIDCOnly", "DiscoveryWrongIssuer",
	"DiscoveryNoTokenEndpoint", "DiscoveryInsecureEndpoints", "DiscoveryHTML", "DiscoveryMalformedJSON",
	"DiscoveryHugeBody"}

// String returns the name of the constant, such as "DiscoveryHTML".
func (f DiscoveryFault) String() string {
	if f >= 0 && int(f) < len(discoveryFaultNames) {
		return discoveryFaultNames[f]
	}
	return "DiscoveryFault(" + strconv.Itoa(int(f)) + ")"
}

// insecureHost is the host of the endpoints of DiscoveryInsecureEndpoints.
const insecureHost = "http://autorefreshtest.example.com"

// SetDiscoveryFault makes the next n metadata requests, at either path,
// answer with fault f (DiscoveryOIDCOnly: the next n requests at the RFC
// 8414 path). If n is negative every request does until
// SetDiscoveryFault(DiscoveryNone, 0) or ResetFaults.
func (s *Server) SetDiscoveryFault(f DiscoveryFault, n int) {
	s.mu.Lock()
	s.faults.discoveryFault, s.faults.discoveryFaultN = f, n
	s.mu.Unlock()
}

// FailDiscovery makes the next n metadata requests, at either path, answer
// status (for example 503) with the JSON body {"error":"server_error"}. If
// n is negative every request does until FailDiscovery(0, 0) or
// ResetFaults. A pending FailDiscovery takes precedence over a pending
// SetDiscoveryFault.
func (s *Server) FailDiscovery(n, status int) {
	s.mu.Lock()
	s.faults.discoveryFailN, s.faults.discoveryFailStatus = n, status
	s.mu.Unlock()
}

// takeDiscoveryFault uses up the fault for one metadata request: an HTTP
// status to answer, or a DiscoveryFault.
func (s *Server) takeDiscoveryFault(oidc bool) (status int, f DiscoveryFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.faults
	if q.discoveryFailN != 0 && q.discoveryFailStatus != 0 {
		take(&q.discoveryFailN)
		return q.discoveryFailStatus, DiscoveryNone
	}
	if q.discoveryFaultN == 0 || q.discoveryFault == DiscoveryNone || oidc && q.discoveryFault == DiscoveryOIDCOnly {
		return 0, DiscoveryNone
	}
	take(&q.discoveryFaultN)
	return 0, q.discoveryFault
}

// metadata returns the server's metadata (RFC 8414 section 2). The server
// has no authorization endpoint, so response_types_supported is empty.
func (s *Server) metadata() map[string]any {
	authMethods := []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
	return map[string]any{
		"issuer":                                s.Issuer(),
		"token_endpoint":                        s.URL + tokenPath,
		"revocation_endpoint":                   s.URL + revocationPath,
		"grant_types_supported":                 []string{"password", "refresh_token", "client_credentials"},
		"response_types_supported":              []string{},
		"token_endpoint_auth_methods_supported": authMethods,
		"token_endpoint_auth_signing_alg_values_supported":      signingAlgs,
		"revocation_endpoint_auth_methods_supported":            authMethods,
		"revocation_endpoint_auth_signing_alg_values_supported": signingAlgs,
		"dpop_signing_alg_values_supported":                     signingAlgs,
	}
}

// handleDiscovery serves GET /.well-known/oauth-authorization-server and
// GET /.well-known/openid-configuration (each with Options.IssuerPath where
// its specification puts it).
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	oidc := strings.HasSuffix(r.URL.Path, oidcMetaPath)
	status, f := s.takeDiscoveryFault(oidc)
	s.count(func(st *Stats) {
		st.DiscoveryFetches++
		if status != 0 || f != DiscoveryNone {
			st.DiscoveryFaults++
		}
	})
	if status != 0 {
		s.logf("autorefreshtest: metadata answered injected status %d", status)
		writeJSON(w, status, oauthError{Code: "server_error", Description: "injected failure"})
		return
	}
	if f != DiscoveryNone {
		s.logf("autorefreshtest: metadata answered injected %v", f)
	}
	m := s.metadata()
	switch f {
	case DiscoveryOIDCOnly:
		http.NotFound(w, r)
		return
	case DiscoveryWrongIssuer:
		m["issuer"] = s.Issuer() + "/other"
	case DiscoveryNoTokenEndpoint:
		delete(m, "token_endpoint")
	case DiscoveryInsecureEndpoints:
		m["token_endpoint"] = insecureHost + tokenPath
		m["revocation_endpoint"] = insecureHost + revocationPath
	case DiscoveryHTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><h1>Sign in</h1></body></html>\n"))
		return
	case DiscoveryMalformedJSON:
		writeRaw(w, `{"issuer":"`+s.Issuer()+`","token_endpoint":`)
		return
	case DiscoveryHugeBody:
		writeHuge(w, `{"issuer":"`+s.Issuer()+`","token_endpoint":"`+s.URL+tokenPath+`","padding":"`, `"}`)
		return
	}
	writeJSON(w, http.StatusOK, m)
}
