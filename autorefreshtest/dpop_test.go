package autorefreshtest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

var passwordGrant = url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}

// withProof returns the form header with a DPoP header of proof, unless
// proof is empty.
func withProof(proof string) http.Header {
	h := formHeader.Clone()
	if proof != "" {
		h.Set("DPoP", proof)
	}
	return h
}

// postToken posts form to the token endpoint with the DPoP proof, if any.
func postToken(t *testing.T, srv *autorefreshtest.Server, form url.Values, proof string) response {
	t.Helper()
	return do(t, srv, "POST", "/oauth/token", withProof(proof), form.Encode())
}

// dpopAPI calls GET path with "Authorization: DPoP token" and the proof.
func dpopAPI(t *testing.T, srv *autorefreshtest.Server, path, token, proof string) response {
	t.Helper()
	h := http.Header{"Authorization": {"DPoP " + token}}
	if proof != "" {
		h.Set("DPoP", proof)
	}
	return do(t, srv, "GET", path, h, "")
}

// dpopLogin makes a password grant with a proof by k and returns the
// access and refresh tokens.
func dpopLogin(t *testing.T, srv *autorefreshtest.Server, k *testKey, nonce string) (access, refresh string) {
	t.Helper()
	r := postToken(t, srv, passwordGrant, k.proof(t, "POST", srv.URL+"/oauth/token", nonce, "", proofOpts{}))
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("password grant with a proof: %d %s; want 200 with token_type DPoP", r.status, r.body)
	}
	access, _ = m["access_token"].(string)
	refresh, _ = m["refresh_token"].(string)
	return access, refresh
}

func TestDPoPBoundTokens(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{})
			k := newKey(t, alg)
			access, _ := dpopLogin(t, srv, k, "")
			info, ok := srv.Introspect(access)
			if !ok || !info.Active || info.JKT != k.thumbprint() {
				t.Fatalf("Introspect = %+v, %t; want an active token bound to %s", info, ok, k.thumbprint())
			}
			r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{}))
			if r.status != 200 || r.json(t)["user"] != "alice" {
				t.Fatalf("API with DPoP: %d %s; want 200 alice", r.status, r.body)
			}
			// htu ignores the query, and is compared after normalization.
			r = dpopAPI(t, srv, "/api/me?x=1", access,
				k.proof(t, "GET", strings.Replace(srv.URL, "http://", "HTTP://", 1)+"/api/%6De?y=2#f", "", access, proofOpts{}))
			if r.status != 200 {
				t.Errorf("API with a query and a normalizable htu: %d %s; want 200", r.status, r.body)
			}
			if st := srv.Stats(); st.DPoPProofs != 3 || st.DPoPRefusals != (autorefreshtest.DPoPRefusals{}) {
				t.Errorf("DPoPProofs = %d, DPoPRefusals = %+v; want 3 and none", st.DPoPProofs, st.DPoPRefusals)
			}
		})
	}
}

// refusalCount returns the DPoPRefusals field named reason.
func refusalCount(st autorefreshtest.Stats, reason string) int64 {
	r := st.DPoPRefusals
	return map[string]int64{"Missing": r.Missing, "Malformed": r.Malformed, "Algorithm": r.Algorithm,
		"Key": r.Key, "Signature": r.Signature, "IssuedAt": r.IssuedAt, "Replay": r.Replay,
		"Method": r.Method, "URI": r.URI, "TokenHash": r.TokenHash, "Binding": r.Binding}[reason]
}

