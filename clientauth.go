package autorefresh

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
)

// This file authenticates OAuth 2.0 clients to the token and revocation
// endpoints: client_secret_basic and client_secret_post (RFC 6749 section
// 2.3.1), and private_key_jwt (RFC 7523 section 2.2, OpenID Connect Core
// section 9).

// AuthStyle says how an OAuth2 or ClientCredentials authenticates its
// client to the authorization server.
type AuthStyle int

const (
	// AuthStyleInHeader sends the client ID and secret with HTTP Basic
	// authentication, each form-urlencoded first as RFC 6749 section
	// 2.3.1 requires (client_secret_basic). It is the zero AuthStyle.
	AuthStyleInHeader AuthStyle = iota

	// AuthStyleInParams sends the client ID and secret as the client_id
	// and client_secret form parameters of the request body
	// (client_secret_post).
	AuthStyleInParams

	// AuthStylePrivateKeyJWT authenticates the client with a JWT that it
	// signs with its ClientKey (private_key_jwt: RFC 7523 section 2.2,
	// OpenID Connect Core section 9), sent as client_assertion with
	// client_id. Each request gets a new assertion: "iss" and "sub" are
	// the client ID, "aud" the token endpoint URL (or AssertionAudience),
	// "jti" random, "iat" now and "exp" a minute later. No secret is sent.
	AuthStylePrivateKeyJWT
)

// ErrClientAssertion is wrapped by the errors for a private_key_jwt client
// assertion that cannot be made: no ClientKey or ClientID, a ClientKey with
// another AuthStyle, a key that cannot sign (the error then wraps
// ErrUnsupportedKey too), or a key whose Sign failed (an HSM or a KMS that
// is unreachable, for example). The request is then not sent.
var ErrClientAssertion = errors.New("autorefresh: cannot make a client assertion")

// assertionError is ErrClientAssertion with its cause.
type assertionError struct{ err error }

func (e *assertionError) Error() string {
	if errors.Is(e.err, ErrClientAssertion) {
		return e.err.Error() // it says so already
	}
	return "autorefresh: cannot make a client assertion: " + trimPrefix(e.err)
}

func (e *assertionError) Unwrap() []error { return []error{ErrClientAssertion, e.err} }

// clientAuth is what authenticates the client in one request, besides the
// form parameters.
type clientAuth struct {
	basic   bool     // send the client ID and secret with HTTP Basic
	secrets []string // the credentials sent, which an answer must never show
}

// authenticate adds the client's authentication to form, the body of a
// request, with aud the audience of a client assertion. A client without ID
// does not authenticate; a client without secret (a public client) sends
// its client_id whatever its AuthStyle.
func (c *oauthClient) authenticate(form url.Values, aud string) (clientAuth, error) {
	switch {
	case c.style == AuthStylePrivateKeyJWT:
		return c.assert(form, aud)
	case c.key != nil:
		return clientAuth{}, &assertionError{errors.New("ClientKey is set but AuthStyle is not AuthStylePrivateKeyJWT")}
	case c.id == "":
		return clientAuth{}, nil
	case c.secret != "" && c.style == AuthStyleInHeader:
		// A server may quote the Authorization header it got: its
		// base64 holds the secret too.
		basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id) + ":" + url.QueryEscape(c.secret)))
		return clientAuth{basic: true, secrets: []string{c.secret, basic}}, nil
	}
	form.Set("client_id", c.id)
	if c.secret != "" {
		form.Set("client_secret", c.secret)
	}
	return clientAuth{secrets: []string{c.secret}}, nil
}

// assert adds a new client assertion for aud to form.
func (c *oauthClient) assert(form url.Values, aud string) (clientAuth, error) {
	if c.key == nil {
		return clientAuth{}, &assertionError{errors.New("AuthStylePrivateKeyJWT needs a ClientKey")}
	}
	a, err := newClientAssertion(c.key, c.keyAlg, c.keyID, c.id)
	if err != nil {
		return clientAuth{}, &assertionError{err}
	}
	if c.now != nil {
		a.now = c.now
	}
	jwt, err := a.sign(aud)
	if err != nil {
		return clientAuth{}, &assertionError{err}
	}
	form.Set("client_id", c.id)
	form.Set("client_assertion_type", clientAssertionType)
	form.Set("client_assertion", jwt)
	return clientAuth{secrets: []string{jwt}}, nil
}

// String returns the name of the AuthStyle constant, such as
// "AuthStylePrivateKeyJWT".
func (s AuthStyle) String() string {
	switch s {
	case AuthStyleInHeader:
		return "AuthStyleInHeader"
	case AuthStyleInParams:
		return "AuthStyleInParams"
	case AuthStylePrivateKeyJWT:
		return "AuthStylePrivateKeyJWT"
	}
	return fmt.Sprintf("AuthStyle(%d)", int(s))
}
