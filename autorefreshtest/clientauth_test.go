package autorefreshtest_test

import (
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

var ccGrant = url.Values{"grant_type": {"client_credentials"}}

// assertion returns a valid private_key_jwt assertion of client id for
// aud, signed by k, with claims changed as in change (nil deletes).
func (k *testKey) assertion(t *testing.T, id, aud string, change jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"iss": id, "sub": id, "aud": aud, "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for name, v := range change {
		if v == nil {
			delete(claims, name)
		} else {
			claims[name] = v
		}
	}
	return k.sign(t, nil, claims)
}

// withAssertion returns form with the private_key_jwt parameters added.
func withAssertion(form url.Values, assertion string) url.Values {
	f := cloneValues(form)
	f.Set("client_assertion_type", autorefreshtest.ClientAssertionType)
	f.Set("client_assertion", assertion)
	return f
}

func TestPrivateKeyJWT(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, alg)
			srv := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "svc", Key: k.public()}}})
			for _, aud := range []string{srv.URL + "/oauth/token", srv.Issuer()} {
				r := postToken(t, srv, withAssertion(ccGrant, k.assertion(t, "svc", aud, nil)), "")
				if r.status != 200 {
					t.Errorf("assertion for aud %s: %d %s; want 200", aud, r.status, r.body)
				}
			}
		})
	}
}

func TestPrivateKeyJWTRefusals(t *testing.T) {
	k, other := newKey(t, "ES256"), newKey(t, "ES256")
	secretClient := autorefreshtest.Client{ID: "web", Secret: "s3cret"}
	now := time.Now()
	tests := []struct {
		name string
		// form returns the token request for the server's token URL.
		form      func(t *testing.T, tokenURL string) url.Values
		wantError string
	}{
		{"signed by another key", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, other.assertion(t, "svc", u, nil))
		}, "invalid_client"},
		{"alg none", func(t *testing.T, u string) url.Values {
			a := k.assertion(t, "svc", u, nil)
			parts := strings.Split(a, ".")
			return withAssertion(ccGrant, b64([]byte(`{"alg":"none"}`))+"."+parts[1]+".")
		}, "invalid_client"},
		{"HS256 with the secret of another client", func(t *testing.T, u string) url.Values {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "web", "sub": "web", "aud": u,
				"jti": "x", "exp": now.Add(time.Minute).Unix()}).SignedString([]byte("s3cret"))
			return withAssertion(ccGrant, s)
		}, "invalid_client"},
		{"iss differs from sub", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"iss": "web"}))
		}, "invalid_client"},
		{"unknown client", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "nobody", u, nil))
		}, "invalid_client"},
		{"client without a key", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "web", u, nil))
		}, "invalid_client"},
		{"client_id differs", func(t *testing.T, u string) url.Values {
			f := withAssertion(ccGrant, k.assertion(t, "svc", u, nil))
			f.Set("client_id", "web")
			return f
		}, "invalid_client"},
		{"wrong aud", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", "https://elsewhere.example", nil))
		}, "invalid_client"},
		{"aud of the revocation endpoint", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", strings.Replace(u, "token", "revoke", 1), nil))
		}, "invalid_client"},
		{"no aud", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"aud": nil}))
		}, "invalid_client"},
		{"no exp", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"exp": nil}))
		}, "invalid_client"},
		{"expired", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"exp": now.Add(-time.Second).Unix()}))
		}, "invalid_client"},
		{"exp too far", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"exp": now.Add(2 * time.Hour).Unix()}))
		}, "invalid_client"},
		{"nbf in the future", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()}))
		}, "invalid_client"},
		{"no jti", func(t *testing.T, u string) url.Values {
			return withAssertion(ccGrant, k.assertion(t, "svc", u, jwt.MapClaims{"jti": nil}))
		}, "invalid_client"},
		{"wrong assertion type", func(t *testing.T, u string) url.Values {
			f := withAssertion(ccGrant, k.assertion(t, "svc", u, nil))
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return f
		}, "invalid_client"},
		{"no assertion", func(t *testing.T, u string) url.Values {
			f := withAssertion(ccGrant, "")
			f.Del("client_assertion")
			return f
		}, "invalid_client"},
		{"assertion and secret", func(t *testing.T, u string) url.Values {
			f := withAssertion(ccGrant, k.assertion(t, "svc", u, nil))
			f.Set("client_secret", "s3cret")
			return f
		}, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "svc", Key: k.public()}, secretClient}})
			r := postToken(t, srv, tt.form(t, srv.URL+"/oauth/token"), "")
			if got := r.json(t)["error"]; r.status != 400 || got != tt.wantError {
				t.Errorf("got %d %v; want 400 %s", r.status, got, tt.wantError)
			}
			if ch := r.header.Get("WWW-Authenticate"); ch != "" {
				t.Errorf("WWW-Authenticate = %q; want none for authentication in the body", ch)
			}
		})
	}
}

func TestPrivateKeyJWTReplay(t *testing.T) {
	k := newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "svc", Key: k.public()}}})
	form := withAssertion(ccGrant, k.assertion(t, "svc", srv.URL+"/oauth/token", nil))
	if r := postToken(t, srv, form, ""); r.status != 200 {
		t.Fatalf("first use: %d %s; want 200", r.status, r.body)
	}
	if r := postToken(t, srv, form, ""); r.status != 400 || r.json(t)["error"] != "invalid_client" {
		t.Errorf("replayed assertion: %d %s; want 400 invalid_client", r.status, r.body)
	}
	if st := srv.Stats(); st.ClientCredentialsGrants != 1 || st.ClientAuthFailures != 1 {
		t.Errorf("ClientCredentialsGrants, ClientAuthFailures = %d, %d; want 1, 1", st.ClientCredentialsGrants, st.ClientAuthFailures)
	}
}

func TestNewServerPanicsOnBadClient(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts autorefreshtest.Options
	}{
		{"no ID", autorefreshtest.Options{Clients: []autorefreshtest.Client{{Secret: "x"}}}},
		{"twice", autorefreshtest.Options{ClientID: "a", Clients: []autorefreshtest.Client{{ID: "a"}}}},
		{"unsupported key", autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "a", Key: []byte("k")}}}},
		{"bad IssuerPath", autorefreshtest.Options{IssuerPath: "tenant/"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewServer did not panic")
				}
			}()
			autorefreshtest.NewServer(tt.opts).Close()
		})
	}
}