// TestDPoPProofChecks sends a proof with one defect to the token endpoint
// and to the API: each is refused, and counted under its reason.
func TestDPoPProofChecks(t *testing.T) {
	k, other := newKey(t, "ES256"), newKey(t, "ES256")
	rsa := newKey(t, "RS256")
	jwk, _ := k.jwk()
	privateJWK := map[string]any{}
	for name, v := range jwk {
		privateJWK[name] = v
	}
	privateJWK["d"] = "AAAA"
	old := time.Now().Add(-2 * time.Minute).Unix()

	tests := []struct {
		name   string
		reason string
		// proof returns the proof for method and htu (and the access
		// token at the API).
		proof func(t *testing.T, method, htu, token string) string
	}{
		{"not a JWT", "Malformed", func(*testing.T, string, string, string) string { return "not.a.jwt" }},
		{"typ JWT", "Malformed", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"typ": "JWT"}})
		}},
		{"no typ", "Malformed", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"typ": nil}})
		}},
		{"crit", "Malformed", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"crit": []string{"x"}, "x": 1}})
		}},
		{"no jti", "Malformed", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{claims: jwt.MapClaims{"jti": nil}})
		}},
		{"no iat", "Malformed", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{claims: jwt.MapClaims{"iat": nil}})
		}},
		{"alg none", "Algorithm", func(t *testing.T, m, u, tok string) string {
			p := k.proof(t, m, u, "", tok, proofOpts{})
			parts := strings.Split(p, ".")
			return b64([]byte(`{"alg":"none","typ":"dpop+jwt"}`)) + "." + parts[1] + "."
		}},
		{"HS256", "Algorithm", func(t *testing.T, m, u, tok string) string {
			claims := jwt.MapClaims{"jti": "x", "htm": m, "htu": u, "iat": time.Now().Unix()}
			h := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
			h.Header["typ"], h.Header["jwk"] = "dpop+jwt", jwk
			s, _ := h.SignedString([]byte("secret"))
			return s
		}},
		{"alg of another key type", "Algorithm", func(t *testing.T, m, u, tok string) string {
			rj, _ := rsa.jwk()
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"jwk": rj}})
		}},
		{"no jwk", "Key", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"jwk": nil}})
		}},
		{"private jwk", "Key", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"jwk": privateJWK}})
		}},
		{"symmetric jwk", "Key", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}})
		}},
		{"signed by another key", "Signature", func(t *testing.T, m, u, tok string) string {
			oj, _ := other.jwk()
			return k.proof(t, m, u, "", tok, proofOpts{header: map[string]any{"jwk": oj}})
		}},
		{"iat too old", "IssuedAt", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{claims: jwt.MapClaims{"iat": old}})
		}},
		{"iat in the future", "IssuedAt", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u, "", tok, proofOpts{claims: jwt.MapClaims{"iat": time.Now().Add(2 * time.Minute).Unix()}})
		}},
		{"htm", "Method", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, "PUT", u, "", tok, proofOpts{})
		}},
		{"htm in lower case", "Method", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, strings.ToLower(m), u, "", tok, proofOpts{})
		}},
		{"htu path", "URI", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, u+"x", "", tok, proofOpts{})
		}},
		{"htu host", "URI", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, strings.Replace(u, "127.0.0.1", "127.0.0.2", 1), "", tok, proofOpts{})
		}},
		{"htu scheme", "URI", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, strings.Replace(u, "http:", "https:", 1), "", tok, proofOpts{})
		}},
		{"htu relative", "URI", func(t *testing.T, m, u, tok string) string {
			return k.proof(t, m, "/oauth/token", "", tok, proofOpts{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{})
			r := postToken(t, srv, passwordGrant, tt.proof(t, "POST", srv.URL+"/oauth/token", ""))
			if got := r.json(t)["error"]; r.status != 400 || got != "invalid_dpop_proof" {
				t.Errorf("token endpoint: %d %v; want 400 invalid_dpop_proof", r.status, got)
			}
			access, _ := dpopLogin(t, srv, k, "")
			r = dpopAPI(t, srv, "/api/me", access, tt.proof(t, "GET", srv.URL+"/api/me", access))
			if ch := r.header.Get("WWW-Authenticate"); r.status != 401 || !strings.HasPrefix(ch, `DPoP error="invalid_dpop_proof"`) {
				t.Errorf("API: %d %q; want 401 with a DPoP invalid_dpop_proof challenge", r.status, ch)
			}
			st := srv.Stats()
			if n := refusalCount(st, tt.reason); n != 2 {
				t.Errorf("DPoPRefusals.%s = %d; want 2 (%+v)", tt.reason, n, st.DPoPRefusals)
			}
			if st.DPoPProofs != 1 || st.API401s != 1 {
				t.Errorf("DPoPProofs, API401s = %d, %d; want 1, 1", st.DPoPProofs, st.API401s)
			}
		})
	}
}

