package autorefreshtest_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// metadata fetches path and decodes the metadata.
func metadata(t *testing.T, srv *autorefreshtest.Server, path string) (response, map[string]any) {
	t.Helper()
	r := do(t, srv, "GET", path, nil, "")
	var m map[string]any
	if r.status == 200 {
		m = r.json(t)
	}
	return r, m
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func TestDiscovery(t *testing.T) {
	for _, tt := range []struct {
		issuerPath     string
		oauth, oidc    string
		notOAuth, notO string // paths that must 404
	}{
		{"", "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
			"/.well-known/oauth-authorization-server/x", "/x/.well-known/openid-configuration"},
		{"/tenants/t1", "/.well-known/oauth-authorization-server/tenants/t1", "/tenants/t1/.well-known/openid-configuration",
			"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"},
	} {
		t.Run("path "+tt.issuerPath, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{IssuerPath: tt.issuerPath})
			if want := srv.URL + tt.issuerPath; srv.Issuer() != want {
				t.Errorf("Issuer() = %q; want %q", srv.Issuer(), want)
			}
			for _, path := range []string{tt.oauth, tt.oidc} {
				r, m := metadata(t, srv, path)
				if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Fatalf("GET %s: %d %q; want 200 JSON", path, r.status, r.header.Get("Content-Type"))
				}
				want := map[string]string{
					"issuer":              srv.Issuer(),
					"token_endpoint":      srv.URL + "/oauth/token",
					"revocation_endpoint": srv.URL + "/oauth/revoke",
				}
				for k, v := range want {
					if m[k] != v {
						t.Errorf("GET %s: %s = %v; want %s", path, k, m[k], v)
					}
				}
				for k, v := range map[string]string{
					"grant_types_supported":                            "client_credentials",
					"token_endpoint_auth_methods_supported":            "private_key_jwt",
					"revocation_endpoint_auth_methods_supported":       "client_secret_basic",
					"token_endpoint_auth_signing_alg_values_supported": "ES256",
					"dpop_signing_alg_values_supported":                "EdDSA",
				} {
					if !slices.Contains(strs(m[k]), v) {
						t.Errorf("GET %s: %s = %v; want it to hold %s", path, k, m[k], v)
					}
				}
			}
			for _, path := range []string{tt.notOAuth, tt.notO} {
				if r := do(t, srv, "GET", path, nil, ""); r.status != 404 {
					t.Errorf("GET %s: %d; want 404", path, r.status)
				}
			}
			if st := srv.Stats(); st.DiscoveryFetches != 2 || st.DiscoveryFaults != 0 {
				t.Errorf("DiscoveryFetches, DiscoveryFaults = %d, %d; want 2, 0", st.DiscoveryFetches, st.DiscoveryFaults)
			}
		})
	}
}

// discoveryFaultTests are the DiscoveryFaults that answer 200, with a check
// of the answer.
var discoveryFaultTests = []struct {
	fault autorefreshtest.DiscoveryFault
	// check inspects the answer at path.
	check func(t *testing.T, srv *autorefreshtest.Server, path string, r response)
}{
	{autorefreshtest.DiscoveryWrongIssuer, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		if m := r.json(t); r.status != 200 || m["issuer"] == srv.Issuer() || m["token_endpoint"] != srv.URL+"/oauth/token" {
			t.Errorf("got %d %s; want another issuer, the right endpoints", r.status, r.body)
		}
	}},
	{autorefreshtest.DiscoveryNoTokenEndpoint, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		if m := r.json(t); r.status != 200 || m["token_endpoint"] != nil || m["issuer"] != srv.Issuer() {
			t.Errorf("got %d %s; want no token_endpoint", r.status, r.body)
		}
	}},
	{autorefreshtest.DiscoveryInsecureEndpoints, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		m := r.json(t)
		for _, k := range []string{"token_endpoint", "revocation_endpoint"} {
			if v, _ := m[k].(string); !strings.HasPrefix(v, "http://") || strings.HasPrefix(v, srv.URL) {
				t.Errorf("%s = %q; want plain http on another host", k, v)
			}
		}
	}},
	{autorefreshtest.DiscoveryHTML, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || json.Valid(r.body) {
			t.Errorf("got %d %q; want 200 HTML", r.status, r.header.Get("Content-Type"))
		}
	}},
	{autorefreshtest.DiscoveryMalformedJSON, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		if r.status != 200 || json.Valid(r.body) {
			t.Errorf("got %d %s; want 200 with malformed JSON", r.status, r.body)
		}
	}},
	{autorefreshtest.DiscoveryHugeBody, func(t *testing.T, srv *autorefreshtest.Server, _ string, r response) {
		if r.status != 200 || len(r.body) != autorefreshtest.HugeBodySize || !json.Valid(r.body) {
			t.Errorf("got %d with %d bytes; want 200 with %d bytes of JSON", r.status, len(r.body), autorefreshtest.HugeBodySize)
		}
	}},
}

