package autorefresh

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestExpiresAt(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	set := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		tok  Tokens
		want time.Time
	}{
		{"jwt", Tokens{AccessToken: testJWT(t, exp)}, exp},
		{"Expiry wins", Tokens{AccessToken: testJWT(t, exp), Expiry: set}, set},
		{"opaque", Tokens{AccessToken: "opaque-token"}, time.Time{}},
		{"three dots of garbage", Tokens{AccessToken: "a.b.c"}, time.Time{}},
		{"empty", Tokens{}, time.Time{}},
		// {"alg":"none"} . {"exp":"soon"} . -- exp of the wrong type
		{"bad exp type", Tokens{AccessToken: "eyJhbGciOiJub25lIn0.eyJleHAiOiJzb29uIn0."}, time.Time{}},
		// {"alg":"none"} . {"exp":1700000000.5}: unsigned tokens are read
		// too, and fractions of a second are kept.
		{"fractional exp", Tokens{AccessToken: "eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDAuNX0."},
			time.Unix(1700000000, 5e8)},
		// {"alg":"none"} . {"exp":1e300}
		{"exp out of range", Tokens{AccessToken: "eyJhbGciOiJub25lIn0.eyJleHAiOjFlMzAwfQ."}, time.Time{}},
		// {"alg":"none"} . {"exp":-1}
		{"negative exp", Tokens{AccessToken: "eyJhbGciOiJub25lIn0.eyJleHAiOi0xfQ."}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tok.ExpiresAt(); !got.Equal(tt.want) {
				t.Errorf("ExpiresAt() = %v; want %v", got, tt.want)
			}
		})
	}
}

// FuzzJWTTimes checks that any access token, however malformed, yields an
// expiry or the zero time, never a panic.
func FuzzJWTTimes(f *testing.F) {
	f.Add(testJWT(f, time.Unix(2e9, 0)))
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDAuNX0.")
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOiJzb29uIn0.")
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOjFlMzAwfQ.") // exp 1e300
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOi0xfQ.")     // exp -1
	f.Add("a.b.c")
	f.Add("...")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		exp, iat := jwtTimes(token)
		if strings.Count(token, ".") != 2 && (!exp.IsZero() || !iat.IsZero()) {
			t.Errorf("jwtTimes(%q) = %v, %v; want zero times for a non-JWT", token, exp, iat)
		}
	})
}

// FuzzTokensFormat checks that no fmt verb shows a token value.
func FuzzTokensFormat(f *testing.F) {
	f.Add("access-token-value", "refresh-token-value", "%v")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.sig", "r", "%#v")
	f.Add("x", "y", "%x %q %+v %s %d")
	f.Fuzz(func(t *testing.T, access, refresh, format string) {
		// fmt prints %p of a non-pointer and %w outside Errorf raw, before
		// any Formatter is asked: misuses (go vet reports them) that no
		// type can redact, so they are left out.
		format = strings.NewReplacer("p", "v", "w", "v").Replace(format)
		tok := Tokens{AccessToken: access, RefreshToken: refresh}
		out := fmt.Sprintf(format, tok, &tok) + tok.String()
		for _, secret := range []string{access, refresh} {
			// Short values can appear in the template or the format by chance.
			if len(secret) < 8 || strings.Contains(format+Tokens{}.String()+redacted+"%!(EXTRA", secret) {
				continue
			}
			if strings.Contains(out, secret) {
				t.Errorf("Sprintf(%q) = %q; shows the token %q", format, out, secret)
			}
		}
	})
}