func TestDPoPReplayAndMultipleProofs(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	k := newKey(t, "ES256")
	access, _ := dpopLogin(t, srv, k, "")
	proof := k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{})
	if r := dpopAPI(t, srv, "/api/me", access, proof); r.status != 200 {
		t.Fatalf("first use of a proof: %d; want 200", r.status)
	}
	if r := dpopAPI(t, srv, "/api/me", access, proof); r.status != 401 {
		t.Errorf("replayed proof: %d; want 401", r.status)
	}
	// A jti is unique across the token endpoint and the API, too.
	p := k.proof(t, "POST", srv.URL+"/oauth/token", "", "", proofOpts{claims: jwt.MapClaims{"jti": "same"}})
	postToken(t, srv, passwordGrant, p)
	p = k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{claims: jwt.MapClaims{"jti": "same"}})
	if r := dpopAPI(t, srv, "/api/me", access, p); r.status != 401 {
		t.Errorf("a jti used at the token endpoint, then at the API: %d; want 401", r.status)
	}
	// Two DPoP headers.
	h := http.Header{"Authorization": {"DPoP " + access}, "Dpop": {
		k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{}),
		k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{}),
	}}
	if r := do(t, srv, "GET", "/api/me", h, ""); r.status != 401 {
		t.Errorf("two DPoP headers: %d; want 401", r.status)
	}
	st := srv.Stats().DPoPRefusals
	if st.Replay != 2 || st.Malformed != 1 {
		t.Errorf("Replay, Malformed refusals = %d, %d; want 2, 1", st.Replay, st.Malformed)
	}
}

// TestDPoPResourceRefusals covers the binding checks of the resource
// routes: which challenge each misuse gets.
func TestDPoPResourceRefusals(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	k, other := newKey(t, "ES256"), newKey(t, "EdDSA")
	access, _ := dpopLogin(t, srv, k, "")
	bearerTok := srv.Issue("bob").AccessToken
	me := srv.URL + "/api/me"
	tests := []struct {
		name          string
		header        http.Header
		wantStatus    int
		wantChallenge string // prefix
		wantBinding   int64
	}{
		{"bound token as Bearer", bearer(access), 401, `DPoP error="invalid_token"`, 1},
		{"bound token in the accessToken header", http.Header{"accessToken": {access}}, 403, "", 1},
		{"proof by another key", http.Header{"Authorization": {"DPoP " + access},
			"Dpop": {other.proof(t, "GET", me, "", access, proofOpts{})}}, 401, `DPoP error="invalid_token"`, 1},
		{"no proof", http.Header{"Authorization": {"DPoP " + access}}, 401, `DPoP error="invalid_dpop_proof"`, 0},
		{"ath of another token", http.Header{"Authorization": {"DPoP " + access},
			"Dpop": {k.proof(t, "GET", me, "", bearerTok, proofOpts{})}}, 401, `DPoP error="invalid_dpop_proof"`, 0},
		{"no ath", http.Header{"Authorization": {"DPoP " + access},
			"Dpop": {k.proof(t, "GET", me, "", "", proofOpts{})}}, 401, `DPoP error="invalid_dpop_proof"`, 0},
		{"Bearer token as DPoP", http.Header{"Authorization": {"DPoP " + bearerTok},
			"Dpop": {k.proof(t, "GET", me, "", bearerTok, proofOpts{})}}, 401, `DPoP error="invalid_token"`, 1},
		{"forged token as DPoP", http.Header{"Authorization": {"DPoP forged"},
			"Dpop": {k.proof(t, "GET", me, "", "forged", proofOpts{})}}, 401, `DPoP error="invalid_token"`, 0},
		{"Bearer token as Bearer", bearer(bearerTok), 200, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Stats().DPoPRefusals.Binding
			r := do(t, srv, "GET", "/api/me", tt.header, "")
			ch := r.header.Get("WWW-Authenticate")
			if r.status != tt.wantStatus || !strings.HasPrefix(ch, tt.wantChallenge) || tt.wantChallenge == "" && ch != "" {
				t.Errorf("got %d %q; want %d %q", r.status, ch, tt.wantStatus, tt.wantChallenge)
			}
			if tt.wantChallenge != "" && !strings.Contains(ch, `algs="ES256 `) {
				t.Errorf("challenge %q lacks algs", ch)
			}
			if n := srv.Stats().DPoPRefusals.Binding - before; n != tt.wantBinding {
				t.Errorf("DPoPRefusals.Binding grew by %d; want %d", n, tt.wantBinding)
			}
		})
	}
	// /auth/check answers a DPoP request like the API, and others with 403.
	r := dpopAPI(t, srv, "/auth/check", access, k.proof(t, "GET", srv.URL+"/auth/check", "", access, proofOpts{}))
	if r.status != 200 || r.json(t)["user"] != "alice" {
		t.Errorf("check with DPoP: %d %s; want 200 alice", r.status, r.body)
	}
	if r := dpopAPI(t, srv, "/auth/check", access, ""); r.status != 401 {
		t.Errorf("check with DPoP and no proof: %d; want 401", r.status)
	}
	if r := do(t, srv, "GET", "/auth/check", bearer(access), ""); r.status != 403 {
		t.Errorf("check with the bound token as Bearer: %d; want 403", r.status)
	}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

