package autorefresh

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
				//lint:ignore SA1008 the token headers are sent as written
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

// rebuildingBase is a base RoundTripper for api.example.com and
// evil.example.net that, like signing layers and proxies, sends a new
// *http.Request for every request it gets, and answers with a Request of
// its own (or none). It records, per URL it is sent, whether the request
// carried token headers.
type rebuildingBase struct {
	nilRequest bool              // answer with resp.Request == nil
	redirects  map[string]string // URL -> Location of a 302 answer (first visit only)

	mu      sync.Mutex // guards the fields below
	visited map[string]int
	tokens  []string // URLs that got token headers
	got     *http.Request
}

func (b *rebuildingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	// The request it really sends: a copy, without r.Response.
	out, err := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), nil)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = r
	if b.visited == nil {
		b.visited = map[string]int{}
	}
	u := r.URL.String()
	b.visited[u]++
	for k := range r.Header {
		if strings.EqualFold(k, "accessToken") || strings.EqualFold(k, "refreshToken") || strings.EqualFold(k, "Authorization") {
			b.tokens = append(b.tokens, u)
			break
		}
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: out}
	if loc, ok := b.redirects[u]; ok && b.visited[u] == 1 {
		resp.StatusCode = http.StatusFound
		resp.Header.Set("Location", loc)
	}
	if b.nilRequest {
		resp.Request = nil
	}
	return resp, nil
}

func TestRedirectOriginDoesNotTrustBase(t *testing.T) {
	const (
		api   = "https://api.example.com/start"
		evilA = "https://evil.example.net/a"
		evilB = "https://evil.example.net/b"
	)
	chains := []struct {
		name      string
		redirects map[string]string
	}{
		{"api to evil/a to evil/b", map[string]string{api: evilA, evilA: evilB}},
		{"api to evil/a to evil/a again", map[string]string{api: evilA, evilA: evilA}},
	}
	for _, chain := range chains {
		for _, nilRequest := range []bool{false, true} {
			name := chain.name + map[bool]string{false: " (new request per hop)", true: " (nil resp.Request)"}[nilRequest]
			t.Run(name, func(t *testing.T) {
				for _, scheme := range []HeaderScheme{DefaultScheme, BearerScheme} {
					base := &rebuildingBase{nilRequest: nilRequest, redirects: chain.redirects}
					tr := &Transport{Base: base, Store: NewMemoryStore(Tokens{AccessToken: "access-secret", RefreshToken: "refresh-secret"}), Scheme: scheme}
					resp, err := NewClient(nil, tr).Get(api)
					if err != nil {
						t.Fatalf("scheme %q: GET: %v", scheme.AccessHeader, err)
					}
					resp.Body.Close()
					base.mu.Lock()
					tokens := base.tokens
					base.mu.Unlock()
					if len(tokens) != 1 || tokens[0] != api {
						t.Errorf("scheme %q: URLs that got token headers = %q; want only %q", scheme.AccessHeader, tokens, api)
					}
				}
			})
		}
	}
}

func TestResponseRequestIsTheSentRequest(t *testing.T) {
	for _, nilRequest := range []bool{false, true} {
		base := &rebuildingBase{nilRequest: nilRequest}
		tr := &Transport{Base: base, Store: NewMemoryStore(Tokens{AccessToken: "a-token", RefreshToken: "r-token"})}
		req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		base.mu.Lock()
		sent := base.got
		base.mu.Unlock()
		if resp.Request != sent {
			t.Errorf("base answering with nil Request = %v: resp.Request = %p; want %p, the request the Transport sent", nilRequest, resp.Request, sent)
		}
	}
}

// hostsBase answers 200 to everything and records whether each request
// carried the access token.
func hostsBase(calls *atomic.Int64, sent *atomic.Bool) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		//lint:ignore SA1008 the token headers are sent as written
		_, ok := r.Header["accessToken"]
		sent.Store(ok)
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
}

