package interop

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// The tests in this file are SERVER-ONLY: they prove with plain HTTP that
// the server side of a capability that autorefresh does not have yet works,
// so that the library-driven test has a server to run against. Each says
// which test replaces it (issues 15 and 16); `grep -n ServerOnly` finds
// them all.

// origin returns the scheme and host of target, the key of DPoP nonces.
func origin(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host
}

// callAPI GETs target with the access token, as scheme ("Bearer" or
// "DPoP"); with key, with a DPoP proof, retrying once with the nonce the
// server asks for. It returns the status and the error code of the
// WWW-Authenticate challenge, if any.
func callAPI(t *testing.T, target, scheme, accessToken string, key *dpopKey) (int, string) {
	t.Helper()
	o := origin(t, target)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", scheme+" "+accessToken)
		if key != nil {
			req.Header.Set("DPoP", key.proof(t, http.MethodGet, target, accessToken, key.nonce(o)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		resp.Body.Close()
		code := challengeError(resp.Header)
		if key != nil {
			key.setNonce(o, resp.Header.Get("DPoP-Nonce"))
			if attempt == 0 && resp.StatusCode == http.StatusUnauthorized && code == "use_dpop_nonce" {
				continue
			}
		}
		return resp.StatusCode, code
	}
}

// challengeError returns the first error parameter of the
// WWW-Authenticate challenges in h.
func challengeError(h http.Header) string {
	for _, c := range autorefresh.ParseChallenges(h.Values("WWW-Authenticate")) {
		if e := c.Param("error"); e != "" {
			return e
		}
	}
	return ""
}

// getDoc GETs the JSON document at target into v.
func getDoc(t *testing.T, target string, v any) {
	t.Helper()
	status, body, err := getJSON(t.Context(), http.DefaultClient, target)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s: got %d, %v; want 200", target, status, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
}

// clientCredentials asks for a client_credentials token as c with plain
// HTTP, with DPoP when key is set.
func clientCredentials(t *testing.T, c client, extra url.Values, key *dpopKey) (int, tokenAnswer) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"}}
	for k, v := range extra {
		form[k] = v
	}
	return postForm(t, "/token", c, form, key)
}

// TestServerOnlyClientCredentials: the client credentials grant (RFC 6749
// section 4.4) with client_secret_basic and client_secret_post, with and
// without an RFC 8707 resource, and the token works at the resource
// server. A wrong secret is invalid_client.
//
// Replace with (issue 15): client credentials through two Transports
// sharing a Locker store (a FileStore) make one token call per lifetime
// (setAccessTTL shortens it), a burst after expiry one call, a 401 from
// the resource server a renewal and a replay; a rejected client a typed
// configuration error that is not retried in a loop.
func TestServerOnlyClientCredentials(t *testing.T) {
	for _, c := range []client{ccBasic, ccPost} {
		for _, resource := range []string{"", "resource"} {
			t.Run(c.ID+" "+resource, func(t *testing.T) {
				extra := url.Values{}
				if resource != "" {
					extra.Set("resource", srv.Resource)
				}
				before := getStats(t)
				status, a := clientCredentials(t, c, extra, nil)
				if status != http.StatusOK || a.AccessToken == "" || a.TokenType != "Bearer" || a.ExpiresIn != defaultTTL || a.RefreshToken != "" {
					t.Fatalf("token: got %d %q, type %q, expires_in %d, refresh token %v; want 200 Bearer %d without a refresh token",
						status, a.Error, a.TokenType, a.ExpiresIn, a.RefreshToken != "", defaultTTL)
				}
				if got := getStats(t).since(before).grant(c, "client_credentials", "ok"); got != 1 {
					t.Errorf("server: client_credentials grants = %d; want 1", got)
				}
				if status, challenge := callAPI(t, srv.Resource, "Bearer", a.AccessToken, nil); status != http.StatusOK {
					t.Errorf("resource server: got %d %s; want 200", status, challenge)
				}
			})
		}
	}
	t.Run("wrong secret", func(t *testing.T) {
		status, a := clientCredentials(t, client{ID: ccBasic.ID, Secret: "wrong"}, nil, nil)
		if status != http.StatusUnauthorized || a.Error != "invalid_client" {
			t.Errorf("got %d %q; want 401 invalid_client", status, a.Error)
		}
	})
}

// TestServerOnlyDiscovery: what the provider publishes. oidc-provider 8
// serves only the OpenID Connect document: the RFC 8414 address answers
// 404, so a client must fall back to /.well-known/openid-configuration.
//
// Replace with (issue 15): an OAuth2 given only the issuer finds the token
// and revocation endpoints (through the fallback) and refreshes.
func TestServerOnlyDiscovery(t *testing.T) {
	status, _, err := getJSON(t.Context(), http.DefaultClient, srv.url("/.well-known/oauth-authorization-server"))
	if err != nil || status != http.StatusNotFound {
		t.Errorf("RFC 8414 metadata: got %d, %v; want 404 (oidc-provider 8 does not serve it)", status, err)
	}
	var doc struct {
		Issuer                string   `json:"issuer"`
		TokenEndpoint         string   `json:"token_endpoint"`
		RevocationEndpoint    string   `json:"revocation_endpoint"`
		IntrospectionEndpoint string   `json:"introspection_endpoint"`
		UserinfoEndpoint      string   `json:"userinfo_endpoint"`
		GrantTypes            []string `json:"grant_types_supported"`
		AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
		DPoPAlgs              []string `json:"dpop_signing_alg_values_supported"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
		AuthSigningAlgs       []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	}
	getDoc(t, srv.url("/.well-known/openid-configuration"), &doc)
	for _, check := range []struct{ name, got, want string }{
		{"issuer", doc.Issuer, srv.Issuer},
		{"token_endpoint", doc.TokenEndpoint, srv.url("/token")},
		{"revocation_endpoint", doc.RevocationEndpoint, srv.url("/token/revocation")},
		{"introspection_endpoint", doc.IntrospectionEndpoint, srv.url("/token/introspection")},
		{"userinfo_endpoint", doc.UserinfoEndpoint, srv.url("/me")},
	} {
		if check.got != check.want {
			t.Errorf("%s = %q; want %q", check.name, check.got, check.want)
		}
	}
	for _, check := range []struct {
		name string
		list []string
		want []string
	}{
		{"grant_types_supported", doc.GrantTypes, []string{"authorization_code", "refresh_token", "client_credentials"}},
		{"token_endpoint_auth_methods_supported", doc.AuthMethods, []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}},
		{"token_endpoint_auth_signing_alg_values_supported", doc.AuthSigningAlgs, []string{"ES256", "RS256"}},
		{"dpop_signing_alg_values_supported", doc.DPoPAlgs, []string{"ES256", "EdDSA", "RS256", "PS256"}},
		{"code_challenge_methods_supported", doc.CodeChallengeMethods, []string{"S256"}},
	} {
		for _, w := range check.want {
			if !slices.Contains(check.list, w) {
				t.Errorf("%s = %q; want it to hold %q", check.name, check.list, w)
			}
		}
	}
}

// TestServerOnlyRevocation: revoking an access token (RFC 7009) kills only
// that token; revoking a refresh token kills the grant, so the next
// refresh is invalid_grant. Each revocation is one call that the server
// counts.
//
// Replace with (issue 15): Logout with a revocation endpoint known revokes
// the refresh token (and the access token if asked) with one call each,
// then clears the store; a failed revocation is reported and the store is
// cleared all the same.
func TestServerOnlyRevocation(t *testing.T) {
	tok := login(t, refreshBasic, nil)
	before := getStats(t)
	revoke(t, refreshBasic, tok.AccessToken, "access_token")
	if got := meStatus(t, tok.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("/me with the revoked access token: got %d; want 401", got)
	}
	status, rotated := refreshGrant(t, refreshBasic, tok.RefreshToken, nil)
	if status != http.StatusOK {
		t.Fatalf("refresh after revoking the access token: got %d %q; want 200", status, rotated.Error)
	}
	revoke(t, refreshBasic, rotated.RefreshToken, "refresh_token")
	if status, a := refreshGrant(t, refreshBasic, rotated.RefreshToken, nil); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Errorf("refresh with the revoked refresh token: got %d %q; want 400 invalid_grant", status, a.Error)
	}
	if got := meStatus(t, rotated.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("/me with the access token of the revoked grant: got %d; want 401", got)
	}
	if got := getStats(t).since(before).Routes["revocation"]["200"]; got != 2 {
		t.Errorf("server: revocations answered 200 = %d; want 2", got)
	}
}

// TestServerOnlyPrivateKeyJWT: the client "pkjwt" authenticates with a
// signed assertion (RFC 7523 section 2.2) for every grant: the code
// exchange, the refresh_token grant and client credentials; with aud the
// issuer or the token endpoint. An assertion sent twice (same jti) is
// refused.
//
// Replace with (issue 15): an OAuth2 with a crypto.Signer (pkjwtKey)
// refreshes through a Transport, a new assertion per token request, and
// client credentials work the same way.
func TestServerOnlyPrivateKeyJWT(t *testing.T) {
	tok := login(t, pkjwt, nil)
	before := getStats(t)
	status, rotated := refreshGrant(t, pkjwt, tok.RefreshToken, nil)
	if status != http.StatusOK || rotated.RefreshToken == "" {
		t.Fatalf("refresh_token grant: got %d %q; want 200", status, rotated.Error)
	}
	if got := getStats(t).since(before).grant(pkjwt, "refresh_token", "ok"); got != 1 {
		t.Errorf("server: refresh_token grants = %d; want 1", got)
	}

	for _, aud := range []string{srv.Issuer, srv.url("/token")} {
		assertion := clientAssertion(t, aud)
		form := url.Values{
			"grant_type":            {"client_credentials"},
			"scope":                 {"api:read"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		}
		anonymous := client{ID: "pkjwt"} // sends client_id; the assertion is in form
		if status, a := postForm(t, "/token", anonymous, form, nil); status != http.StatusOK {
			t.Errorf("client_credentials, aud %s: got %d %q; want 200", aud, status, a.Error)
		}
		if status, a := postForm(t, "/token", anonymous, form, nil); status != http.StatusUnauthorized || a.Error != "invalid_client" {
			t.Errorf("the same assertion again, aud %s: got %d %q; want 401 invalid_client", aud, status, a.Error)
		}
	}
}

// TestServerOnlyDPoP: with DPoP (RFC 9449) and nonces required, the token
// endpoint demands a nonce (400 use_dpop_nonce with DPoP-Nonce) and then
// issues DPoP tokens; the resource server and /me demand their own nonce
// and accept the token with a proof of the key, and refuse it as a Bearer
// token or with another key; the public client's refresh token is bound to
// the key.
//
// Replace with (issue 16): through a Transport with DPoP, a burst after
// expiry makes one token call (the nonce retry aside) and all requests
// succeed; a token stolen without the key is refused; a restart from the
// persisted key and a FileStore continues the session.
func TestServerOnlyDPoP(t *testing.T) {
	t.Run("client credentials", func(t *testing.T) {
		key := newDPoPKey(t)
		before := getStats(t)
		status, a := clientCredentials(t, dpopCC, nil, key)
		if status != http.StatusOK || a.TokenType != "DPoP" {
			t.Fatalf("token: got %d %q, type %q; want 200 DPoP", status, a.Error, a.TokenType)
		}
		d := getStats(t).since(before)
		if ok, nonce := d.grant(dpopCC, "client_credentials", "ok"), d.grant(dpopCC, "client_credentials", "use_dpop_nonce"); ok != 1 || nonce != 1 {
			t.Errorf("server: client_credentials ok = %d, use_dpop_nonce = %d; want 1, 1", ok, nonce)
		}
		wantBound(t, srv.Resource, a.AccessToken, key)

		// Introspection (RFC 7662) shows the binding: cnf.jkt is the
		// key's thumbprint (RFC 9449 section 6.2).
		var info struct {
			Active    bool   `json:"active"`
			TokenType string `json:"token_type"`
			Cnf       struct {
				JKT string `json:"jkt"`
			} `json:"cnf"`
		}
		introspect(t, dpopCC, a.AccessToken, &info)
		if !info.Active || info.TokenType != "DPoP" || info.Cnf.JKT != key.thumbprint() {
			t.Errorf("introspection: active %v, token_type %q, cnf.jkt matches the key %v; want true, DPoP, true",
				info.Active, info.TokenType, info.Cnf.JKT == key.thumbprint())
		}
	})

	t.Run("refresh token bound to the key", func(t *testing.T) {
		key := newDPoPKey(t)
		tok := login(t, dpopPublic, key)
		if tok.TokenType != "DPoP" {
			t.Fatalf("code exchange: token type %q; want DPoP", tok.TokenType)
		}
		wantBound(t, srv.url("/me"), tok.AccessToken, key)
		wantBound(t, srv.Resource, tok.AccessToken, key)

		if status, a := refreshGrant(t, dpopPublic, tok.RefreshToken, newDPoPKey(t)); status != http.StatusBadRequest || a.Error != "invalid_grant" {
			t.Errorf("refresh with another key: got %d %q; want 400 invalid_grant", status, a.Error)
		}
		if status, a := refreshGrant(t, dpopPublic, tok.RefreshToken, nil); status != http.StatusBadRequest {
			t.Errorf("refresh without a proof: got %d %q; want 400", status, a.Error)
		}
		status, a := refreshGrant(t, dpopPublic, tok.RefreshToken, key)
		if status != http.StatusOK || a.TokenType != "DPoP" || a.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh with the key: got %d %q, type %q, rotated %v; want 200 DPoP, rotated", status, a.Error, a.TokenType, a.RefreshToken != tok.RefreshToken)
		}
		wantBound(t, srv.url("/me"), a.AccessToken, key)
	})
}

// introspect asks the introspection endpoint about token as c, and
// decodes the answer into v.
func introspect(t *testing.T, c client, token string, v any) {
	t.Helper()
	form, h := url.Values{"token": {token}}, http.Header{}
	c.authenticate(t, h, form)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.url("/token/introspection"), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, h)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("introspection: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection answered %d; want 200", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("introspection: %v", err)
	}
}

// wantBound checks that target accepts accessToken only with a DPoP proof
// of key: not as a Bearer token, not with a proof of another key.
func wantBound(t *testing.T, target, accessToken string, key *dpopKey) {
	t.Helper()
	if status, challenge := callAPI(t, target, "DPoP", accessToken, key); status != http.StatusOK {
		t.Errorf("%s with the key: got %d %s; want 200", target, status, challenge)
	}
	if status, _ := callAPI(t, target, "Bearer", accessToken, nil); status != http.StatusUnauthorized {
		t.Errorf("%s as a Bearer token: got %d; want 401", target, status)
	}
	if status, _ := callAPI(t, target, "DPoP", accessToken, newDPoPKey(t)); status != http.StatusUnauthorized {
		t.Errorf("%s with another key: got %d; want 401", target, status)
	}
}