// TestDPoPRefreshBindingPublic follows RFC 9449 section 5: the refresh
// tokens of a public client are bound to its key.
func TestDPoPRefreshBindingPublic(t *testing.T) {
	k, other := newKey(t, "ES256"), newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{})
	tokenURL := srv.URL + "/oauth/token"
	_, rt := dpopLogin(t, srv, k, "")
	for _, tt := range []struct {
		name  string
		proof string
	}{
		{"no proof", ""},
		{"another key", other.proof(t, "POST", tokenURL, "", "", proofOpts{})},
	} {
		r := postToken(t, srv, refreshForm(rt), tt.proof)
		if got := r.json(t)["error"]; r.status != 400 || got != "invalid_grant" {
			t.Errorf("refresh with %s: %d %v; want 400 invalid_grant", tt.name, r.status, got)
		}
	}
	if r := refresh(t, srv, autorefresh.Tokens{RefreshToken: rt}); r.status != 401 {
		t.Errorf("custom refresh of a bound refresh token: %d; want 401", r.status)
	}
	r := postToken(t, srv, refreshForm(rt), k.proof(t, "POST", tokenURL, "", "", proofOpts{}))
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("refresh with the key: %d %s; want 200 DPoP", r.status, r.body)
	}
	if info, _ := srv.Introspect(m["access_token"].(string)); info.JKT != k.thumbprint() {
		t.Errorf("refreshed token bound to %q; want %q", info.JKT, k.thumbprint())
	}
	// The rotated refresh token is bound too.
	r = postToken(t, srv, refreshForm(m["refresh_token"].(string)), other.proof(t, "POST", tokenURL, "", "", proofOpts{}))
	if r.status != 400 {
		t.Errorf("rotated refresh token with another key: %d; want 400", r.status)
	}
	if st := srv.Stats(); st.RefreshRejections != 4 || st.Refreshes != 1 {
		t.Errorf("RefreshRejections, Refreshes = %d, %d; want 4, 1", st.RefreshRejections, st.Refreshes)
	}
}

// TestDPoPRefreshBindingConfidential follows RFC 9449 section 5: the
// refresh tokens of a confidential client are not bound to a key.
func TestDPoPRefreshBindingConfidential(t *testing.T) {
	k, other := newKey(t, "ES256"), newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{ClientID: "app", ClientSecret: "secret"})
	tokenURL := srv.URL + "/oauth/token"
	form := func(v url.Values) url.Values {
		v = cloneValues(v)
		v.Set("client_id", "app")
		v.Set("client_secret", "secret")
		return v
	}
	r := postToken(t, srv, form(passwordGrant), k.proof(t, "POST", tokenURL, "", "", proofOpts{}))
	rt, _ := r.json(t)["refresh_token"].(string)
	r = postToken(t, srv, form(refreshForm(rt)), other.proof(t, "POST", tokenURL, "", "", proofOpts{}))
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("refresh with another key: %d %s; want 200 DPoP", r.status, r.body)
	}
	if info, _ := srv.Introspect(m["access_token"].(string)); info.JKT != other.thumbprint() {
		t.Errorf("token bound to %q; want the new key %q", info.JKT, other.thumbprint())
	}
	r = postToken(t, srv, form(refreshForm(m["refresh_token"].(string))), "")
	if m := r.json(t); r.status != 200 || m["token_type"] != "Bearer" {
		t.Errorf("refresh without a proof: %d %s; want 200 Bearer", r.status, r.body)
	}
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

