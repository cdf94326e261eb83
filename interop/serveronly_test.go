package interop

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// The tests in this file are SERVER-ONLY: they prove with plain HTTP that
// the server side of a capability that autorefresh does not have yet works,
// so that the library-driven test has a server to run against. Each says
// which test replaces it (issue 16); `grep -n ServerOnly` finds them all.
// The ones of issue 15 (client credentials, discovery, revocation,
// private_key_jwt) were replaced by TestClientCredentials*, TestDiscovery,
// TestRevocationOnLogout and TestPrivateKeyJWT.

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
