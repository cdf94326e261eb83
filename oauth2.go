package autorefresh

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// OAuth2 is a Refresher for an OAuth 2.0 token endpoint (RFC 6749 section
// 6). It POSTs grant_type=refresh_token with the current refresh token and
// reads the access_token, refresh_token, expires_in and token_type of the
// JSON answer (section 5.1). Only the refresh token is sent; the access
// token never reaches the token endpoint. A Transport whose Refresher is an
// *OAuth2 sends BearerScheme unless its Scheme is set; if you wrap an OAuth2
// in a Refresher of your own, give the wrapper a HeaderScheme method that
// returns BearerScheme (see Refresher) or set Scheme to BearerScheme, or
// tokens without a TokenType (such as those of an earlier release's store)
// send the refresh token to the API too.
//
// When the answer has no refresh_token, the current one is kept. When it has
// expires_in, the new Tokens' Expiry is that many seconds after the answer
// arrived (as x/oauth2 counts it). The token_type must be Bearer, or DPoP
// when DPoP is set (see DPoP); another one is a malformed answer.
//
// An "invalid_grant" error answer (section 5.2) means the refresh token was
// rejected: the *RefreshError wraps ErrSessionExpired and the session ends.
// So does GitHub's "bad_refresh_token". Any other failure is returned as a
// transient *RefreshError that keeps the tokens: a rejected client
// ("invalid_client", "unauthorized_client", "invalid_scope": the error then
// wraps ErrClientRejected; a configuration problem, not a dead session), 5xx
// and other statuses, error pages that are not JSON, network errors,
// timeouts, redirects, oversized or malformed answers, metadata that cannot
// be fetched or used (a *DiscoveryError) and client assertions that cannot
// be signed (ErrClientAssertion). The error's ErrorCode and Description hold
// the server's "error" and "error_description", with every occurrence of the
// tokens and the client's credentials redacted.
//
// Set TokenURL, or Issuer to find it by discovery. With a revocation
// endpoint (RevocationURL, or one in the issuer's metadata), an OAuth2 is a
// Revoker: Transport.Logout revokes the refresh token at the server.
//
// An OAuth2 is safe for concurrent use. Its fields must not be changed, and
// it must not be copied, after its first use.
//
// OAuth2 does the refresh that golang.org/x/oauth2's Config.TokenSource and
// oauth2.Transport do. It is not oauth2.Endpoint, which only names the URLs
// (AuthURL, TokenURL) of the server: set TokenURL to the oauth2.Endpoint's
// TokenURL. Keep x/oauth2 for the login (Config.Exchange, the device flow)
// and hand the token it gives, here from an oauth2.TokenSource ts, to the
// Transport:
//
//	tok, err := ts.Token()
//	// ...
//	err = tr.SetTokens(ctx, autorefresh.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry})
type OAuth2 struct {
	// TokenURL is the token endpoint, for example
	// "https://oauth2.example.com/token". It must be https, or http to a
	// loopback host, unless AllowHTTP is set. If empty, it is taken from
	// the metadata of Issuer.
	TokenURL string

	// Issuer, if set, is the authorization server's issuer identifier,
	// such as "https://accounts.example.com": the token and revocation
	// endpoints that are not set are taken from its metadata (RFC 8414,
	// or OpenID Connect Discovery). The metadata is fetched on first use,
	// from /.well-known/oauth-authorization-server (inserted before the
	// issuer's path, as RFC 8414 says) and, if that gives no usable
	// document, from /.well-known/openid-configuration; it is then kept,
	// and concurrent first uses share one fetch. A failed fetch is a
	// transient *RefreshError (wrapping a *DiscoveryError) and is tried
	// again on the next use; a document that names another issuer, has no
	// token endpoint or endpoints that are not https (or http to a
	// loopback host, unless AllowHTTP is set) is refused with an error
	// wrapping ErrBadMetadata. Issuer must be written exactly as the
	// server's metadata writes it, trailing slash included.
	Issuer string

	// RevocationURL is the revocation endpoint (RFC 7009), to which Revoke
	// (called by Transport.Logout) sends the refresh token. If empty, it
	// is taken from the metadata of Issuer, if set; without either, Revoke
	// does nothing.
	RevocationURL string

	// RevokeAccessToken makes Revoke revoke the access token too, after
	// the refresh token. Many servers revoke the access tokens of a
	// refresh token with it; for the others, set it.
	RevokeAccessToken bool

	// ClientID and ClientSecret authenticate the client, as AuthStyle
	// says. If ClientID is empty, the client does not authenticate. If
	// only ClientSecret is empty (a public client), client_id is sent as a
	// form parameter, unless AuthStyle is AuthStylePrivateKeyJWT.
	ClientID     string
	ClientSecret string

	// AuthStyle says how the client authenticates. The zero value is
	// AuthStyleInHeader, HTTP Basic authentication.
	AuthStyle AuthStyle

	// ClientKey signs the client assertions of AuthStylePrivateKeyJWT. A
	// crypto.Signer, so that a key in an HSM or a KMS works: ECDSA P-256
	// (ES256) or P-384 (ES384), RSA of at least 2048 bits (RS256, or
	// PS256 with ClientKeyAlgorithm) or Ed25519 (EdDSA). It must be nil
	// with other AuthStyles.
	ClientKey crypto.Signer

	// ClientKeyID, if set, is sent as the "kid" of the assertions: the ID
	// of ClientKey among the keys the client registered.
	ClientKeyID string

	// ClientKeyAlgorithm is the JWS algorithm of the assertions. If empty,
	// it is the key's default: ES256, ES384, RS256 or EdDSA.
	ClientKeyAlgorithm string

	// AssertionAudience is the "aud" of the client assertions. If empty,
	// it is the token endpoint's URL (for revocation requests too), as
	// OpenID Connect Core section 9 recommends; some servers want their
	// issuer identifier instead.
	AssertionAudience string

	// Scopes, if not empty, are sent as the "scope" parameter to ask for
	// a narrower set of scopes than the one originally granted. If empty,
	// the new access token has the scopes of the old one.
	Scopes []string

	// Params, if not nil, are more form parameters sent with every
	// refresh, such as "audience" or "resource" for servers that want
	// them. They cannot replace grant_type, refresh_token, scope or the
	// client credentials.
	Params url.Values

	// Base sends the token, revocation and metadata requests. If nil,
	// http.DefaultTransport is used. Redirects are never followed, so the
	// refresh token and client credentials cannot be sent to another
	// place.
	Base http.RoundTripper

	// MaxResponseBytes bounds the size of each answer read: token,
	// revocation and metadata. If zero, DefaultMaxResponseBytes is used.
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
	_ Refresher = (*OAuth2)(nil)
	_ Revoker   = (*OAuth2)(nil)
)