func TestRequireDPoP(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{RequireDPoP: true})
	r := postToken(t, srv, passwordGrant, "")
	if got := r.json(t)["error"]; r.status != 400 || got != "invalid_dpop_proof" {
		t.Errorf("token request without a proof: %d %v; want 400 invalid_dpop_proof", r.status, got)
	}
	unbound := srv.Issue("alice").AccessToken
	for _, tok := range []string{unbound, "forged"} {
		r = do(t, srv, "GET", "/api/me", bearer(tok), "")
		if ch := r.header.Get("WWW-Authenticate"); r.status != 401 || !strings.HasPrefix(ch, `DPoP error="invalid_token"`) {
			t.Errorf("Bearer token: %d %q; want 401 with a DPoP challenge", r.status, ch)
		}
	}
	k := newKey(t, "ES256")
	access, _ := dpopLogin(t, srv, k, "")
	if r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{})); r.status != 200 {
		t.Errorf("DPoP request: %d; want 200", r.status)
	}
	if st := srv.Stats().DPoPRefusals; st.Missing != 1 || st.Binding != 1 {
		t.Errorf("Missing, Binding refusals = %d, %d; want 1, 1", st.Missing, st.Binding)
	}
}

// nonceLogin makes a password grant with a proof by k at a server that
// requires nonces: the first try is answered use_dpop_nonce, the second
// succeeds. It returns the access token and the nonce.
func nonceLogin(t *testing.T, srv *autorefreshtest.Server, k *testKey) (access, nonce string) {
	t.Helper()
	tokenURL := srv.URL + "/oauth/token"
	// The token endpoint demands its nonce.
	r := postToken(t, srv, passwordGrant, k.proof(t, "POST", tokenURL, "", "", proofOpts{}))
	nonce = r.header.Get("DPoP-Nonce")
	if got := r.json(t)["error"]; r.status != 400 || got != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("token request without a nonce: %d %v, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", r.status, got, nonce)
	}
	r = postToken(t, srv, passwordGrant, k.proof(t, "POST", tokenURL, nonce, "", proofOpts{}))
	if r.status != 200 || r.header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("token request with the nonce: %d, DPoP-Nonce %q; want 200 with the same nonce", r.status, r.header.Get("DPoP-Nonce"))
	}
	access, _ = r.json(t)["access_token"].(string)
	return access, nonce
}

func TestDPoPNonces(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{RequireDPoPNonce: true})
	k := newKey(t, "ES256")
	me := srv.URL + "/api/me"
	access, asNonce := nonceLogin(t, srv, k)

	// The API has a nonce of its own.
	r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, asNonce, access, proofOpts{}))
	rsNonce := r.header.Get("DPoP-Nonce")
	if ch := r.header.Get("WWW-Authenticate"); r.status != 401 || !strings.HasPrefix(ch, `DPoP error="use_dpop_nonce"`) ||
		rsNonce == "" || rsNonce == asNonce {
		t.Fatalf("API with the token endpoint's nonce: %d %q, DPoP-Nonce %q; want 401 use_dpop_nonce with another nonce", r.status, ch, rsNonce)
	}
	r = dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, rsNonce, access, proofOpts{}))
	if r.status != 200 || r.header.Get("DPoP-Nonce") != rsNonce {
		t.Fatalf("API with its nonce: %d, DPoP-Nonce %q; want 200 with the nonce", r.status, r.header.Get("DPoP-Nonce"))
	}
	// Every response carries the current nonce, even without DPoP.
	if got := do(t, srv, "GET", "/api/me", bearer("x"), "").header.Get("DPoP-Nonce"); got != rsNonce {
		t.Errorf("a Bearer response's DPoP-Nonce = %q; want %q", got, rsNonce)
	}

	srv.RotateDPoPNonce()
	r = dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, rsNonce, access, proofOpts{}))
	if r.status != 401 || r.header.Get("DPoP-Nonce") == rsNonce {
		t.Errorf("API with a rotated-out nonce: %d, DPoP-Nonce %q; want 401 with a new nonce", r.status, r.header.Get("DPoP-Nonce"))
	}
	if st := srv.Stats(); st.DPoPNonceDemands != 3 || st.DPoPProofs != 2 || st.DPoPRefusals != (autorefreshtest.DPoPRefusals{}) {
		t.Errorf("DPoPNonceDemands, DPoPProofs, refusals = %d, %d, %+v; want 3, 2, none",
			st.DPoPNonceDemands, st.DPoPProofs, st.DPoPRefusals)
	}
}

