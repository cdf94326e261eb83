package autorefresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
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

// badTokens are tokens that cannot be sent in a header field as they are.
var badTokens = map[string]string{
	"CR":             "tok\ren",
	"LF":             "tok\nen",
	"CRLF injection": "tok\r\nX-Injected: yes",
	"NUL":            "tok\x00en",
	"SOH":            "tok\x01en",
	"tab":            "tok\ten",
	"DEL":            "tok\x7fen",
	"leading space":  " token",
	"trailing space": "token ",
}

func TestSetTokensRefusesInvalidToken(t *testing.T) {
	good := Tokens{AccessToken: "good-access", RefreshToken: "good-refresh"}
	for name, bad := range badTokens {
		for _, field := range []string{"access", "refresh"} {
			t.Run(name+" in "+field, func(t *testing.T) {
				store := &countingStore{}
				store.MemoryStore.Save(context.Background(), good)
				tr := &Transport{Store: store}
				tok := good
				if field == "access" {
					tok.AccessToken = bad
				} else {
					tok.RefreshToken = bad
				}
				if err := tr.SetTokens(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("SetTokens: error = %v; want ErrInvalidToken", err)
				}
				if got, err := tr.Tokens(context.Background()); err != nil || got != good {
					t.Errorf("Tokens() = %v, %v; want the old pair kept", got, err)
				}
				if n := store.saves.Load(); n != 0 {
					t.Errorf("store saves = %d; want 0", n)
				}
			})
		}
	}
}

func TestRefreshAnswerWithInvalidToken(t *testing.T) {
	for name, bad := range badTokens {
		for _, field := range []string{"access", "refresh"} {
			t.Run("Endpoint "+name+" in "+field, func(t *testing.T) {
				srv := newProtoServer(t)
				answer := map[string]string{"accessToken": "new-access", "refreshToken": "new-refresh"}
				answer[field+"Token"] = bad
				b, _ := json.Marshal(answer)
				body := string(b)
				srv.refreshBody.Store(&body)
				stale := srv.stale()
				store := &countingStore{}
				store.MemoryStore.Save(context.Background(), stale)
				tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
				checkInvalidAnswer(t, tr, store, srv.URL+"/api/x", stale)
			})
			t.Run("OAuth2 "+name+" in "+field, func(t *testing.T) {
				srv := newOAuthServer(t)
				answer := map[string]any{"access_token": "new-access", "refresh_token": "new-refresh", "token_type": "Bearer", "expires_in": 3600}
				answer[field+"_token"] = bad
				b, _ := json.Marshal(answer)
				body := string(b)
				srv.tokenBody.Store(&body)
				stale := srv.stale()
				store := &countingStore{}
				store.MemoryStore.Save(context.Background(), stale)
				tr := &Transport{Store: store, Refresher: srv.refresher(testNow)}
				checkInvalidAnswer(t, tr, store, srv.URL+"/api/x", stale)
			})
		}
	}
}

// checkInvalidAnswer sends a request through tr, whose stored tokens, old,
// are refused and whose refresh answers an invalid token: the request fails
// with a transient *RefreshError wrapping ErrInvalidToken, and the old
// tokens are kept.
func checkInvalidAnswer(t *testing.T, tr *Transport, store *countingStore, url string, old Tokens) {
	t.Helper()
	store.saves.Store(0)
	resp, err := NewClient(nil, tr).Get(url)
	if err == nil {
		resp.Body.Close()
	}
	var re *RefreshError
	if !errors.As(err, &re) || !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrSessionExpired) {
		t.Errorf("error = %v; want a transient *RefreshError wrapping ErrInvalidToken", err)
	}
	if got, err := tr.Tokens(context.Background()); err != nil || got != old {
		t.Errorf("Tokens() = %v, %v; want the old pair kept", got, err)
	}
	if n := store.saves.Load(); n != 0 {
		t.Errorf("store saves = %d; want 0", n)
	}
}

// badStore is a TokenStore whose Load returns tokens.
type badStore struct{ tokens Tokens }

func (s badStore) Load(context.Context) (Tokens, error) { return s.tokens, nil }
func (badStore) Save(context.Context, Tokens) error     { return nil }
func (badStore) Clear(context.Context) error            { return nil }

func TestStoreLoadingInvalidToken(t *testing.T) {
	for name, bad := range badTokens {
		t.Run(name, func(t *testing.T) {
			var sent atomic.Int64
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent.Add(1)
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			})
			tr := &Transport{Base: base, Store: badStore{Tokens{AccessToken: bad, RefreshToken: "refresh"}}}
			req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, ErrCorruptRecord) {
				t.Errorf("error = %v; want ErrCorruptRecord", err)
			}
			if n := sent.Load(); n != 0 {
				t.Errorf("requests sent = %d; want 0", n)
			}
		})
	}
}
