package autorefreshtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// This file verifies DPoP proofs as RFC 9449 section 4.3 says, and keeps
// the nonces of sections 8 and 9. jwk.go parses the proofs' keys; tokens
// are bound to keys where they are issued (oauth.go) and checked where they
// are used (resource.go).

// DefaultDPoPProofWindow is how far the iat of a DPoP proof may be from the
// server's time when Options.DPoPProofWindow is zero.
const DefaultDPoPProofWindow = time.Minute

// maxProofLen bounds the DPoP proofs that are parsed.
const maxProofLen = 8 << 10

// refusal is why a DPoP proof or a DPoP-bound token was refused: a field of
// DPoPRefusals, or a nonce demand.
type refusal int

const (
	refMissing refusal = iota + 1
	refMalformed
	refAlgorithm
	refKey
	refSignature
	refIssuedAt
	refReplay
	refMethod
	refURI
	refTokenHash
	refBinding
	refNonce // not a refusal: a demand for a nonce
)

// count adds r to st.
func (r refusal) count(st *Stats) {
	d := &st.DPoPRefusals
	switch r {
	case refMissing:
		d.Missing++
	case refMalformed:
		d.Malformed++
	case refAlgorithm:
		d.Algorithm++
	case refKey:
		d.Key++
	case refSignature:
		d.Signature++
	case refIssuedAt:
		d.IssuedAt++
	case refReplay:
		d.Replay++
	case refMethod:
		d.Method++
	case refURI:
		d.URI++
	case refTokenHash:
		d.TokenHash++
	case refBinding:
		d.Binding++
	case refNonce:
		st.DPoPNonceDemands++
	}
}

// proofError is a refused DPoP proof: the reason and the
// error_description. Descriptions hold no token, key or proof.
type proofError struct {
	reason refusal
	desc   string
}

func refuse(r refusal, desc string) *proofError { return &proofError{r, desc} }

// domain names the two servers of RFC 9449 that keep their own nonces: the
// authorization server (the token endpoint) and the resource server (the
// resource routes).
type domain int

const (
	authServer domain = iota
	resourceServer
)

// nonceState is the current DPoP nonce of one domain.
type nonceState struct {
	value    string
	accepted int // proofs accepted with value
}

// proofClaims are the claims of a DPoP proof (RFC 9449 section 4.2).
type proofClaims struct {
	ID       string       `json:"jti"`
	Method   string       `json:"htm"`
	URI      string       `json:"htu"`
	IssuedAt *numericDate `json:"iat"`
	ATH      string       `json:"ath"`
	Nonce    string       `json:"nonce"`
}

func (c *proofClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (c *proofClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return optDate(c.IssuedAt), nil }
func (c *proofClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c *proofClaims) GetIssuer() (string, error)                   { return "", nil }
func (c *proofClaims) GetSubject() (string, error)                  { return "", nil }
func (c *proofClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// proofHeader is the JOSE header of a DPoP proof.
type proofHeader struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

// verifyProof checks the DPoP proof of r for domain d, and returns the
// thumbprint of its key. accessToken is the access token the proof must
// hash (ath) at a resource, or "" at the token endpoint. The checks run in
// the order of the DPoPRefusals fields; the nonce is checked after htu and
// before ath.
func (s *Server) verifyProof(r *http.Request, d domain, accessToken string) (jkt string, perr *proofError) {
	vals := r.Header.Values("DPoP")
	switch {
	case len(vals) == 0:
		return "", refuse(refMissing, "a DPoP proof is required")
	case len(vals) > 1:
		return "", refuse(refMalformed, "more than one DPoP header")
	}
	c, jkt, perr := parseProof(vals[0])
	if perr != nil {
		return "", perr
	}
	now := s.now()
	window := s.proofWindow()
	if d := now.Sub(c.IssuedAt.Time); d > window || d < -window {
		return "", refuse(refIssuedAt, "the proof's iat is outside the accepted window")
	}
	s.mu.Lock()
	fresh := s.proofJTIs.add(c.ID, c.IssuedAt.Add(window).Add(time.Millisecond), now)
	s.mu.Unlock()
	if !fresh {
		return "", refuse(refReplay, "the proof's jti was used before")
	}
	if c.Method != r.Method {
		return "", refuse(refMethod, "htm is not the request's method")
	}
	htu, ok := normalizeURI(c.URI)
	if want, _ := normalizeURI(requestURI(r)); !ok || htu != want {
		return "", refuse(refURI, "htu is not the request's URI")
	}
	if perr := s.checkNonce(d, c.Nonce); perr != nil {
		return "", perr
	}
	if accessToken != "" && c.ATH != tokenHash(accessToken) {
		return "", refuse(refTokenHash, "ath is not the hash of the access token")
	}
	s.acceptNonce(d)
	return jkt, nil
}

// parseProof checks the form, header, key and signature of a proof.
func parseProof(raw string) (*proofClaims, string, *proofError) {
	var hdr proofHeader
	parts := strings.Split(raw, ".")
	if len(raw) > maxProofLen || len(parts) != 3 {
		return nil, "", refuse(refMalformed, "the proof is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		return nil, "", refuse(refMalformed, "the proof's header is not base64url JSON")
	}
	if perr := checkProofHeader(&hdr); perr != nil {
		return nil, "", perr
	}
	key, jkt, err := parseJWK(hdr.JWK)
	if err != nil {
		return nil, "", refuse(refKey, "the proof's jwk: "+err.Error())
	}
	if algs, _ := assertionAlgs(key); !slices.Contains(algs, hdr.Alg) {
		return nil, "", refuse(refAlgorithm, "the proof's alg does not match its jwk")
	}
	var c proofClaims
	_, err = jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{hdr.Alg}), jwt.WithoutClaimsValidation())
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, "", refuse(refSignature, "the proof's signature does not verify with its jwk")
	case err != nil:
		return nil, "", refuse(refMalformed, "the proof is not a well-formed JWT")
	case c.ID == "" || c.Method == "" || c.URI == "" || c.IssuedAt == nil:
		return nil, "", refuse(refMalformed, "the proof lacks one of jti, htm, htu and iat")
	}
	return &c, jkt, nil
}

