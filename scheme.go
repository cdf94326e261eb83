package autorefresh

import (
	"net/http"
	"net/textproto"
	"strings"
)

// A HeaderScheme says which request headers carry the tokens. Header names
// are sent exactly as written, not canonicalised.
//
// The zero HeaderScheme means DefaultScheme in Endpoint.Scheme. In
// Transport.Scheme it means that the tokens and the Refresher choose the
// scheme (see Transport.Scheme).
type HeaderScheme struct {
	// AccessHeader is the header that carries the access token, after
	// AccessPrefix, which is written before the token as it is (for
	// BearerScheme, "Authorization" and "Bearer ").
	AccessHeader string
	AccessPrefix string

	// RefreshHeader carries the refresh token on every request. If empty,
	// the refresh token is only sent to the refresh endpoint.
	RefreshHeader string
}

// Predefined header schemes.
var (
	// DefaultScheme sends "accessToken: <access>" and
	// "refreshToken: <refresh>" on every request.
	DefaultScheme = HeaderScheme{AccessHeader: "accessToken", RefreshHeader: "refreshToken"}

	// AccessOnlyScheme sends only "accessToken: <access>".
	AccessOnlyScheme = HeaderScheme{AccessHeader: "accessToken"}

	// BearerScheme sends only "Authorization: Bearer <access>" (RFC 6750).
	BearerScheme = HeaderScheme{AccessHeader: "Authorization", AccessPrefix: "Bearer "}
)

func (s HeaderScheme) orDefault() HeaderScheme {
	if s == (HeaderScheme{}) {
		return DefaultScheme
	}
	return s
}

// schemeDeclarer is a Refresher that declares how its tokens are sent.
type schemeDeclarer interface {
	HeaderScheme() HeaderScheme
}

// schemeFor returns the scheme that sends tok: Scheme when set, else the
// one its token type asks for, else the one the Refresher declares, else
// DefaultScheme. See Transport.Scheme.
func (t *Transport) schemeFor(tok Tokens) HeaderScheme {
	if t.Scheme != (HeaderScheme{}) {
		return t.Scheme
	}
	if strings.EqualFold(tok.TokenType, "bearer") {
		return BearerScheme
	}
	if d, ok := t.Refresher.(schemeDeclarer); ok {
		return d.HeaderScheme().orDefault()
	}
	return DefaultScheme
}

// headers are the names and values of the headers that carry a state's
// tokens. Empty values are not sent.
type headers struct {
	accessName, accessCanon, access    string
	refreshName, refreshCanon, refresh string
	bearer                             bool // the access token goes in Authorization

	// dpop is set for DPoP-bound tokens, sent with a proof whose "ath" is
	// ath, the hash of the access token.
	dpop bool
	ath  string
}

// replaces reports whether the caller's header k, in canonical form, is
// one that h gives a value of its own.
func (h *headers) replaces(k string) bool {
	return h.access != "" && k == h.accessCanon || h.refresh != "" && k == h.refreshCanon
}

// dpopScheme sends a DPoP-bound access token (RFC 9449 section 7.1).
var dpopScheme = HeaderScheme{AccessHeader: "Authorization", AccessPrefix: "DPoP "}

// headersFor returns the headers that carry tok.
func (t *Transport) headersFor(tok Tokens) headers {
	sc := t.schemeFor(tok)
	if isDPoP(tok) {
		sc = dpopScheme
	}
	h := headers{
		accessName:   sc.AccessHeader,
		accessCanon:  textproto.CanonicalMIMEHeaderKey(sc.AccessHeader),
		refreshName:  sc.RefreshHeader,
		refreshCanon: textproto.CanonicalMIMEHeaderKey(sc.RefreshHeader),
		bearer:       sc.usesAuthorization(),
	}
	if tok.AccessToken != "" {
		h.access = sc.AccessPrefix + tok.AccessToken
	}
	if sc.RefreshHeader != "" {
		h.refresh = tok.RefreshToken
	}
	if isDPoP(tok) && tok.AccessToken != "" {
		h.dpop, h.ath = true, dpopATH(tok.AccessToken)
	}
	return h
}

// DefaultShouldRefresh is the ShouldRefresh policy of the header schemes
// that do not use the Authorization header, such as DefaultScheme and
// AccessOnlyScheme: it reports whether resp refuses the access token, which
// their servers say with 403 Forbidden. BearerShouldRefresh is its
// counterpart for BearerScheme, where a refused token is 401 Unauthorized
// (RFC 6750 section 3.1).
//
// An error code in a WWW-Authenticate challenge (RFC 6750 section 3) takes
// precedence over the status. The reactions of the two policies, where
// "refresh" means refresh the tokens and send the request once more, and
// "return" means return the response as is:
//
//	Response                                     DefaultShouldRefresh  BearerShouldRefresh
//	401 or 403, error="invalid_token"            refresh               refresh
//	401 or 403, error="insufficient_scope"       return                return
//	401 or 403, error="invalid_request"          return                return
//	401, any other challenge or none             return                refresh
//	403, any other challenge or none             refresh               return
//	any other status                             return                return
//
// A 403 with a Bearer scheme is a good token without the rights for the
// request, or a refusal that is not about the token at all (GitHub answers
// 403 when a rate limit is exceeded): a new token would not change it.
func DefaultShouldRefresh(resp *http.Response) bool {
	return refusesToken(resp, http.StatusForbidden)
}

// refuses reports whether resp, the answer to a request sent with s,
// refuses its tokens: ShouldRefresh, or the policy of s's scheme.
func (t *Transport) refuses(s *state, resp *http.Response) bool {
	switch {
	case t.ShouldRefresh != nil:
		return t.ShouldRefresh(resp)
	case s.hdr.bearer:
		return BearerShouldRefresh(resp)
	}
	return DefaultShouldRefresh(resp)
}

// BearerShouldRefresh is the ShouldRefresh policy that a Transport uses
// when its Scheme sends the access token in the Authorization header, as
// BearerScheme does. It follows RFC 6750 section 3.1: a 401 Unauthorized
// means the access token was refused, a 403 Forbidden means it was good but
// not sufficient. See DefaultShouldRefresh for the table of reactions.
func BearerShouldRefresh(resp *http.Response) bool {
	return refusesToken(resp, http.StatusUnauthorized)
}

// refusesToken implements DefaultShouldRefresh and BearerShouldRefresh: a
// 401 or 403 whose challenges carry an error code decides by it; any other
// 401 or 403 refuses the token when its status is status.
func refusesToken(resp *http.Response, status int) bool {
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return false
	}
	switch bearerError(resp.Header) {
	case "invalid_token":
		return true
	case "insufficient_scope", "invalid_request", "use_dpop_nonce", "invalid_dpop_proof":
		// Not about the token: the rights, the request, or a DPoP
		// proof that wants a nonce or was refused.
		return false
	}
	return resp.StatusCode == status
}

// bearerError returns the first error code (RFC 6750 section 3) among the
// challenges of h's WWW-Authenticate header, or "".
func bearerError(h http.Header) string {
	values := h.Values("Www-Authenticate")
	if len(values) == 0 {
		return ""
	}
	for _, c := range ParseChallenges(values) {
		if e := c.Param("error"); e != "" {
			return e
		}
	}
	return ""
}

// usesAuthorization reports whether s sends the access token in the
// Authorization header.
func (s HeaderScheme) usesAuthorization() bool {
	return strings.EqualFold(s.AccessHeader, "Authorization")
}
