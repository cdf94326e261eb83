package autorefresh

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ClientCredentials is a Refresher for the OAuth 2.0 client credentials
// grant (RFC 6749 section 4.4), for a service that calls an API as itself:
// it asks the token endpoint for an access token with the client's own
// credentials. There is no refresh token: Start gets the first token when
// the Transport holds none, and Refresh, which ignores the tokens it is
// given, gets a new one, ahead of expiry or when a request is refused. It
// is the counterpart of golang.org/x/oauth2/clientcredentials.Config.
//
// A Transport shares one token call between its concurrent requests, as it
// does for refreshes; with a Locker store (FileStore, the Redis store),
// every Transport sharing the store (processes, replicas) uses the token
// that the first of them obtained, so that the whole fleet makes one token
// call per token lifetime.
//
// A ClientCredentials session never expires: an error answer such as
// "invalid_client" (a wrong secret or key), "unauthorized_client" (the
// grant is not allowed to the client), "invalid_scope" or "invalid_target"
// is a configuration problem, reported as a *RefreshError wrapping
// ErrClientRejected and never ErrSessionExpired. The Transport then keeps
// its tokens and backs off before the next attempt: a rejected client is not
// asked again by every request. Other failures are transient, as for
// OAuth2.
//
// A ClientCredentials declares BearerScheme (see Transport.Scheme). With a
// revocation endpoint (RevocationURL, or one in the issuer's metadata),
// Transport.Logout revokes the access token at the server.
//
// A ClientCredentials is safe for concurrent use. Its fields must not be
// changed, and it must not be copied, after its first use.
type ClientCredentials struct {
	// TokenURL is the token endpoint. It must be https, or http to a
	// loopback host, unless AllowHTTP is set. If empty, it is taken from
	// the metadata of Issuer.
	TokenURL string

	// Issuer, if set, is the authorization server's issuer identifier:
	// the endpoints that are not set are taken from its metadata, as for
	// OAuth2.Issuer.
	Issuer string

	// RevocationURL is the revocation endpoint (RFC 7009), where Revoke
	// (called by Transport.Logout) revokes the access token. If empty, it
	// is taken from the metadata of Issuer, if set; without either, Revoke
	// does nothing.
	RevocationURL string

	// ClientID and ClientSecret authenticate the client, as AuthStyle
	// says. ClientID must be set; ClientSecret too, unless AuthStyle is
	// AuthStylePrivateKeyJWT.
	ClientID     string
	ClientSecret string

	// AuthStyle says how the client authenticates. The zero value is
	// AuthStyleInHeader, HTTP Basic authentication.
	AuthStyle AuthStyle

	// ClientKey, ClientKeyID, ClientKeyAlgorithm and AssertionAudience
	// configure AuthStylePrivateKeyJWT, as for OAuth2.
	ClientKey          crypto.Signer
	ClientKeyID        string
	ClientKeyAlgorithm string
	AssertionAudience  string

	// Scopes, if not empty, are sent as the "scope" parameter. If empty,
	// the server grants its default scopes for the client.
	Scopes []string

	// Resources are sent as "resource" parameters (RFC 8707), one each:
	// the absolute URIs of the APIs the token is for.
	Resources []string

	// Audiences are sent as "audience" parameters, one each, for servers
	// that name the API a token is for that way (Auth0, Okta).
	Audiences []string

	// Params, if not nil, are more form parameters sent with every token
	// request. They cannot replace grant_type, scope, resource or
	// audience when the fields above set them, nor the client
	// credentials.
	Params url.Values

	// Base sends the token, revocation and metadata requests. If nil,
	// http.DefaultTransport is used. Redirects are never followed.
	Base http.RoundTripper

	// MaxResponseBytes bounds the size of each answer read. If zero,
	// DefaultMaxResponseBytes is used.
	MaxResponseBytes int64

	// AllowHTTP permits plain http:// endpoint and issuer URLs to hosts
	// that are not loopback addresses. Tokens and credentials then cross
	// the network unencrypted.
	AllowHTTP bool

	// DPoP, if not nil, makes the tokens sender-constrained (RFC 9449):
	// every token request carries a proof of its key, and the tokens come
	// back bound to it, of type "DPoP". A Transport whose own DPoP is nil
	// uses this one for its requests. See DPoP.
	DPoP *DPoP

	now  func() time.Time // for tests; nil: time.Now
	meta *metadataCache   // Issuer's metadata, made on first use (no lock by value)
}

