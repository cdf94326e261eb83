package autorefreshtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestNumericDateJSON(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.UnixMilli(1700000000123), "1700000000.123"},
		{time.UnixMilli(1700000000005), "1700000000.005"},
		{time.UnixMilli(1700000000000), "1700000000"},
		{time.Unix(1700000000, 999999999), "1700000000.999"}, // truncated to the millisecond
		{time.UnixMilli(-1500), "-1.500"},
		{time.UnixMilli(-500), "-0.500"},
	}
	for _, tt := range tests {
		b, err := json.Marshal(numericDate{tt.t})
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tt.t, b, err, tt.want)
			continue
		}
		var d numericDate
		if err := json.Unmarshal(b, &d); err != nil || !d.Equal(tt.t.Truncate(time.Millisecond)) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, d.Time, err, tt.t.Truncate(time.Millisecond))
		}
	}
}

func FuzzNumericDate(f *testing.F) {
	for _, s := range []string{"1700000000.123", "1", "-2.5", "1e300", `"1"`, "null", "1.0000001", "NaN"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d numericDate
		if json.Unmarshal(b, &d) != nil {
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal after Unmarshal(%q): %v", b, err)
		}
		var d2 numericDate
		if err := json.Unmarshal(out, &d2); err != nil || !d2.Equal(d.Time) {
			t.Fatalf("round trip of %q: %s gives %v, %v; want %v", b, out, d2.Time, err, d.Time)
		}
	})
}

// newOffline returns a Server that is not listening, for token tests.
func newOffline() *Server {
	return &Server{
		opts:     Options{AccessTTL: time.Minute, RefreshTTL: time.Hour},
		key:      []byte("fuzz-key"),
		now:      time.Now,
		sessions: make(map[string]*session),
		refresh:  make(map[string]*refreshToken),
	}
}

// signedHS256 reports whether token is a JWT with alg HS256 whose signature
// is the HMAC-SHA256 of its signing input under key: an oracle independent
// of the jwt package.
func signedHS256(token string, key []byte) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct{ Alg string }
	if json.Unmarshal(hdr, &h) != nil || h.Alg != "HS256" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, mac.Sum(nil))
}

// FuzzAuthenticate checks that no access token is accepted unless it is
// signed with the server's key.
func FuzzAuthenticate(f *testing.F) {
	s := newOffline()
	good := s.Issue("alice").AccessToken
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(good + "x")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".")
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		user, err := s.authenticate(token)
		if token == good && (err != nil || user != "alice") {
			t.Fatalf("minted token: %q, %v; want alice", user, err)
		}
		if err == nil && !signedHS256(token, s.key) {
			t.Fatalf("authenticate accepted a token not signed with the key: user %q", user)
		}
	})
}
