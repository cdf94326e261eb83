package autorefreshtest_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// basicHeader returns the form header with client_secret_basic credentials.
func basicHeader(id, secret string) http.Header {
	h := formHeader.Clone()
	cred := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	return h
}

func TestClientCredentials(t *testing.T) {
	k := newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{
		{ID: "svc", Secret: "s3cret"},
		{ID: "signer", Key: k.public()},
	}})
	form := cloneValues(ccGrant)
	form.Set("scope", "read write")
	form["resource"] = []string{"https://api.example.com/", "https://files.example.com/"}
	form["audience"] = []string{"billing", "https://api.example.com/"}
	post := cloneValues(form)
	post.Set("client_id", "svc")
	post.Set("client_secret", "s3cret")

	tests := []struct {
		name   string
		header http.Header
		form   url.Values
		client string
	}{
		{"client_secret_basic", basicHeader("svc", "s3cret"), form, "svc"},
		{"client_secret_post", formHeader, post, "svc"},
		{"private_key_jwt", formHeader, withAssertion(form, k.assertion(t, "signer", srv.URL+"/oauth/token", nil)), "signer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkClientToken(t, srv, do(t, srv, "POST", "/oauth/token", tt.header, tt.form.Encode()), tt.client)
		})
	}
	if st := srv.Stats(); st.ClientCredentialsGrants != 3 || st.RefreshCalls != 3 || st.Refreshes != 0 || st.Logins != 0 {
		t.Errorf("ClientCredentialsGrants, RefreshCalls, Refreshes, Logins = %d, %d, %d, %d; want 3, 3, 0, 0",
			st.ClientCredentialsGrants, st.RefreshCalls, st.Refreshes, st.Logins)
	}
}

// checkClientToken checks the answer to the client credentials grant of
// TestClientCredentials, and uses its token.
func checkClientToken(t *testing.T, srv *autorefreshtest.Server, r response, client string) {
	t.Helper()
	access := clientTokenAnswer(t, r)
	info, ok := srv.Introspect(access)
	wantAud := []string{"https://api.example.com/", "https://files.example.com/", "billing"}
	if !ok || !info.Active || info.Subject != client || info.ClientID != client ||
		info.Scope != "read write" || !slices.Equal(info.Audience, wantAud) {
		t.Errorf("Introspect = %+v; want active, of %s, scope read write, audience %q", info, client, wantAud)
	}
	claims := jwtPayloadAny(t, access)
	if aud, _ := claims["aud"].([]any); len(aud) != 3 || claims["scope"] != "read write" || claims["client_id"] != client {
		t.Errorf("claims = %v; want aud, scope and client_id", claims)
	}
	r = do(t, srv, "GET", "/api/me", bearer(access), "")
	if r.status != 200 || r.json(t)["user"] != client {
		t.Errorf("/api/me = %d %s; want 200 %s", r.status, r.body, client)
	}
}

// clientTokenAnswer checks the answer of TestClientCredentials and returns
// its access token.
func clientTokenAnswer(t *testing.T, r response) string {
	t.Helper()
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "Bearer" || m["scope"] != "read write" || m["expires_in"] != 60.0 {
		t.Fatalf("got %d %s; want 200 Bearer with scope and expires_in", r.status, r.body)
	}
	if _, ok := m["refresh_token"]; ok {
		t.Error("the answer has a refresh_token; want none (RFC 6749 section 4.4.3)")
	}
	access, _ := m["access_token"].(string)
	return access
}

func TestClientCredentialsRefusals(t *testing.T) {
	clients := []autorefreshtest.Client{
		{ID: "svc", Secret: "s3cret", Scopes: []string{"read", "write"}},
		{ID: "spa"}, // public
	}
	with := func(kv ...string) url.Values {
		f := cloneValues(ccGrant)
		for i := 0; i < len(kv); i += 2 {
			f.Add(kv[i], kv[i+1])
		}
		return f
	}
	tests := []struct {
		name       string
		clients    []autorefreshtest.Client
		header     http.Header
		form       url.Values
		wantStatus int
		wantError  string
		wantScope  string
	}{
		{"default scope", clients, basicHeader("svc", "s3cret"), ccGrant, 200, "", "read write"},
		{"narrower scope", clients, basicHeader("svc", "s3cret"), with("scope", "read"), 200, "", "read"},
		{"scope not allowed", clients, basicHeader("svc", "s3cret"), with("scope", "read admin"), 400, "invalid_scope", ""},
		{"wrong secret", clients, basicHeader("svc", "nope"), ccGrant, 401, "invalid_client", ""},
		{"wrong secret in the body", clients, formHeader, with("client_id", "svc", "client_secret", "nope"), 400, "invalid_client", ""},
		{"no authentication", clients, formHeader, with("client_id", "svc"), 401, "invalid_client", ""},
		{"public client", clients, formHeader, with("client_id", "spa"), 400, "unauthorized_client", ""},
		{"no client registered", nil, basicHeader("svc", "s3cret"), ccGrant, 401, "invalid_client", ""},
		{"relative resource", clients, basicHeader("svc", "s3cret"), with("resource", "/api"), 400, "invalid_target", ""},
		{"resource with a fragment", clients, basicHeader("svc", "s3cret"), with("resource", "https://a.example/#x"), 400, "invalid_target", ""},
		{"repeated scope", clients, basicHeader("svc", "s3cret"), with("scope", "read", "scope", "write"), 400, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{Clients: tt.clients})
			r := do(t, srv, "POST", "/oauth/token", tt.header, tt.form.Encode())
			m := r.json(t)
			if r.status != tt.wantStatus || tt.wantError != "" && m["error"] != tt.wantError {
				t.Fatalf("got %d %s; want %d %s", r.status, r.body, tt.wantStatus, tt.wantError)
			}
			if tt.wantScope != "" && m["scope"] != tt.wantScope {
				t.Errorf("scope = %v; want %q", m["scope"], tt.wantScope)
			}
			if ch := r.header.Get("WWW-Authenticate"); (r.status == 401) != strings.HasPrefix(ch, "Basic ") {
				t.Errorf("status %d with WWW-Authenticate %q; want a Basic challenge exactly with 401", r.status, ch)
			}
		})
	}
}