var (
	_ Starter = (*ClientCredentials)(nil)
	_ Revoker = (*ClientCredentials)(nil)
)

// errNoClientID is the error of a ClientCredentials without ClientID.
var errNoClientID = errors.New("autorefresh: ClientCredentials.ClientID is empty")

// HeaderScheme declares BearerScheme: a Transport whose Scheme is not set
// sends the access token in "Authorization: Bearer". See Transport.Scheme.
func (c *ClientCredentials) HeaderScheme() HeaderScheme { return BearerScheme }

// client returns the configuration of c's requests.
func (c *ClientCredentials) client() *oauthClient {
	return &oauthClient{
		tokenURL: c.TokenURL, revocationURL: c.RevocationURL, issuer: c.Issuer,
		id: c.ClientID, secret: c.ClientSecret, style: c.AuthStyle,
		key: c.ClientKey, keyID: c.ClientKeyID, keyAlg: c.ClientKeyAlgorithm, audience: c.AssertionAudience,
		base: c.Base, maxBytes: c.MaxResponseBytes, allowHTTP: c.AllowHTTP, now: c.now, meta: c.metadata(),
		dpop: c.DPoP,
	}
}

func (c *ClientCredentials) dpopConfig() *DPoP { return c.DPoP }

// metadata returns c's cache of discovered metadata, made on first use.
func (c *ClientCredentials) metadata() *metadataCache {
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if c.meta == nil {
		c.meta = new(metadataCache)
	}
	return c.meta
}

// Start implements Starter: it asks the token endpoint for an access token
// with the client's credentials (grant_type=client_credentials). The Tokens
// returned have no refresh token, and their Expiry is set from expires_in.
// Every error is a *RefreshError.
func (c *ClientCredentials) Start(ctx context.Context) (Tokens, error) {
	return c.request(ctx, Tokens{})
}

// Refresh implements Refresher: it asks for a new access token, as Start
// does. current is not sent.
func (c *ClientCredentials) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	return c.request(ctx, current)
}

// request asks for an access token; current holds the tokens in use, which
// errors never show.
func (c *ClientCredentials) request(ctx context.Context, current Tokens) (Tokens, error) {
	if c.ClientID == "" {
		return Tokens{}, &RefreshError{Err: errNoClientID}
	}
	form := make(url.Values, len(c.Params)+4)
	for k, v := range c.Params {
		form[k] = v
	}
	form.Set("grant_type", "client_credentials")
	if len(c.Scopes) > 0 {
		form.Set("scope", strings.Join(c.Scopes, " "))
	}
	if len(c.Resources) > 0 {
		form["resource"] = c.Resources
	}
	if len(c.Audiences) > 0 {
		form["audience"] = c.Audiences
	}
	return c.client().requestTokens(ctx, grantClientCredentials, form, current)
}

// Revoke implements Revoker: it revokes t's access token at the revocation
// endpoint (RFC 7009, token_type_hint=access_token), the client
// authenticating as at the token endpoint. Without a revocation endpoint
// (RevocationURL is empty and Issuer is not set or its metadata names
// none), it does nothing and returns nil. Its errors are *RevocationErrors.
func (c *ClientCredentials) Revoke(ctx context.Context, t Tokens) error {
	return c.client().revoke(ctx, Tokens{AccessToken: t.AccessToken}, true)
}

// String describes c with its client secret and key redacted.
func (c ClientCredentials) String() string {
	return "autorefresh.ClientCredentials{" + describeClient(c.TokenURL, c.Issuer, c.ClientID, c.ClientSecret, c.ClientKey) + "}"
}

// GoString is like String.
func (c ClientCredentials) GoString() string { return c.String() }

// Format implements fmt.Formatter: every verb prints String, so that the
// client secret and key never show.
func (c ClientCredentials) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// LogValue implements slog.LogValuer: a ClientCredentials logs as String.
func (c ClientCredentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes c as the JSON string of String, so that a struct
// that holds it, encoded or logged as JSON (slog's JSONHandler), shows no
// secret.
func (c ClientCredentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }
