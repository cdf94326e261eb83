package autorefreshtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNormalizeURI(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"http://127.0.0.1:8080/oauth/token", "http://127.0.0.1:8080/oauth/token", true},
		{"HTTP://Example.COM:80/a%2fb?q=1#f", "http://example.com/a%2Fb", true},
		{"https://example.com:443", "https://example.com/", true},
		{"https://example.com:8443/%7Euser/%41", "https://example.com:8443/~user/A", true},
		{"https://example.com/a%20b", "https://example.com/a%20b", true},
		{"/relative", "", false},
		{"ftp://example.com/", "", false},
		{"mailto:a@example.com", "", false},
		{"http://%zz/", "", false},
	}
	for _, tt := range tests {
		got, ok := normalizeURI(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalizeURI(%q) = %q, %t; want %q, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzNormalizeURI(f *testing.F) {
	for _, s := range []string{"http://a/b", "HTTPS://A:443/%7e%2f?x#y", "http://[::1]:80/", "http://a/%", "http://a:/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, ok := normalizeURI(s)
		if !ok {
			return
		}
		again, ok := normalizeURI(out)
		if !ok || again != out {
			t.Fatalf("normalizeURI(%q) = %q, but normalizing that gives %q, %t", s, out, again, ok)
		}
	})
}

// FuzzParseProof checks that no input makes the proof parser panic, and
// that a proof it accepts has every required claim and a key thumbprint.
func FuzzParseProof(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	point, _ := key.PublicKey.Bytes()
	jwk := map[string]any{"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(point[33:])}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"jti": "j", "htm": "POST", "htu": "http://127.0.0.1/oauth/token", "iat": time.Now().Unix()})
	tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", jwk
	good, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	if _, _, perr := parseProof(good); perr != nil {
		f.Fatalf("parseProof(a good proof): %s", perr.desc)
	}
	f.Add(good)
	f.Add(good + "x")
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		c, jkt, perr := parseProof(s)
		if perr != nil {
			return
		}
		if c == nil || c.ID == "" || c.Method == "" || c.URI == "" || c.IssuedAt == nil || len(jkt) != 43 {
			t.Fatalf("parseProof accepted %q with claims %+v and jkt %q", s, c, jkt)
		}
	})
}
