package autorefresh

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// p builds a Params map from name, value pairs.
func p(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Challenge
	}{
		{"GitHub git over HTTPS", []string{`Basic realm="GitHub"`},
			[]Challenge{{Scheme: "Basic", Params: p("realm", "GitHub")}}},
		{"GitHub container registry", []string{`Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "https://ghcr.io/token", "service", "ghcr.io", "scope", "repository:user/image:pull")}}},
		{"Docker Hub, comma in a quoted value", []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "https://auth.docker.io/token", "service", "registry.docker.io", "scope", "repository:samalba/my-app:pull,push")}}},
		{"Google invalid_token", []string{`Bearer realm="https://accounts.google.com/", error="invalid_token"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "https://accounts.google.com/", "error", "invalid_token")}}},
		{"Google insufficient_scope", []string{`Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="https://www.googleapis.com/auth/drive https://www.googleapis.com/auth/drive.file"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "https://accounts.google.com/", "error", "insufficient_scope",
				"scope", "https://www.googleapis.com/auth/drive https://www.googleapis.com/auth/drive.file")}}},
		{"Azure Resource Manager", []string{`Bearer authorization_uri="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header."`},
			[]Challenge{{Scheme: "Bearer", Params: p("authorization_uri", "https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47",
				"error", "invalid_token", "error_description", "The authentication failed because of missing 'Authorization' header.")}}},
		{"Entra claims challenge", []string{`Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ=="`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "", "authorization_uri", "https://login.microsoftonline.com/common/oauth2/authorize",
				"client_id", "00000003-0000-0000-c000-000000000000", "error", "insufficient_claims", "claims", "eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ==")}}},
		{"Keycloak", []string{`Bearer realm="myrealm", error="invalid_token", error_description="Token verification failed"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "myrealm", "error", "invalid_token", "error_description", "Token verification failed")}}},
		{"Okta", []string{`Bearer authorization_uri="https://example.okta.com/oauth2/v1/authorize", realm="https://example.okta.com", scope="openid email profile", error="invalid_token", error_description="The access token is invalid."`},
			[]Challenge{{Scheme: "Bearer", Params: p("authorization_uri", "https://example.okta.com/oauth2/v1/authorize", "realm", "https://example.okta.com",
				"scope", "openid email profile", "error", "invalid_token", "error_description", "The access token is invalid.")}}},
		{"DPoP (RFC 9449)", []string{`DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256"`},
			[]Challenge{{Scheme: "DPoP", Params: p("error", "invalid_token", "error_description", "Invalid DPoP key binding", "algs", "ES256")}}},
		{"bare scheme", []string{"Bearer"}, []Challenge{{Scheme: "Bearer"}}},
		{"RFC 9110 example, several challenges and an escape", []string{`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`},
			[]Challenge{
				{Scheme: "Newauth", Params: p("realm", "apps", "type", "1", "title", `Login to "apps"`)},
				{Scheme: "Basic", Params: p("realm", "simple")},
			}},
		{"several header lines", []string{`Basic realm="api"`, `Bearer realm="api", error="invalid_token"`},
			[]Challenge{
				{Scheme: "Basic", Params: p("realm", "api")},
				{Scheme: "Bearer", Params: p("realm", "api", "error", "invalid_token")},
			}},
		{"token68", []string{"Negotiate oYH1MIHyoAMKAQChCwYJKoZIgvcSAQICooHd+/Bg==, Bearer"},
			[]Challenge{{Scheme: "Negotiate", Token68: "oYH1MIHyoAMKAQChCwYJKoZIgvcSAQICooHd+/Bg=="}, {Scheme: "Bearer"}}},
		{"token68 without padding then params", []string{`NTLM, Bearer error=invalid_token`},
			[]Challenge{{Scheme: "NTLM"}, {Scheme: "Bearer", Params: p("error", "invalid_token")}}},
		{"Digest", []string{`Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"`},
			[]Challenge{{Scheme: "Digest", Params: p("realm", "http-auth@example.org", "qop", "auth, auth-int", "algorithm", "SHA-256",
				"nonce", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v")}}},
		{"case and whitespace", []string{"bearer\tERROR = \"invalid_token\" ,\tRealm=x"},
			[]Challenge{{Scheme: "bearer", Params: p("error", "invalid_token", "realm", "x")}}},
		{"escapes", []string{`Bearer error_description="a \"quoted\" back\\slash \x"`},
			[]Challenge{{Scheme: "Bearer", Params: p("error_description", `a "quoted" back\slash x`)}}},
		{"duplicate param keeps the first", []string{`Bearer error="invalid_token", error="insufficient_scope"`},
			[]Challenge{{Scheme: "Bearer", Params: p("error", "invalid_token")}}},
		{"stray commas", []string{`, ,Bearer ,, error="invalid_token",, ,`},
			[]Challenge{{Scheme: "Bearer", Params: p("error", "invalid_token")}}},

		// Malformed values: no panic, and what can be read is read.
		{"empty", []string{""}, nil},
		{"nil", nil, nil},
		{"only commas and spaces", []string{" , ,\t"}, nil},
		{"unterminated quote", []string{`Bearer error="invalid_token`},
			[]Challenge{{Scheme: "Bearer", Params: p("error", "invalid_token")}}},
		{"unterminated escape", []string{`Bearer error="x\`}, []Challenge{{Scheme: "Bearer", Params: p("error", `x\`)}}},
		{"empty value reads as token68 (RFC 9110 grammar)", []string{`Bearer error=, realm="r"`}, []Challenge{{Scheme: "Bearer", Token68: "error="}}},
		{"empty value among params", []string{`Bearer realm="r", error=, scope=x`}, []Challenge{{Scheme: "Bearer", Params: p("realm", "r", "error", "", "scope", "x")}}},
		{"missing comma drops the rest", []string{`Bearer realm="a" error="invalid_token"`},
			[]Challenge{{Scheme: "Bearer", Params: p("realm", "a")}}},
		{"param without scheme", []string{`error="invalid_token", Basic realm="x"`},
			[]Challenge{{Scheme: "Basic", Params: p("realm", "x")}}},
		{"quoted junk", []string{`"Bearer", Basic`}, []Challenge{{Scheme: "Basic"}}},
		{"junk characters", []string{`@@@ {}, Bearer error="invalid_token"`},
			[]Challenge{{Scheme: "Bearer", Params: p("error", "invalid_token")}}},
		{"non-ASCII", []string{"Bearer realm=\"r\u00e9alm\", error=\u00e9"}, []Challenge{{Scheme: "Bearer", Params: p("realm", "r\u00e9alm", "error", "")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseChallenges(tt.values)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseChallenges(%q)\n got %#v\nwant %#v", tt.values, got, tt.want)
			}
		})
	}
}

func TestChallengeParam(t *testing.T) {
	c := ParseChallenges([]string{`Bearer Error="invalid_token"`})[0]
	if g := c.Param("ERROR"); g != "invalid_token" {
		t.Errorf("Param(ERROR) = %q; want invalid_token", g)
	}
	if g := c.Param("realm"); g != "" {
		t.Errorf("Param(realm) = %q; want empty", g)
	}
	if g := (Challenge{}).Param("error"); g != "" {
		t.Errorf("zero Challenge Param = %q; want empty", g)
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="api", error="invalid_token", error_description="The access token expired"`,
		`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`,
		`Negotiate abc==, NTLM`,
		`Bearer error="unterminated`,
		`=,=,"",\`,
		`a b=c d=, e f="g\`,
		"Bearer\terror\t=\t\"x\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range ParseChallenges([]string{v, v}) {
			if c.Scheme == "" || strings.IndexFunc(c.Scheme, func(r rune) bool { return r > 127 || !isTokenChar(byte(r)) }) >= 0 {
				t.Errorf("scheme %q is not a token", c.Scheme)
			}
			if c.Token68 != "" && c.Params != nil {
				t.Errorf("challenge %#v has both token68 and params", c)
			}
			for k := range c.Params {
				if k == "" || k != strings.ToLower(k) {
					t.Errorf("param name %q; want a non-empty lower-case token", k)
				}
			}
		}
		resp := &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {v}}}
		DefaultShouldRefresh(resp)
		BearerShouldRefresh(resp)
	})
}