func TestDPoPNonceEvery(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{RequireDPoPNonce: true, DPoPNonceEvery: 2})
	k := newKey(t, "ES256")
	// A token request without a proof gets Bearer tokens, and the nonce.
	asNonce := postToken(t, srv, passwordGrant, "").header.Get("DPoP-Nonce")
	tok, _ := dpopLogin(t, srv, k, asNonce)
	// So does an API request.
	nonce := do(t, srv, "GET", "/api/me", bearer("x"), "").header.Get("DPoP-Nonce")
	first := nonce
	var seen []string
	for range 3 {
		r := dpopAPI(t, srv, "/api/me", tok, k.proof(t, "GET", srv.URL+"/api/me", nonce, tok, proofOpts{}))
		if r.status != 200 {
			t.Fatalf("API request %d with the nonce of the last response: %d %s; want 200", len(seen), r.status, r.body)
		}
		nonce = r.header.Get("DPoP-Nonce")
		seen = append(seen, nonce)
	}
	// The second proof rotated the nonce, and its response carried the new one.
	if seen[0] != first || seen[1] == first || seen[2] != seen[1] {
		t.Errorf("nonces after each request = %q (first %q); want a change after the second", seen, first)
	}
}

func TestDemandDPoPNonce(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	k := newKey(t, "ES256")
	tokenURL := srv.URL + "/oauth/token"
	access, _ := dpopLogin(t, srv, k, "")
	me := srv.URL + "/api/me"

	srv.DemandDPoPNonce(-1)
	nonce := ""
	for i := range 3 {
		r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, nonce, access, proofOpts{}))
		next := r.header.Get("DPoP-Nonce")
		if r.status != 401 || next == "" || next == nonce {
			t.Fatalf("API request %d with the last nonce: %d, DPoP-Nonce %q; want 401 with a fresh nonce", i, r.status, next)
		}
		nonce = next
		r = postToken(t, srv, passwordGrant, k.proof(t, "POST", tokenURL, "", "", proofOpts{}))
		if got := r.json(t)["error"]; r.status != 400 || got != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
			t.Fatalf("token request %d: %d %v; want 400 use_dpop_nonce with a nonce", i, r.status, got)
		}
	}
	srv.DemandDPoPNonce(1)
	if r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, "", access, proofOpts{})); r.status != 401 {
		t.Errorf("last demand: %d; want 401", r.status)
	}
	if r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", me, "", access, proofOpts{})); r.status != 200 {
		t.Errorf("after the demands: %d; want 200 (nonces are not required)", r.status)
	}
	if st := srv.Stats(); st.DPoPNonceDemands != 7 {
		t.Errorf("DPoPNonceDemands = %d; want 7", st.DPoPNonceDemands)
	}
}

func TestDPoPDowngrade(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	k := newKey(t, "ES256")
	srv.SetDPoPDowngrade(true)
	r := postToken(t, srv, passwordGrant, k.proof(t, "POST", srv.URL+"/oauth/token", "", "", proofOpts{}))
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "Bearer" {
		t.Fatalf("downgraded token response: %d %s; want 200 Bearer", r.status, r.body)
	}
	access := m["access_token"].(string)
	if info, _ := srv.Introspect(access); info.JKT != "" {
		t.Errorf("downgraded token bound to %q; want unbound", info.JKT)
	}
	if r := do(t, srv, "GET", "/api/me", bearer(access), ""); r.status != 200 {
		t.Errorf("downgraded token as Bearer: %d; want 200", r.status)
	}
	srv.ResetFaults()
	if _, rt := dpopLogin(t, srv, k, ""); rt == "" {
		t.Error("after ResetFaults: no refresh token")
	}
	if st := srv.Stats(); st.DPoPProofs != 1 {
		t.Errorf("DPoPProofs = %d; want 1 (the downgraded proof is not looked at)", st.DPoPProofs)
	}
}

func TestDPoPProofWindow(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{DPoPProofWindow: 10 * time.Second})
	k := newKey(t, "ES256")
	tokenURL := srv.URL + "/oauth/token"
	for _, tt := range []struct {
		age  time.Duration
		want int
	}{
		{5 * time.Second, 200},
		{-5 * time.Second, 200},
		{20 * time.Second, 400},
		{-20 * time.Second, 400},
	} {
		p := k.proof(t, "POST", tokenURL, "", "", proofOpts{claims: jwt.MapClaims{"iat": time.Now().Add(-tt.age).Unix()}})
		if r := postToken(t, srv, passwordGrant, p); r.status != tt.want {
			t.Errorf("proof of age %v: %d; want %d", tt.age, r.status, tt.want)
		}
	}
}
