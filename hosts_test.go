package autorefresh

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestTokensStayOnTheirHost(t *testing.T) {
	var leaked atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.EqualFold(k, "accessToken") || strings.EqualFold(k, "refreshToken") || k == "Authorization" {
				leaked.Add(1)
			}
		}
	}))
	defer other.Close()
	srv := newProtoServer(t)
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/home":
			http.Redirect(w, r, "/api/home", http.StatusFound)
		case "/bounce":
			http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
		default:
			h.ServeHTTP(w, r)
		}
	})
	tok := srv.issue()
	for _, scheme := range []HeaderScheme{DefaultScheme, BearerScheme} {
		tr := &Transport{Store: NewMemoryStore(tok), Scheme: scheme}
		c := NewClient(nil, tr)
		get(t, c, srv.URL+"/away")
		req, _ := http.NewRequest("POST", srv.URL+"/bounce", strings.NewReader("x"))
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
		if n := leaked.Load(); n != 0 {
			t.Errorf("scheme %q: another host got %d token headers; want 0", scheme.AccessHeader, n)
		}
	}
	// A redirect to the same host keeps them.
	tr := &Transport{Store: NewMemoryStore(tok)}
	if code, body := get(t, NewClient(nil, tr), srv.URL+"/home"); code != 200 || body != "GET /api/home " {
		t.Errorf("same-host redirect got %d %q; want 200", code, body)
	}
	// Requests straight to a host outside the allow-list get nothing.
	tr = &Transport{Store: NewMemoryStore(tok), Hosts: []string{"api.example.com", srv.Listener.Addr().String()}}
	get(t, NewClient(nil, tr), other.URL+"/x")
	if n := leaked.Load(); n != 0 {
		t.Errorf("a host outside Hosts got %d token headers; want 0", n)
	}
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Errorf("listed host got %d; want 200", code)
	}
}

func TestHostAllowed(t *testing.T) {
	hosts := []string{"api.example.com", "auth.example.com:8443", "[::1]:9000", "127.0.0.1", "::2", "https://svc.example.com:444/", "[::3]"}
	tests := []struct {
		host, port string
		want       bool
	}{
		{"api.example.com", "443", true},
		{"API.example.com", "8080", true},
		{"auth.example.com", "8443", true},
		{"auth.example.com", "443", false},
		{"evil.api.example.com", "443", false},
		{"example.com", "443", false},
		{"::1", "9000", true},
		{"::1", "9001", false},
		{"127.0.0.1", "1234", true},
		{"::2", "443", true},
		{"::3", "80", true},
		{"svc.example.com", "444", true},
		{"svc.example.com", "443", false},
	}
	for _, tt := range tests {
		rules := parseHosts(hosts)
		if rules.err != nil {
			t.Fatal(rules.err)
		}
		if got := rules.allow("https", tt.host, tt.port); got != tt.want {
			t.Errorf("allow(https, %s, %s) = %v; want %v", tt.host, tt.port, got, tt.want)
		}
	}
}

func TestRedirectTokenPolicy(t *testing.T) {
	tests := []struct {
		from, to string
		hosts    []string
		want     bool // tokens sent to the redirect target
	}{
		{"https://api.example.com/r", "https://api.example.com/x", nil, true},
		{"https://api.example.com/r", "https://API.example.com:443/x", nil, true},
		{"http://api.example.com/r", "https://api.example.com/x", nil, true},  // upgrade
		{"https://api.example.com/r", "http://api.example.com/x", nil, false}, // downgrade
		{"https://api.example.com/r", "https://sub.api.example.com/x", nil, false},
		{"https://sub.api.example.com/r", "https://api.example.com/x", nil, false},
		{"https://api.example.com/r", "https://api.example.com:8443/x", nil, false},
		{"https://api.example.com/r", "https://evil.example.net/x", nil, false},
		{"https://api.example.com/r", "https://api.example.com.evil.net/x", nil, false},
		{"https://api.example.com/r", "https://api.example.com/x", []string{"api.example.com"}, true},
		{"https://api.example.com/r", "https://other.example.com/x", []string{"api.example.com", "other.example.com"}, false},
	}
	for _, tt := range tests {
		name := tt.from + " -> " + tt.to
		if tt.hosts != nil {
			name += " with Hosts"
		}
		t.Run(name, func(t *testing.T) {
			var sent []bool
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Path == "/r" {
					return &http.Response{StatusCode: 302, Header: http.Header{"Location": {tt.to}}, Body: http.NoBody, Request: r}, nil
				}
				_, ok := r.Header["accessToken"]
				sent = append(sent, ok)
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})
			tr := &Transport{Base: base, Store: NewMemoryStore(Tokens{AccessToken: "a", RefreshToken: "r"}), Hosts: tt.hosts}
			resp, err := NewClient(nil, tr).Get(tt.from)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(sent) != 1 || sent[0] != tt.want {
				t.Errorf("tokens sent to the target = %v; want [%v]", sent, tt.want)
			}
		})
	}
}
