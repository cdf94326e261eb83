package autorefresh

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestClientAssertion(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	const aud = "https://as.example.com/token"
	tests := []struct {
		key, alg, kid, clientID string
		wantAlg                 string
	}{
		{"RSA-2048", "", "", "client-1", algRS256},
		{"RSA-2048", algPS256, "key-2024", "client-1", algPS256},
		{"P-256", "", "k1", "client-1", algES256},
		{"P-384", "", "", "client-1", algES384},
		{"Ed25519", "", "k\"2", `client "quoted" \ é`, algEdDSA},
	}
	for _, tt := range tests {
		t.Run(tt.key+"/"+tt.wantAlg, func(t *testing.T) {
			key := testKey(t, tt.key)
			a, err := newClientAssertion(hsmSigner{key}, tt.alg, tt.kid, tt.clientID)
			if err != nil {
				t.Fatal(err)
			}
			a.now = func() time.Time { return now }
			tok, err := a.sign(aud)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			// A server's checks (RFC 7523 section 3), with jwt/v5.
			parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return key.Public(), nil },
				jwt.WithValidMethods([]string{tt.wantAlg}),
				jwt.WithAudience(aud), jwt.WithIssuer(tt.clientID), jwt.WithSubject(tt.clientID),
				jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
				jwt.WithTimeFunc(func() time.Time { return now.Add(59 * time.Second) }))
			if err != nil {
				t.Fatalf("jwt/v5 refuses the assertion: %v", err)
			}
			verifyJWS(t, tok, key.Public(), tt.wantAlg)

			wantHeader := map[string]any{"alg": tt.wantAlg}
			if tt.kid != "" {
				wantHeader["kid"] = tt.kid
			}
			if fmt.Sprint(parsed.Header) != fmt.Sprint(wantHeader) {
				t.Errorf("header = %v; want %v", parsed.Header, wantHeader)
			}
			var claims map[string]any
			decodeSegment(t, strings.Split(tok, ".")[1], &claims)
			jti, _ := claims["jti"].(string)
			if len(jti) < 22 {
				t.Errorf("jti = %q; want 128 random bits", jti)
			}
			delete(claims, "jti")
			want := map[string]any{"iss": tt.clientID, "sub": tt.clientID, "aud": aud,
				"iat": float64(now.Unix()), "exp": float64(now.Unix() + 60)}
			if fmt.Sprint(claims) != fmt.Sprint(want) {
				t.Errorf("claims = %v; want %v and a jti", claims, want)
			}

			// Expired a minute after it was made.
			_, err = jwt.Parse(tok, func(*jwt.Token) (any, error) { return key.Public(), nil },
				jwt.WithTimeFunc(func() time.Time { return now.Add(61 * time.Second) }))
			if !errors.Is(err, jwt.ErrTokenExpired) {
				t.Errorf("assertion a minute later: %v; want expired", err)
			}
		})
	}
}

// TestClientAssertionIsNewEachTime: an assertion is never reused, so a
// server that records "jti" (RFC 7523 section 3, item 7) accepts each one.
func TestClientAssertionIsNewEachTime(t *testing.T) {
	a, err := newClientAssertion(testKey(t, "P-256"), "", "", "client")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		tok, err := a.sign("https://as.example.com")
		if err != nil {
			t.Fatal(err)
		}
		var claims struct{ Jti string }
		payload := strings.Split(tok, ".")[1]
		b, _ := b64.DecodeString(payload)
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatal(err)
		}
		if seen[claims.Jti] {
			t.Fatalf("jti %q used twice", claims.Jti)
		}
		seen[claims.Jti] = true
	}
}

func TestClientAssertionErrors(t *testing.T) {
	tests := []struct {
		name          string
		key           crypto.Signer
		alg, clientID string
		want          error
	}{
		{"no client ID", testKey(t, "P-256"), "", "", ErrClientAssertion},
		{"no key", nil, "", "client", ErrUnsupportedKey},
		{"wrong algorithm", testKey(t, "P-256"), algRS256, "client", ErrUnsupportedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newClientAssertion(tt.key, tt.alg, "", tt.clientID); !errors.Is(err, tt.want) {
				t.Errorf("error = %v; want %v", err, tt.want)
			}
		})
	}
	a, err := newClientAssertion(testKey(t, "P-256"), "", "", "client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.sign(""); !errors.Is(err, ErrClientAssertion) {
		t.Errorf("sign without audience: error = %v; want ErrClientAssertion", err)
	}
	hsmErr := errors.New("HSM unavailable")
	broken, err := newClientAssertion(fakeSigner{pub: testKey(t, "P-256").Public(), err: hsmErr}, "", "", "client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.sign("https://as.example.com"); !errors.Is(err, hsmErr) {
		t.Errorf("sign with a failing key: error = %v; want it to wrap the key's error", err)
	}
}

func TestClientAssertionType(t *testing.T) {
	// RFC 7523 section 2.2.
	if clientAssertionType != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Errorf("clientAssertionType = %q", clientAssertionType)
	}
}

func TestClientAssertionNeverPrintsKeys(t *testing.T) {
	for name, key := range testKeys() {
		t.Run(name, func(t *testing.T) {
			a, err := newClientAssertion(key, "", "kid-1", "client")
			if err != nil {
				t.Fatal(err)
			}
			checkNeverPrintsKey(t, key, a)
			checkNeverPrintsKey(t, key, &clientAssertion{})
		})
	}
}

func BenchmarkClientAssertion(b *testing.B) {
	a, err := newClientAssertion(testKey(b, "P-256"), "", "k1", "client-1")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.sign("https://as.example.com/token"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClientAssertionErrorSaysItOnce checks the text of the errors of a
// client assertion that cannot be made, whether the cause already says so
// (no client ID) or not (a key that fails to sign): "cannot make a client
// assertion" appears once, and the error wraps ErrClientAssertion.
func TestClientAssertionErrorSaysItOnce(t *testing.T) {
	hsmErr := errors.New("HSM unavailable")
	tests := []struct {
		name string
		c    oauthClient
	}{
		{"no client ID", oauthClient{style: AuthStylePrivateKeyJWT, key: testKey(t, "P-256")}},
		{"no key", oauthClient{style: AuthStylePrivateKeyJWT, id: "client"}},
		{"signing fails", oauthClient{style: AuthStylePrivateKeyJWT, id: "client",
			key: fakeSigner{pub: testKey(t, "P-256").Public(), err: hsmErr}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.authenticate(url.Values{}, "https://as.example.com/token")
			if !errors.Is(err, ErrClientAssertion) {
				t.Fatalf("error = %v; want ErrClientAssertion", err)
			}
			if n := strings.Count(err.Error(), "cannot make a client assertion"); n != 1 {
				t.Errorf("error text %q says it %d times; want once", err, n)
			}
			if strings.Count(err.Error(), "autorefresh: ") != 1 {
				t.Errorf("error text %q: want the package prefix once", err)
			}
		})
	}
}
