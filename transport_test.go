package autorefresh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

func TestReplacesCallerTokenHeaders(t *testing.T) {
	url, lines := rawServer(t)
	tr := &Transport{Store: NewMemoryStore(Tokens{AccessToken: "A", RefreshToken: "R"})}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("accessToken", "caller") // stored as Accesstoken
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hdr := <-lines
	if contains(hdr, "Accesstoken: caller") || !contains(hdr, "accessToken: A") {
		t.Errorf("header lines = %q; want only accessToken: A", hdr)
	}
}

func TestDoesNotModifyCallerRequest(t *testing.T) {
	srv := newProtoServer(t)
	tr, _ := srv.transport(srv.stale()) // first attempt 403, then refresh and replay
	req, _ := http.NewRequest("POST", srv.URL+"/api/echo", strings.NewReader("payload"))
	req.Header.Set("X-Caller", "1")
	before := req.Header.Clone()
	beforeURL := *req.URL
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d; want 200", resp.StatusCode)
	}
	if !reflect.DeepEqual(req.Header, before) {
		t.Errorf("caller's header = %v; want %v", req.Header, before)
	}
	if *req.URL != beforeURL {
		t.Errorf("caller's URL = %v; want %v", req.URL, beforeURL)
	}
}

// countingStore counts the calls to a MemoryStore.
type countingStore struct {
	MemoryStore
	loads, saves, clears atomic.Int64
	saveErr              error
}

func (s *countingStore) Load(ctx context.Context) (Tokens, error) {
	s.loads.Add(1)
	return s.MemoryStore.Load(ctx)
}

func (s *countingStore) Save(ctx context.Context, t Tokens) error {
	s.saves.Add(1)
	if s.saveErr != nil {
		return s.saveErr
	}
	return s.MemoryStore.Save(ctx, t)
}

func (s *countingStore) Clear(ctx context.Context) error {
	s.clears.Add(1)
	return s.MemoryStore.Clear(ctx)
}

func TestLoadsStoreOnce(t *testing.T) {
	srv := newProtoServer(t)
	store := &countingStore{}
	store.Save(context.Background(), srv.issue())
	store.saves.Store(0)
	c := NewClient(nil, &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 4 {
				if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
					t.Errorf("status = %d; want 200", code)
				}
			}
		})
	}
	wg.Wait()
	if n := store.loads.Load(); n != 1 {
		t.Errorf("store loads = %d; want 1", n)
	}
}