// HeaderScheme declares BearerScheme: a Transport whose Scheme is not set
// sends the access token of an OAuth2 in "Authorization: Bearer", and the
// refresh token only to the token endpoint. See Transport.Scheme.
func (o *OAuth2) HeaderScheme() HeaderScheme { return BearerScheme }

// client returns the configuration of o's requests.
func (o *OAuth2) client() *oauthClient {
	return &oauthClient{
		tokenURL: o.TokenURL, revocationURL: o.RevocationURL, issuer: o.Issuer,
		id: o.ClientID, secret: o.ClientSecret, style: o.AuthStyle,
		key: o.ClientKey, keyID: o.ClientKeyID, keyAlg: o.ClientKeyAlgorithm, audience: o.AssertionAudience,
		base: o.Base, maxBytes: o.MaxResponseBytes, allowHTTP: o.AllowHTTP, now: o.now, meta: o.metadata(),
		dpop: o.DPoP,
	}
}

func (o *OAuth2) dpopConfig() *DPoP { return o.DPoP }

// metadata returns o's cache of discovered metadata, made on first use.
func (o *OAuth2) metadata() *metadataCache {
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if o.meta == nil {
		o.meta = new(metadataCache)
	}
	return o.meta
}

// Refresh implements Refresher: it exchanges current's refresh token for new
// tokens.
func (o *OAuth2) Refresh(ctx context.Context, current Tokens) (Tokens, error) {
	if current.RefreshToken == "" {
		return Tokens{}, &RefreshError{Err: fmt.Errorf("%w: no refresh token", ErrSessionExpired)}
	}
	form := make(url.Values, len(o.Params)+3)
	for k, v := range o.Params {
		form[k] = v
	}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", current.RefreshToken)
	setScope(form, o.Scopes)
	return o.client().requestTokens(ctx, grantRefreshToken, form, current)
}

// setScope sets the "scope" parameter of form to scopes, or removes it when
// there are none.
func setScope(form url.Values, scopes []string) {
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	} else {
		form.Del("scope")
	}
}

// Revoke implements Revoker: it revokes t's refresh token at the revocation
// endpoint (RFC 7009, with token_type_hint=refresh_token), then its access
// token when RevokeAccessToken is set or there is no refresh token. The
// client authenticates as at the token endpoint. Without a revocation
// endpoint (RevocationURL is empty and Issuer is not set or its metadata
// names none), it does nothing and returns nil. Its errors are
// *RevocationErrors, joined when both revocations failed; Transport.Logout
// reports them and drops the tokens all the same.
func (o *OAuth2) Revoke(ctx context.Context, t Tokens) error {
	return o.client().revoke(ctx, t, o.RevokeAccessToken)
}

// String describes o with its client secret and key redacted.
func (o OAuth2) String() string {
	return "autorefresh.OAuth2{" + describeClient(o.TokenURL, o.Issuer, o.ClientID, o.ClientSecret, o.ClientKey) + "}"
}

// describeClient describes the configuration of an OAuth 2.0 client, its
// secret and key redacted.
func describeClient(tokenURL, issuer, id, secret string, key crypto.Signer) string {
	s := fmt.Sprintf("TokenURL: %q, ", printableURL(tokenURL))
	if issuer != "" {
		s += fmt.Sprintf("Issuer: %q, ", printableURL(issuer))
	}
	s += fmt.Sprintf("ClientID: %q, ClientSecret: %s", id, redact(secret))
	if key != nil {
		s += ", ClientKey: " + redacted
	}
	return s
}

// GoString is like String.
func (o OAuth2) GoString() string { return o.String() }

// Format implements fmt.Formatter: every verb prints String, so that the
// client secret and key never show.
func (o OAuth2) Format(f fmt.State, verb rune) { io.WriteString(f, o.String()) }

// LogValue implements slog.LogValuer: an OAuth2 logs as String.
func (o OAuth2) LogValue() slog.Value { return slog.StringValue(o.String()) }

// MarshalJSON encodes o as the JSON string of String, so that a struct
// that holds it, encoded or logged as JSON (slog's JSONHandler), shows no
// secret.
func (o OAuth2) MarshalJSON() ([]byte, error) { return json.Marshal(o.String()) }