func TestDiscoveryFaults(t *testing.T) {
	const oauthPath, oidcPath = "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"
	for _, tt := range discoveryFaultTests {
		for _, path := range []string{oauthPath, oidcPath} {
			t.Run(tt.fault.String()+path, func(t *testing.T) {
				srv := setup(t, autorefreshtest.Options{})
				srv.SetDiscoveryFault(tt.fault, 1)
				tt.check(t, srv, path, do(t, srv, "GET", path, nil, ""))
				// One fetch only.
				if r, m := metadata(t, srv, path); r.status != 200 || m["issuer"] != srv.Issuer() {
					t.Errorf("next fetch: %d %v; want the real metadata", r.status, m["issuer"])
				}
				if st := srv.Stats(); st.DiscoveryFetches != 2 || st.DiscoveryFaults != 1 {
					t.Errorf("DiscoveryFetches, DiscoveryFaults = %d, %d; want 2, 1", st.DiscoveryFetches, st.DiscoveryFaults)
				}
			})
		}
	}
}

func TestDiscoveryOIDCOnly(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	srv.SetDiscoveryFault(autorefreshtest.DiscoveryOIDCOnly, -1)
	for range 2 {
		if r := do(t, srv, "GET", "/.well-known/oauth-authorization-server", nil, ""); r.status != 404 {
			t.Errorf("RFC 8414 path: %d; want 404", r.status)
		}
		if r, m := metadata(t, srv, "/.well-known/openid-configuration"); r.status != 200 || m["issuer"] != srv.Issuer() {
			t.Errorf("OpenID path: %d; want 200 with the metadata", r.status)
		}
	}
	if st := srv.Stats(); st.DiscoveryFetches != 4 || st.DiscoveryFaults != 2 {
		t.Errorf("DiscoveryFetches, DiscoveryFaults = %d, %d; want 4, 2", st.DiscoveryFetches, st.DiscoveryFaults)
	}
	srv.ResetFaults()
	if r := do(t, srv, "GET", "/.well-known/oauth-authorization-server", nil, ""); r.status != 200 {
		t.Errorf("after ResetFaults: %d; want 200", r.status)
	}
}

func TestFailDiscovery(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	srv.FailDiscovery(2, http.StatusServiceUnavailable)
	srv.SetDiscoveryFault(autorefreshtest.DiscoveryHTML, 1) // queued behind FailDiscovery
	for i, want := range []int{503, 503} {
		if r := do(t, srv, "GET", "/.well-known/openid-configuration", nil, ""); r.status != want {
			t.Errorf("fetch %d: %d; want %d", i, r.status, want)
		}
	}
	if r := do(t, srv, "GET", "/.well-known/oauth-authorization-server", nil, ""); !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("third fetch: Content-Type %q; want the queued HTML fault", r.header.Get("Content-Type"))
	}
	if st := srv.Stats(); st.DiscoveryFetches != 3 || st.DiscoveryFaults != 3 {
		t.Errorf("DiscoveryFetches, DiscoveryFaults = %d, %d; want 3, 3", st.DiscoveryFetches, st.DiscoveryFaults)
	}
}
