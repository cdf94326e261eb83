package autorefresh

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// rawServer accepts HTTP/1.1 requests on a raw TCP listener and records
// their header lines exactly as they were written on the wire.
func rawServer(t *testing.T) (url string, lines <-chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var hdr []string
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						line = strings.TrimRight(line, "\r\n")
						if line == "" {
							break
						}
						hdr = append(hdr, line)
					}
					ch <- hdr
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), ch
}

func TestInjectsHeadersOnTheWire(t *testing.T) {
	tests := []struct {
		name   string
		scheme HeaderScheme
		want   []string
		absent []string
	}{
		{"default", HeaderScheme{}, []string{"accessToken: A", "refreshToken: R"}, []string{"Authorization"}},
		{"access only", AccessOnlyScheme, []string{"accessToken: A"}, []string{"refreshToken", "Refreshtoken"}},
		{"bearer", BearerScheme, []string{"Authorization: Bearer A"}, []string{"accessToken", "refreshToken"}},
		{"custom", HeaderScheme{AccessHeader: "X-Auth", AccessPrefix: "Token ", RefreshHeader: "x-refresh"},
			[]string{"X-Auth: Token A", "x-refresh: R"}, []string{"accessToken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, lines := rawServer(t)
			tr := &Transport{Store: NewMemoryStore(Tokens{AccessToken: "A", RefreshToken: "R"}), Scheme: tt.scheme}
			c := &http.Client{Transport: tr}
			for range 3 {
				get(t, c, url+"/x")
				hdr := <-lines
				for _, w := range tt.want {
					if !contains(hdr, w) {
						t.Errorf("header lines %q lack %q", hdr, w)
					}
				}
				for _, a := range tt.absent {
					for _, l := range hdr {
						if strings.HasPrefix(strings.ToLower(l), strings.ToLower(a)+":") {
							t.Errorf("header line %q sent; want no %s header", l, a)
						}
					}
				}
			}
		})
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestShouldRefreshPredicate(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refresh" {
			io.WriteString(w, `{"accessToken":"new","refreshToken":"r2"}`)
			return
		}
		calls.Add(1)
		if r.Header.Get("accessToken") != "new" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusForbidden) // not a token problem here
	}))
	defer srv.Close()
	tr := &Transport{
		Store:         NewMemoryStore(Tokens{AccessToken: "old", RefreshToken: "r1"}),
		Refresher:     &Endpoint{URL: srv.URL + "/refresh"},
		ShouldRefresh: func(r *http.Response) bool { return r.StatusCode == http.StatusUnauthorized },
	}
	code, _ := get(t, NewClient(nil, tr), srv.URL+"/x")
	if code != 403 {
		t.Errorf("status = %d; want 403 from the replay", code)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("API calls = %d; want 2", n)
	}
	// With the new token, a 403 is not a reason to refresh.
	code, _ = get(t, NewClient(nil, tr), srv.URL+"/x")
	if n := calls.Load(); code != 403 || n != 3 {
		t.Errorf("got %d after %d calls; want 403 after 3 calls", code, n)
	}
}

func TestOAuth2DefaultsToBearer(t *testing.T) {
	url, lines := rawServer(t)
	tr := &Transport{
		Store:     NewMemoryStore(Tokens{AccessToken: "A", RefreshToken: "R"}),
		Refresher: &OAuth2{TokenURL: url + "/token"},
	}
	get(t, NewClient(nil, tr), url+"/x")
	hdr := <-lines
	if !contains(hdr, "Authorization: Bearer A") {
		t.Errorf("header lines = %q; want Authorization: Bearer A", hdr)
	}
	for _, l := range hdr {
		if strings.Contains(l, "R") && strings.HasPrefix(strings.ToLower(l), "refreshtoken") {
			t.Errorf("refresh token sent to the API: %q", l)
		}
	}
}

func TestShouldRefreshPolicies(t *testing.T) {
	tests := []struct {
		status             int
		challenges         []string
		wantDefault, wantB bool
	}{
		{401, []string{`Bearer realm="api", error="invalid_token", error_description="expired"`}, true, true},
		{403, []string{`Bearer error="invalid_token"`}, true, true},
		{401, []string{`Basic realm="x"`, `Bearer error="invalid_token"`}, true, true},
		{401, []string{`Bearer error="insufficient_scope", scope="repo"`}, false, false},
		{403, []string{`Bearer error="insufficient_scope", scope="repo"`}, false, false},
		{403, []string{`Bearer error="invalid_request"`}, false, false},
		{401, []string{`Bearer error="invalid_request"`}, false, false},
		{401, []string{`Bearer realm="api"`}, false, true},
		{401, nil, false, true},
		{401, []string{`Basic realm="GitHub"`}, false, true},
		{401, []string{`Bearer error="insufficient_claims", claims="e30="`}, false, true},
		{403, nil, true, false},
		{403, []string{`Bearer realm="api"`}, true, false},
		{200, []string{`Bearer error="invalid_token"`}, false, false},
		{400, []string{`Bearer error="invalid_token"`}, false, false},
		{407, []string{`Bearer error="invalid_token"`}, false, false},
		{500, nil, false, false},
		{401, []string{`Bearer error="invalid_token`}, true, true}, // unterminated
		{403, []string{`Bearer error=insufficient_scope`}, false, false},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		for _, v := range tt.challenges {
			resp.Header.Add("WWW-Authenticate", v)
		}
		if g := DefaultShouldRefresh(resp); g != tt.wantDefault {
			t.Errorf("DefaultShouldRefresh(%d %q) = %v; want %v", tt.status, tt.challenges, g, tt.wantDefault)
		}
		if g := BearerShouldRefresh(resp); g != tt.wantB {
			t.Errorf("BearerShouldRefresh(%d %q) = %v; want %v", tt.status, tt.challenges, g, tt.wantB)
		}
	}
	// A response without a header map, as a custom RoundTripper may return.
	if DefaultShouldRefresh(&http.Response{StatusCode: 401}) || !BearerShouldRefresh(&http.Response{StatusCode: 401}) {
		t.Error("policies on a nil Header: want 401 refreshed by BearerShouldRefresh only")
	}
}

func TestTransportPicksPolicyByScheme(t *testing.T) {
	r401 := &http.Response{StatusCode: 401, Header: http.Header{}}
	r403 := &http.Response{StatusCode: 403, Header: http.Header{}}
	tests := []struct {
		name       string
		tr         *Transport
		want401    bool
		want403    bool
		wantCustom bool
	}{
		{"zero scheme", &Transport{}, false, true, false},
		{"access only", &Transport{Scheme: AccessOnlyScheme}, false, true, false},
		{"bearer", &Transport{Scheme: BearerScheme}, true, false, false},
		{"authorization in lower case", &Transport{Scheme: HeaderScheme{AccessHeader: "authorization", AccessPrefix: "Token "}}, true, false, false},
		{"custom policy wins", &Transport{Scheme: BearerScheme, ShouldRefresh: func(r *http.Response) bool { return r.StatusCode == 403 }}, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.tr.manager().newState(Tokens{AccessToken: "a", RefreshToken: "r"})
			if g := tt.tr.refuses(s, r401); g != tt.want401 {
				t.Errorf("401: got %v; want %v", g, tt.want401)
			}
			if g := tt.tr.refuses(s, r403); g != tt.want403 {
				t.Errorf("403: got %v; want %v", g, tt.want403)
			}
		})
	}
}