func TestRefreshesOn403AndReplaysOnce(t *testing.T) {
	srv := newProtoServer(t)
	tr, store := srv.transport(srv.stale())
	var replays atomic.Int64
	tr.OnReplay = func(*http.Request) { replays.Add(1) }
	c := NewClient(nil, tr)

	code, body := get(t, c, srv.URL+"/api/hello")
	if code != 200 || body != "GET /api/hello " {
		t.Fatalf("got %d %q; want 200 %q", code, body, "GET /api/hello ")
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	if n := srv.apiCalls.Load(); n != 2 {
		t.Errorf("API calls = %d; want 2 (first attempt and replay)", n)
	}
	if n := replays.Load(); n != 1 {
		t.Errorf("OnReplay calls = %d; want 1", n)
	}
	saved, _ := store.Load(context.Background())
	if !srv.valid(saved.AccessToken) {
		t.Errorf("store holds %v; want the new valid pair", saved)
	}
	// The next request uses the saved pair without refreshing.
	if code, _ := get(t, c, srv.URL+"/api/hello"); code != 200 {
		t.Errorf("second request status = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls after second request = %d; want 1", n)
	}
}

func TestSecond403IsReturnedAsIs(t *testing.T) {
	srv := newProtoServer(t)
	srv.reject.Store(true)
	tr, _ := srv.transport(srv.issue())
	c := NewClient(nil, tr)
	for i := range 3 {
		code, body := get(t, c, srv.URL+"/api/x")
		if code != 403 || !strings.Contains(body, "forbidden") {
			t.Errorf("request %d: got %d %q; want the replay's 403 with its body", i, code, body)
		}
	}
	if n := srv.apiCalls.Load(); n != 6 {
		t.Errorf("API calls = %d; want 6 (each request sent twice)", n)
	}
	if n := srv.refreshCalls.Load(); n != 3 {
		t.Errorf("refresh calls = %d; want 3 (one per request, no loop)", n)
	}
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

func TestNoTokensPassesThrough(t *testing.T) {
	for _, name := range []string{"never logged in", "empty MemoryStore"} {
		t.Run(name, func(t *testing.T) {
			srv := newProtoServer(t)
			var store TokenStore = NewMemoryStore(Tokens{})
			if name == "empty MemoryStore" {
				store = &MemoryStore{}
			}
			var sawHeader atomic.Bool
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if _, ok := r.Header["accessToken"]; ok {
					sawHeader.Store(true)
				}
				return http.DefaultTransport.RoundTrip(r)
			})
			tr := &Transport{Base: base, Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}}
			code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x")
			if code != 403 {
				t.Errorf("status = %d; want 403", code)
			}
			if sawHeader.Load() {
				t.Error("request carried an accessToken header; want none")
			}
			if n := srv.refreshCalls.Load(); n != 0 {
				t.Errorf("refresh calls = %d; want 0", n)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody records how much of it was read and whether it was closed.
type trackedBody struct {
	r      io.Reader
	read   atomic.Int64
	closed atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func TestRejectedResponseIsDrainedAndClosed(t *testing.T) {
	srv := newProtoServer(t)
	stale := srv.stale()
	var rejected *trackedBody
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if v := r.Header["accessToken"]; len(v) == 1 && v[0] == stale.AccessToken {
			rejected = &trackedBody{r: bytes.NewReader(make([]byte, 1<<20))}
			return &http.Response{StatusCode: 403, Body: rejected, Request: r, Header: http.Header{}}, nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	tr, _ := srv.transport(stale)
	tr.Base = base
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != 200 {
		t.Fatalf("status = %d; want 200", code)
	}
	if !rejected.closed.Load() {
		t.Error("rejected response body not closed")
	}
	if n := rejected.read.Load(); n == 0 || n > 64<<10 {
		t.Errorf("drained %d bytes of the rejected body; want a few KiB", n)
	}
}

func TestConcurrent403sShareOneRefresh(t *testing.T) {
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	tr, _ := srv.transport(srv.stale())
	c := NewClient(nil, tr)
	const n = 500
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range n {
		wg.Go(func() {
			if code, _ := get(t, c, srv.URL+"/api/x"); code == 200 {
				ok.Add(1)
			}
		})
	}
	// Let the refresh finish once every request is waiting for it or has
	// been refused.
	for srv.api403s.Load() < n && tr.Stats().Waits < n {
		time.Sleep(time.Millisecond)
	}
	close(srv.refreshGate)
	wg.Wait()
	if got := ok.Load(); got != n {
		t.Errorf("successful requests = %d; want %d", got, n)
	}
	if got := srv.refreshCalls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}
	if got := srv.reuses.Load(); got != 0 {
		t.Errorf("refresh token reuses = %d; want 0", got)
	}
}

// gatedServer wraps srv's handler so that requests to /api/slow are held
// until release is closed, then answered by srv as they were sent.
func holdSlow(srv *protoServer, arrived chan<- struct{}, release <-chan struct{}) {
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" && srv.apiCalls.Load() == 0 {
			arrived <- struct{}{}
			<-release
			srv.expireAll() // its token is stale by now
		}
		h.ServeHTTP(w, r)
	})
}

func TestLate403ReplaysWithCurrentToken(t *testing.T) {
	srv := newProtoServer(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	holdSlow(srv, arrived, release)
	tok := srv.issue()
	tr, _ := srv.transport(tok)
	c := NewClient(nil, tr)

	slow := make(chan int)
	go func() {
		code, _ := get(t, c, srv.URL+"/api/slow")
		slow <- code
	}()
	<-arrived // the slow request is on the server with the first token
	srv.expireAll()
	if code, _ := get(t, c, srv.URL+"/api/fast"); code != 200 {
		t.Fatalf("fast request status = %d; want 200", code)
	}
	// Keep the refreshed token valid when the slow request is refused.
	cur, _ := tr.Tokens(context.Background())
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("accessToken") == tok.AccessToken {
			srv.api403s.Add(1)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if r.Header.Get("accessToken") == cur.AccessToken {
			w.WriteHeader(200)
		}
	})
	close(release)
	if code := <-slow; code != 200 {
		t.Errorf("slow request status = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

func TestRefreshOutlivesCallerContext(t *testing.T) {
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	tr, store := srv.transport(srv.stale())
	c := NewClient(nil, tr)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/x", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	for srv.refreshCalls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan int)
	go func() {
		code, _ := get(t, c, srv.URL+"/api/x")
		second <- code
	}()
	for tr.Stats().Waits < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first request error = %v; want context.Canceled", err)
	}
	close(srv.refreshGate)
	if code := <-second; code != 200 {
		t.Errorf("second request status = %d; want 200", code)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
	if saved, _ := store.Load(context.Background()); !srv.valid(saved.AccessToken) {
		t.Error("refreshed tokens were not saved")
	}
}

func TestRefreshTimeout(t *testing.T) {
	srv := newProtoServer(t)
	srv.refreshGate = make(chan struct{})
	defer close(srv.refreshGate)
	stale := srv.stale()
	tr, store := srv.transport(stale)
	tr.RefreshTimeout = 50 * time.Millisecond
	_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
	var re *RefreshError
	if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v; want a *RefreshError wrapping context.DeadlineExceeded", err)
	}
	if errors.Is(err, ErrSessionExpired) {
		t.Error("a timeout ended the session")
	}
	if saved, _ := store.Load(context.Background()); saved != stale {
		t.Errorf("store holds %v; want the old tokens kept", saved)
	}
}
