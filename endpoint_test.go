package autorefresh

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestEndpointRefusesPlainHTTP(t *testing.T) {
	tests := []struct {
		url       string
		allowHTTP bool
		wantSent  bool
	}{
		{"http://api.example.com/auth/refreshtoken", false, false},
		{"http://10.0.0.1/auth/refreshtoken", false, false},
		{"ftp://api.example.com/auth/refreshtoken", false, false},
		{"http://api.example.com/auth/refreshtoken", true, true},
		{"https://api.example.com/auth/refreshtoken", false, true},
		{"http://127.0.0.1:8080/auth/refreshtoken", false, true},
		{"http://[::1]:8080/auth/refreshtoken", false, true},
		{"http://localhost:8080/auth/refreshtoken", false, true},
	}
	for _, tt := range tests {
		var sent bool
		ep := &Endpoint{URL: tt.url, AllowHTTP: tt.allowHTTP, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = true
			return nil, errors.New("no network in this test")
		})}
		_, err := ep.Refresh(context.Background(), Tokens{AccessToken: "a", RefreshToken: "r"})
		if err == nil {
			t.Fatalf("%s: want an error from the fake base", tt.url)
		}
		if sent != tt.wantSent {
			t.Errorf("%s (AllowHTTP %v): request sent = %v; want %v (error %v)", tt.url, tt.allowHTTP, sent, tt.wantSent, err)
		}
		if errors.Is(err, ErrSessionExpired) {
			t.Errorf("%s: error %v ends the session; want a transient error", tt.url, err)
		}
	}
}

func TestEndpointWithoutRefreshToken(t *testing.T) {
	ep := &Endpoint{URL: "https://api.example.com/auth/refreshtoken", Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Error("request sent without a refresh token")
		return nil, errors.New("unreachable")
	})}
	_, err := ep.Refresh(context.Background(), Tokens{AccessToken: "a"})
	if !errors.Is(err, ErrSessionExpired) {
		t.Errorf("error = %v; want ErrSessionExpired", err)
	}
}

// FuzzDecodeTokens checks that any refresh response body yields tokens
// with an access token, or an error: never a panic, never empty tokens.
func FuzzDecodeTokens(f *testing.F) {
	f.Add([]byte(`{"accessToken":"a","refreshToken":"r"}`))
	f.Add([]byte(`{"accessToken":"a","refreshToken":"r","expiry":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"accessToken":"a","expiry":"tomorrow"}`))
	f.Add([]byte(`{"accessToken":""}`))
	f.Add([]byte(`{"accessToken":7}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`<html>502 Bad Gateway</html>`))
	f.Add([]byte(`{"accessToken":"a"`))
	f.Add([]byte(`{"accessToken":"a","expiry":"not a time"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := decodeTokens(body)
		if err == nil && tok.AccessToken == "" {
			t.Errorf("decodeTokens(%q) = %v, nil; want an access token or an error", body, tok)
		}
		if err != nil && tok != (Tokens{}) {
			t.Errorf("decodeTokens(%q) returned tokens with error %v", body, err)
		}
		if err != nil && len(body) > 4 && strings.Contains(err.Error(), string(body)) {
			t.Errorf("error %q repeats the response body", err)
		}
	})
}

func TestEndpointMalformedAnswerText(t *testing.T) {
	for _, body := range []string{`[]`, `"tokens"`, `42`, `{"accessToken": 7}`, `{"accessToken": ["a"]}`} {
		srv := newProtoServer(t)
		srv.refreshBody.Store(&body)
		_, err := (&Endpoint{URL: srv.URL + "/auth/refreshtoken"}).Refresh(context.Background(), srv.stale())
		if err == nil {
			t.Errorf("answer %s: no error", body)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "  ") || strings.Contains(msg, ":  is") || strings.Contains(msg, ": is a JSON") {
			t.Errorf("answer %s: error %q has an empty field name", body, msg)
		}
	}
}

// TestEndpointAnswerWithBOM: a refresh answer that starts with a UTF-8 byte
// order mark is accepted (the server has already rotated the refresh token
// when it sends it), through the Transport too.
func TestEndpointAnswerWithBOM(t *testing.T) {
	srv := newProtoServer(t)
	fresh := srv.issue()
	body := "\ufeff" + `{"accessToken": "` + fresh.AccessToken + `", "refreshToken": "` + fresh.RefreshToken + `"}`
	srv.refreshBody.Store(&body)
	tr, store := srv.transport(srv.stale())
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Errorf("status = %d; want 200 after a refresh answered with a BOM", code)
	}
	if saved, err := store.Load(context.Background()); err != nil || saved.AccessToken != fresh.AccessToken || saved.RefreshToken != fresh.RefreshToken {
		t.Errorf("store holds %v, %v; want the pair of the answer", saved, err)
	}
}
