package autorefreshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Client is an OAuth client registered with a Server (Options.Clients).
//
// A client with a Secret authenticates with client_secret_basic (HTTP
// Basic, RFC 6749 section 2.3.1) or client_secret_post (client_id and
// client_secret in the form body); a client with a Key authenticates with
// private_key_jwt (RFC 7523 section 2.2, OpenID Connect Core section 9).
// Such a client is confidential. A client with neither is public: it only
// names itself with the client_id form parameter.
type Client struct {
	// ID is the client_id. It must not be empty.
	ID string

	// Secret, if not empty, lets the client authenticate with
	// client_secret_basic or client_secret_post.
	Secret string

	// Key, if not nil, is the public key that verifies the client's
	// private_key_jwt assertions: an *rsa.PublicKey of at least 2048 bits
	// (assertions signed RS256, RS384, RS512, PS256, PS384 or PS512), an
	// *ecdsa.PublicKey on P-256, P-384 or P-521 (ES256, ES384, ES512) or
	// an ed25519.PublicKey (EdDSA).
	Key crypto.PublicKey

	// Scopes, if not nil, are the scopes the client may ask for in a
	// client_credentials grant: asking for another one is refused with
	// invalid_scope, and asking for none grants all of them. If nil, any
	// scope asked for is granted.
	Scopes []string
}

// confidential reports whether c has credentials.
func (c *Client) confidential() bool { return c.Secret != "" || c.Key != nil }

// ClientAssertionType is the client_assertion_type of private_key_jwt
// client authentication (RFC 7523 section 2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds how far in the future the exp of a
// private_key_jwt assertion may be: an assertion valid for longer is
// refused.
const MaxAssertionLifetime = time.Hour

// assertionAlgs returns the JWS algorithms that key may sign assertions and
// DPoP proofs with, or an error for an unsupported key.
func assertionAlgs(key crypto.PublicKey) ([]string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < 2048 {
			return nil, errors.New("an RSA key must have at least 2048 bits")
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, errors.New("an ECDSA key must be on P-256, P-384 or P-521")
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("an Ed25519 key must have 32 bytes")
		}
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("a key of type %T is not supported", key)
}

// signingAlgs are the JWS algorithms the server verifies, for client
// assertions and DPoP proofs, as its metadata advertises them.
var signingAlgs = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// registerClients returns the clients of opts by ID. It panics on an
// invalid Client, as httptest.NewServer panics when it cannot listen: the
// server cannot start as the test asked.
func registerClients(opts Options) map[string]*Client {
	all := slices.Clone(opts.Clients)
	if opts.ClientID != "" {
		all = append(all, Client{ID: opts.ClientID, Secret: opts.ClientSecret})
	}
	clients := make(map[string]*Client, len(all))
	for i, c := range all {
		if c.ID == "" {
			panic(fmt.Sprintf("autorefreshtest: client %d has no ID", i))
		}
		if clients[c.ID] != nil {
			panic(fmt.Sprintf("autorefreshtest: client %q is registered twice", c.ID))
		}
		if c.Key != nil {
			if _, err := assertionAlgs(c.Key); err != nil {
				panic(fmt.Sprintf("autorefreshtest: client %q: %v", c.ID, err))
			}
		}
		c.Scopes = slices.Clone(c.Scopes)
		clients[c.ID] = &c
	}
	return clients
}

// caller is the client a token or revocation request came from.
type caller struct {
	id           string // "" for an anonymous client
	confidential bool   // it proved a credential
	client       *Client
}

// clientError is a refused client authentication or a malformed one, as
// RFC 6749 section 5.2 answers it.
type clientError struct {
	status    int
	code      string
	desc      string
	challenge bool // answer with WWW-Authenticate: Basic
}

// write answers e, counting invalid_client.
func (s *Server) writeClientError(w http.ResponseWriter, e *clientError) {
	s.logf("autorefreshtest: client refused: %s", e.desc)
	if e.code == "invalid_client" {
		s.count(func(st *Stats) { st.ClientAuthFailures++ })
	}
	if e.challenge {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+issuer+`"`)
	}
	writeOAuthError(w, e.status, e.code, e.desc)
}

// invalidClient returns an invalid_client error: 401 with a Basic challenge
// when the client used (or should have used) the Authorization header,
// else 400 (RFC 6749 section 5.2).
func invalidClient(header bool, desc string) *clientError {
	if header {
		return &clientError{http.StatusUnauthorized, "invalid_client", desc, true}
	}
	return &clientError{http.StatusBadRequest, "invalid_client", desc, false}
}