// TestClientCredentialsFaults: the refresh faults apply to client
// credentials grants, which are refresh calls.
func TestClientCredentialsFaults(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{ClientID: "svc", ClientSecret: "s3cret"})
	send := func() (*http.Response, error) {
		req, _ := http.NewRequest("POST", srv.URL+"/oauth/token", strings.NewReader(ccGrant.Encode()))
		req.Header = basicHeader("svc", "s3cret")
		return srv.Client().Do(req)
	}
	srv.FailRefresh(1, http.StatusServiceUnavailable)
	resp, err := send()
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("FailRefresh: %v %v; want 503", resp, err)
	}
	resp.Body.Close()

	srv.SetRefreshFault(autorefreshtest.FaultDropAfterRotate, 1)
	resp, err = send()
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("FaultDropAfterRotate: reading the body: %v; want io.ErrUnexpectedEOF", err)
	}
	st := srv.Stats()
	if st.RefreshCalls != 2 || st.RefreshFaults != 2 || st.ClientCredentialsGrants != 1 {
		t.Errorf("RefreshCalls, RefreshFaults, ClientCredentialsGrants = %d, %d, %d; want 2, 2, 1",
			st.RefreshCalls, st.RefreshFaults, st.ClientCredentialsGrants)
	}
}

func TestClientCredentialsDPoP(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{ClientID: "svc", ClientSecret: "s3cret"})
	k := newKey(t, "EdDSA")
	h := basicHeader("svc", "s3cret")
	h.Set("DPoP", k.proof(t, "POST", srv.URL+"/oauth/token", "", "", proofOpts{}))
	r := do(t, srv, "POST", "/oauth/token", h, ccGrant.Encode())
	m := r.json(t)
	if r.status != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("got %d %s; want 200 DPoP", r.status, r.body)
	}
	access := m["access_token"].(string)
	if info, _ := srv.Introspect(access); info.JKT != k.thumbprint() {
		t.Errorf("JKT = %q; want %q", info.JKT, k.thumbprint())
	}
	if r := dpopAPI(t, srv, "/api/me", access, k.proof(t, "GET", srv.URL+"/api/me", "", access, proofOpts{})); r.status != 200 {
		t.Errorf("API: %d; want 200", r.status)
	}
}

func TestIntrospect(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	info, ok := srv.Introspect(tok.AccessToken)
	if !ok || !info.Active || info.Subject != "alice" || !info.Expiry.Equal(tok.Expiry) || info.JKT != "" {
		t.Errorf("Introspect = %+v, %t; want active, alice, expiring %v", info, ok, tok.Expiry)
	}
	srv.Revoke(tok.AccessToken)
	if info, ok := srv.Introspect(tok.AccessToken); !ok || info.Active {
		t.Errorf("Introspect of a revoked token = %+v, %t; want known, inactive", info, ok)
	}
	for _, bad := range []string{"", "x", tok.RefreshToken, tok.AccessToken + "x"} {
		if _, ok := srv.Introspect(bad); ok {
			t.Errorf("Introspect(%.10q…) = ok; want false", bad)
		}
	}
}

func TestExpireAccessTokens(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.ExpireAccessTokens()
	r := do(t, srv, "GET", "/api/me", bearer(tok.AccessToken), "")
	if ch := r.header.Get("WWW-Authenticate"); r.status != 401 || !strings.Contains(ch, "expired") {
		t.Errorf("API after ExpireAccessTokens: %d %q; want 401 invalid_token, expired", r.status, ch)
	}
	if got := api(t, srv, tok.AccessToken); got != 403 {
		t.Errorf("API by the accessToken header: %d; want 403", got)
	}
	next := tokensOf(t, refresh(t, srv, tok))
	if got := api(t, srv, next.AccessToken); got != 200 {
		t.Errorf("API with the refreshed token: %d; want 200", got)
	}
	if info, _ := srv.Introspect(tok.AccessToken); info.Active {
		t.Error("Introspect: the expired token is active")
	}
}

// jwtPayloadAny decodes the claims of a JWT without verifying it.
func jwtPayloadAny(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts; want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatalf("decoding the claims: %v", err)
	}
	return m
}