// checkProofHeader checks the typ, crit and alg of a proof's header.
func checkProofHeader(hdr *proofHeader) *proofError {
	switch typ := strings.ToLower(hdr.Typ); {
	case typ != "dpop+jwt" && typ != "application/dpop+jwt":
		return refuse(refMalformed, "the proof's typ must be dpop+jwt")
	case hdr.Crit != nil:
		return refuse(refMalformed, "the proof has crit headers, which are not supported")
	case !slices.Contains(signingAlgs, hdr.Alg):
		return refuse(refAlgorithm, "the proof's alg is not an asymmetric algorithm the server supports")
	}
	return nil
}

// proofWindow returns Options.DPoPProofWindow or its default.
func (s *Server) proofWindow() time.Duration {
	if s.opts.DPoPProofWindow > 0 {
		return s.opts.DPoPProofWindow
	}
	return DefaultDPoPProofWindow
}

// tokenHash returns the ath of an access token: base64url(SHA-256(token)).
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// requestURI returns the URI r was sent to, as the htu of its proof must
// name it.
func requestURI(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// normalizeURI returns the http or https URI raw without its query and
// fragment, after the syntax- and scheme-based normalizations of RFC 3986
// sections 6.2.2 and 6.2.3 that RFC 9449 section 4.3 recommends: scheme and
// host in lower case, no default port, an empty path as "/", and
// percent-encodings in upper case, decoded where they encode unreserved
// characters.
func normalizeURI(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Host)
	host = strings.TrimSuffix(host, ":")
	if u.Scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	} else {
		host = strings.TrimSuffix(host, ":443")
	}
	path := normalizePercent(u.EscapedPath())
	if path == "" {
		path = "/"
	}
	return u.Scheme + "://" + host + path, true
}

// normalizePercent upper-cases the percent-encodings of p and decodes those
// of unreserved characters.
func normalizePercent(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		hex := strings.ToUpper(p[i+1 : i+3])
		var c byte
		for _, h := range []byte(hex) {
			switch {
			case '0' <= h && h <= '9':
				c = c<<4 | (h - '0')
			case 'A' <= h && h <= 'F':
				c = c<<4 | (h - 'A' + 10)
			}
		}
		if unreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + hex)
		}
		i += 2
	}
	return b.String()
}

// unreserved reports whether c is an unreserved character of RFC 3986.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// checkNonce checks a proof's nonce for domain d: a demand is pending
// (DemandDPoPNonce), or nonces are required and it is not the current one.
// Either way the nonce of d is the one to send back.
func (s *Server) checkNonce(d domain, nonce string) *proofError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nonceDemands != 0 {
		if s.nonceDemands > 0 {
			s.nonceDemands--
		}
		s.nonces[d] = nonceState{value: randomString(16)}
		return refuse(refNonce, "a fresh DPoP nonce is required")
	}
	if s.opts.RequireDPoPNonce && nonce != s.nonces[d].value {
		return refuse(refNonce, "the DPoP nonce is missing or stale")
	}
	return nil
}

// acceptNonce counts an accepted proof at domain d, and rotates its nonce
// every Options.DPoPNonceEvery proofs.
func (s *Server) acceptNonce(d domain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.nonces[d]
	n.accepted++
	if s.opts.DPoPNonceEvery > 0 && n.accepted >= s.opts.DPoPNonceEvery {
		*n = nonceState{value: randomString(16)}
	}
}

// setNonce sets the DPoP-Nonce header of a response of domain d to its
// current nonce, when nonces are in use: required, or just demanded.
func (s *Server) setNonce(w http.ResponseWriter, d domain, demanded bool) {
	if !s.opts.RequireDPoPNonce && !demanded {
		return
	}
	s.mu.Lock()
	v := s.nonces[d].value
	s.mu.Unlock()
	w.Header().Set("DPoP-Nonce", v)
}

// RotateDPoPNonce replaces the current DPoP nonces of the token endpoint
// and of the resource routes by new ones. Proofs with the old nonces are
// then answered use_dpop_nonce if Options.RequireDPoPNonce is set.
func (s *Server) RotateDPoPNonce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.nonces {
		s.nonces[d] = nonceState{value: randomString(16)}
	}
}

// DemandDPoPNonce makes the next n requests with an otherwise valid DPoP
// proof, at the token endpoint or the resource routes, answered
// use_dpop_nonce with a new nonce whatever nonce they carry, even the
// current one, as a server that demands a fresh nonce on every request. It
// works whether or not Options.RequireDPoPNonce is set. If n is negative,
// every such request is, until DemandDPoPNonce(0) or ResetFaults.
func (s *Server) DemandDPoPNonce(n int) {
	s.mu.Lock()
	s.nonceDemands = n
	s.mu.Unlock()
}

// SetDPoPDowngrade makes the token endpoint ignore DPoP proofs while on is
// true, as a server that does not support DPoP: it issues token_type
// "Bearer" tokens that are not bound to a key, even to requests that carry
// a proof, and does not check the binding of refresh tokens. Clients use it
// to test that they refuse such a downgrade. It applies to requests that
// arrive after it.
func (s *Server) SetDPoPDowngrade(on bool) { s.downgrade.Store(on) }