// authenticateClient authenticates the client of a token or revocation
// request whose form is parsed, by client_secret_basic, client_secret_post,
// private_key_jwt, or for a public client its client_id. endpoint is the
// URL of the endpoint called, which an assertion may name as its audience.
// When no client is registered, every caller is an anonymous public client
// and credentials are not looked at.
func (s *Server) authenticateClient(r *http.Request, endpoint string) (caller, *clientError) {
	if len(s.clients) == 0 {
		return caller{id: r.PostForm.Get("client_id")}, nil
	}
	form := r.PostForm
	_, header := r.Header["Authorization"]
	post := form.Has("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	methods := 0
	for _, used := range []bool{header, post, assertion} {
		if used {
			methods++
		}
	}
	switch {
	case methods > 1:
		// RFC 6749 section 2.3: one method per request.
		return caller{}, &clientError{http.StatusBadRequest, "invalid_request",
			"more than one client authentication method", false}
	case header:
		return s.basicClient(r)
	case post:
		return s.secretClient(form.Get("client_id"), form.Get("client_secret"), false)
	case assertion:
		return s.assertionClient(form, endpoint)
	}
	c := s.clients[form.Get("client_id")]
	if c == nil || c.confidential() {
		// No authentication: the 401 names the scheme that is supported.
		return caller{}, invalidClient(true, "client authentication is required")
	}
	return caller{id: c.ID, client: c}, nil
}

// basicClient authenticates client_secret_basic.
func (s *Server) basicClient(r *http.Request) (caller, *clientError) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		return caller{}, invalidClient(true, "the Authorization header is not valid HTTP Basic")
	}
	if v, err := url.QueryUnescape(id); err == nil {
		id = v
	}
	if v, err := url.QueryUnescape(secret); err == nil {
		secret = v
	}
	if formID := r.PostForm.Get("client_id"); formID != "" && formID != id {
		return caller{}, invalidClient(true, "client_id differs from the authenticated client")
	}
	return s.secretClient(id, secret, true)
}

// secretClient checks a client secret, sent in the header or the body.
func (s *Server) secretClient(id, secret string, header bool) (caller, *clientError) {
	c := s.clients[id]
	if c == nil || c.Key != nil && c.Secret == "" ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return caller{}, invalidClient(header, "client authentication failed")
	}
	return caller{id: c.ID, confidential: c.Secret != "", client: c}, nil
}

// assertionClaims are the claims of a private_key_jwt assertion.
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ID        string           `json:"jti"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
}

func optDate(d *numericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &jwt.NumericDate{Time: d.Time}
}

func (c *assertionClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return optDate(c.ExpiresAt), nil
}
func (c *assertionClaims) GetIssuedAt() (*jwt.NumericDate, error)  { return optDate(c.IssuedAt), nil }
func (c *assertionClaims) GetNotBefore() (*jwt.NumericDate, error) { return optDate(c.NotBefore), nil }
func (c *assertionClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c *assertionClaims) GetSubject() (string, error)             { return c.Subject, nil }
func (c *assertionClaims) GetAudience() (jwt.ClaimStrings, error)  { return c.Audience, nil }

// maxAssertionLen bounds the client assertions that are parsed.
const maxAssertionLen = 16 << 10

// clockSkew is how far in the future an assertion's iat or nbf may be.
const clockSkew = 5 * time.Second

// assertionClient authenticates private_key_jwt: RFC 7523 sections 2.2 and
// 3, OpenID Connect Core section 9.
func (s *Server) assertionClient(form url.Values, endpoint string) (caller, *clientError) {
	if form.Get("client_assertion_type") != ClientAssertionType {
		return caller{}, invalidClient(false, "client_assertion_type must be "+ClientAssertionType)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > maxAssertionLen {
		return caller{}, invalidClient(false, "client_assertion is missing or too long")
	}
	var c assertionClaims
	var client *Client
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		client = s.clients[c.Subject]
		if client == nil || client.Key == nil {
			return nil, errors.New("no client with a key has this sub")
		}
		algs, _ := assertionAlgs(client.Key)
		if !slices.Contains(algs, t.Method.Alg()) {
			return nil, errors.New("alg does not match the client's key")
		}
		return client.Key, nil
	}, jwt.WithValidMethods(signingAlgs), jwt.WithoutClaimsValidation())
	if err != nil {
		return caller{}, invalidClient(false, "client_assertion is malformed, unsigned or not signed with the client's key")
	}
	if desc := s.checkAssertion(&c, form.Get("client_id"), endpoint); desc != "" {
		return caller{}, invalidClient(false, desc)
	}
	return caller{id: client.ID, confidential: true, client: client}, nil
}

// checkAssertion checks the claims of a well signed assertion and records
// its jti. It returns why the assertion is refused, or "".
func (s *Server) checkAssertion(c *assertionClaims, formID, endpoint string) string {
	now := s.now()
	audOK := false
	for _, a := range c.Audience {
		if a == s.Issuer() || a == s.URL+tokenPath || a == endpoint {
			audOK = true
		}
	}
	switch {
	case c.Issuer != c.Subject:
		return "client_assertion: iss must equal sub"
	case formID != "" && formID != c.Subject:
		return "client_assertion: sub differs from client_id"
	case !audOK:
		return "client_assertion: aud must name the token endpoint or the issuer"
	case c.ID == "":
		return "client_assertion: jti is missing"
	}
	if desc := assertionTimes(c, now); desc != "" {
		return desc
	}
	s.mu.Lock()
	fresh := s.assertionJTIs.add(c.Subject+"\x00"+c.ID, c.ExpiresAt.Time, now)
	s.mu.Unlock()
	if !fresh {
		return "client_assertion: jti was used before"
	}
	return ""
}

// assertionTimes checks the exp, nbf and iat of an assertion at now. It
// returns why they are refused, or "".
func assertionTimes(c *assertionClaims, now time.Time) string {
	switch {
	case c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Time):
		return "client_assertion: exp is missing or past"
	case c.ExpiresAt.Sub(now) > MaxAssertionLifetime:
		return "client_assertion: exp is too far in the future"
	case c.NotBefore != nil && c.NotBefore.After(now.Add(clockSkew)):
		return "client_assertion: nbf is in the future"
	case c.IssuedAt != nil && c.IssuedAt.After(now.Add(clockSkew)):
		return "client_assertion: iat is in the future"
	}
	return ""
}