func TestHostsEntryForms(t *testing.T) {
	tests := []struct {
		entry, url string
		want       bool // tokens sent
	}{
		// A URL: its scheme, and its port or the scheme's default port.
		{"https://api.example.com", "https://api.example.com/x", true},
		{"https://api.example.com", "https://api.example.com:443/x", true},
		{"https://api.example.com", "https://API.example.com/x", true},
		{"https://api.example.com", "http://api.example.com/x", false},
		{"https://api.example.com", "http://api.example.com:443/x", false},
		{"https://api.example.com", "http://api.example.com:8080/x", false},
		{"https://api.example.com", "https://api.example.com:8080/x", false},
		{"https://api.example.com/", "https://api.example.com/x", true},
		{"https://api.example.com/", "http://api.example.com/x", false},
		{"http://h.example.com:8080", "http://h.example.com:8080/x", true},
		{"http://h.example.com:8080", "https://h.example.com:8080/x", false},
		{"http://h.example.com:8080", "http://h.example.com/x", false},
		{"http://h.example.com", "http://h.example.com:80/x", true},
		{"http://h.example.com", "http://h.example.com:8080/x", false},
		{"https://[::1]:8443", "https://[::1]:8443/x", true},
		{"https://[::1]:8443", "http://[::1]:8443/x", false},
		// A host: any scheme and port.
		{"host.example.com", "http://host.example.com/x", true},
		{"host.example.com", "https://host.example.com:9999/x", true},
		{"host.example.com", "https://other.example.com/x", false},
		// host:port: that port on any scheme.
		{"host.example.com:8080", "http://host.example.com:8080/x", true},
		{"host.example.com:8080", "https://host.example.com:8080/x", true},
		{"host.example.com:8080", "http://host.example.com/x", false},
		{"host.example.com:8080", "https://host.example.com/x", false},
		// IPv6 addresses.
		{"[::1]:8080", "http://[::1]:8080/x", true},
		{"[::1]:8080", "http://[::1]:8081/x", false},
		{"::1", "http://[::1]:1234/x", true},
		{"::1", "https://[::1]/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.entry+" "+tt.url, func(t *testing.T) {
			var calls atomic.Int64
			var sent atomic.Bool
			tr := &Transport{Base: hostsBase(&calls, &sent), Store: NewMemoryStore(Tokens{AccessToken: "a-token", RefreshToken: "r-token"}),
				Hosts: []string{tt.entry}}
			req, _ := http.NewRequest("GET", tt.url, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			resp.Body.Close()
			if got := sent.Load(); got != tt.want {
				t.Errorf("Hosts %q, request to %s: tokens sent = %v; want %v", tt.entry, tt.url, got, tt.want)
			}
		})
	}
}

func TestHostsMalformedEntry(t *testing.T) {
	entries := []string{
		"https://api.example.com/base", // a path
		"https://api.example.com/?x=1", // a query
		"https://api.example.com?x=1",  // a query
		"https://user@api.example.com", // user info
		"https://",                     // no host
		"http://:8080",                 // no host
		"",                             // empty
		"api.example.com:http",         // non-numeric port
		"https://api.example.com:abc",  // non-numeric port
		"ftp://api.example.com",        // another scheme
		"wss://api.example.com",        // another scheme
	}
	for _, entry := range entries {
		t.Run(entry, func(t *testing.T) {
			var calls atomic.Int64
			var sent atomic.Bool
			tr := &Transport{Base: hostsBase(&calls, &sent), Store: NewMemoryStore(Tokens{AccessToken: "a-token", RefreshToken: "r-token"}),
				Hosts: []string{"other.example.com", entry}}
			for _, u := range []string{"https://api.example.com/x", "https://other.example.com/x", "http://elsewhere.example.org/"} {
				req, _ := http.NewRequest("GET", u, nil)
				resp, err := tr.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
				if !errors.Is(err, ErrInvalidHosts) {
					t.Errorf("Hosts entry %q, GET %s: error = %v; want ErrInvalidHosts", entry, u, err)
					continue
				}
				if entry != "" && !strings.Contains(err.Error(), entry) && !strings.Contains(entry, "@") {
					t.Errorf("error %q does not name the entry %q", err, entry)
				}
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("requests sent = %d; want 0", n)
			}
		})
	}
}

// TestHostsEntryThatIsNoHostName: entries that are not host names get
// through parseHosts, because checkHostRule only refuses a few characters
// ("/@?#[] \t"): a wildcard ("*.example.com", the way many configs write
// "every subdomain"), a bare "*", a host with a control character or a
// percent sign. They are then accepted and silently match nothing, so the
// tokens go nowhere and every request is refused without a word. The doc of
// Hosts lists the accepted forms and says "Any other entry makes every
// request fail with an error wrapping ErrInvalidHosts, without sending
// anything"; bad input gets a clear error.
func TestHostsEntryThatIsNoHostName(t *testing.T) {
	for _, entry := range []string{
		"*.example.com",
		"*",
		"https://*.example.com",
		"api.example.com\n",
		"api.exa%mple.com",
		"api.example.com,other.example.com",
	} {
		t.Run(entry, func(t *testing.T) {
			var calls atomic.Int64
			var sent atomic.Bool
			tr := &Transport{Base: hostsBase(&calls, &sent), Store: NewMemoryStore(Tokens{AccessToken: "a-token", RefreshToken: "r-token"}),
				Hosts: []string{entry}}
			req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			if !errors.Is(err, ErrInvalidHosts) {
				t.Errorf("Hosts entry %q: error = %v; want ErrInvalidHosts", entry, err)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("Hosts entry %q: requests sent = %d; want 0", entry, n)
			}
		})
	}
}
