package autorefresh

import (
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// clientAssertionType is the client_assertion_type of a token request
// authenticated with a JWT (RFC 7523 section 2.2), the
// "private_key_jwt" method of OpenID Connect Core section 9.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientAssertionLifetime is how long an assertion is valid: long enough
// for one token request and its clock skew, short enough that a stolen one
// is soon useless.
const clientAssertionLifetime = 60 * time.Second

// clientAssertion signs the client assertions of private_key_jwt client
// authentication (RFC 7523 sections 2.2 and 3, OpenID Connect Core section
// 9) for one client and key. Each token request gets a new one: send it as
// the form parameters client_assertion_type=clientAssertionType and
// client_assertion=<the assertion>.
//
// A clientAssertion is immutable and safe for concurrent use when its key
// is. It never prints its key.
type clientAssertion struct {
	signer   *jwsSigner
	header   []byte // the JSON protected header
	clientID string
	lifetime time.Duration
	now      func() time.Time
}

// newClientAssertion returns a clientAssertion for the client clientID that
// signs with key, using algorithm alg or the key's default (see
// newJWSSigner: RS256 for RSA, ES256 for ECDSA P-256, ...). The header
// carries "kid" when kid is not empty: the ID of the key among those the
// client registered. Its errors wrap ErrUnsupportedKey or ErrClientAssertion.
func newClientAssertion(key crypto.Signer, alg, kid, clientID string) (*clientAssertion, error) {
	if clientID == "" {
		return nil, fmt.Errorf("%w: no client ID", ErrClientAssertion)
	}
	s, err := newJWSSigner(key, alg)
	if err != nil {
		return nil, err
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid,omitempty"`
	}{s.alg, kid})
	if err != nil {
		return nil, err // cannot happen for strings
	}
	return &clientAssertion{
		signer:   s,
		header:   header,
		clientID: clientID,
		lifetime: clientAssertionLifetime,
		now:      time.Now,
	}, nil
}

// Format prints a without its key, for every verb.
func (a clientAssertion) Format(f fmt.State, verb rune) {
	if a.signer == nil {
		io.WriteString(f, "clientAssertion()")
		return
	}
	fmt.Fprintf(f, "clientAssertion(%s)", a.signer.alg)
}

// assertionClaims are the claims of a client assertion (RFC 7523 section 3).
type assertionClaims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Jti string `json:"jti"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// sign returns a new client assertion for the audience aud: the token
// endpoint's URL or the authorization server's issuer identifier, as the
// server asks. Its claims are "iss" and "sub" (the client ID), "aud", a new
// random "jti", "iat" (now) and "exp" (a minute later).
func (a *clientAssertion) sign(aud string) (string, error) {
	if aud == "" {
		return "", fmt.Errorf("%w: no audience", ErrClientAssertion)
	}
	now := a.now()
	claims, err := json.Marshal(assertionClaims{
		Iss: a.clientID,
		Sub: a.clientID,
		Aud: aud,
		Jti: string(appendJTI(nil)),
		Iat: now.Unix(),
		Exp: now.Add(a.lifetime).Unix(),
	})
	if err != nil {
		return "", err // cannot happen for strings and integers
	}
	return a.signer.sign(a.header, claims)
}
