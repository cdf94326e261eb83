package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
				//lint:ignore SA1008 the token headers are sent as written
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
		//lint:ignore SA1008 the token headers are sent as written
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

func TestRefreshIsNotSentThroughTheTransport(t *testing.T) {
	srv := newProtoServer(t)
	ep := &Endpoint{URL: srv.URL + "/auth/refreshtoken"}
	tr := &Transport{Store: NewMemoryStore(srv.stale()), Refresher: ep}
	c := NewClient(nil, tr)
	ep.Base = c.Transport // a misconfiguration that must not recurse
	srv.refreshStatus.Store(403)
	done := make(chan error)
	go func() {
		_, err := c.Get(srv.URL + "/api/x")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSessionExpired) {
			t.Errorf("error = %v; want ErrSessionExpired", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request did not return: the refresh recursed")
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	tok := Tokens{AccessToken: "SECRET-ACCESS", RefreshToken: "SECRET-REFRESH", Expiry: time.Unix(1e9, 0)}
	var logs bytes.Buffer
	outputs := []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q %x", tok, tok, tok, tok, tok, tok),
		fmt.Sprintf("%+v %#v", &tok, struct{ T Tokens }{tok}), tok.String(), tok.GoString(),
	}
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("tokens", "t", tok)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("tokens", "t", tok, "p", &tok)

	// A refresh endpoint that echoes the refresh token in its error body,
	// with a debug logger on the transport.
	srv := newProtoServer(t)
	stale := srv.stale()
	stale.RefreshToken = "SECRET-REFRESH"
	srv.mu.Lock()
	srv.refresh["SECRET-REFRESH"] = false
	srv.mu.Unlock()
	for _, code := range []int64{500, 401} {
		srv.refreshStatus.Store(code)
		tr, _ := srv.transport(stale)
		tr.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		tr.OnRefresh = func(e RefreshEvent) { outputs = append(outputs, fmt.Sprintf("%+v", e)) }
		_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
		if err == nil {
			t.Fatal("want an error")
		}
		outputs = append(outputs, err.Error(), fmt.Sprintf("%+v", err))
	}
	outputs = append(outputs, logs.String())
	for _, out := range outputs {
		if strings.Contains(out, "SECRET") || strings.Contains(out, stale.AccessToken) {
			t.Errorf("output shows a token: %s", out)
		}
	}
	if !strings.Contains(outputs[0], "[redacted]") {
		t.Errorf("fmt.Sprint(tokens) = %s; want [redacted] in place of the tokens", outputs[0])
	}
	// JSON still carries the values, for stores.
	if b, _ := json.Marshal(tok); !strings.Contains(string(b), "SECRET-ACCESS") {
		t.Errorf("json.Marshal(tokens) = %s; want the token values", b)
	}
}

func TestNewClient(t *testing.T) {
	srv := newProtoServer(t)
	before := *http.DefaultClient
	tr, _ := srv.transport(srv.stale())
	c := NewClient(http.DefaultClient, tr)
	if c == http.DefaultClient {
		t.Fatal("NewClient returned http.DefaultClient itself")
	}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
		t.Errorf("status = %d; want 200", code)
	}
	if http.DefaultClient.Transport != before.Transport || http.DefaultClient.Timeout != before.Timeout ||
		http.DefaultClient.Jar != before.Jar {
		t.Error("http.DefaultClient was modified")
	}
	// The copy keeps the base client's settings and sends through its transport.
	var viaBase atomic.Int64
	base := &http.Client{Timeout: 7 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		viaBase.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	c = NewClient(base, &Transport{Store: NewMemoryStore(srv.issue())})
	if c.Timeout != 7*time.Second {
		t.Errorf("Timeout = %v; want the base client's 7s", c.Timeout)
	}
	if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 || viaBase.Load() != 1 {
		t.Errorf("got %d with %d requests through the base transport; want 200 and 1", code, viaBase.Load())
	}
	if _, ok := base.Transport.(roundTripFunc); !ok {
		t.Error("base client's Transport was replaced")
	}
}

func TestTransportWithoutStore(t *testing.T) {
	srv := newProtoServer(t)
	_, err := NewClient(nil, &Transport{}).Get(srv.URL + "/api/x")
	if !errors.Is(err, ErrNoStore) {
		t.Errorf("error = %v; want ErrNoStore", err)
	}
}

// TestTransportAndEventsNeverPrintTokens prints a Transport after a refresh,
// while requests go through it (a logger may print it at any time), and the
// events of its refreshes.
func TestTransportAndEventsNeverPrintTokens(t *testing.T) {
	srv := newProtoServer(t)
	for _, kind := range []string{"MemoryStore", "FileStore"} {
		t.Run(kind, func(t *testing.T) {
			stale := srv.stale()
			store := TokenStore(NewMemoryStore(stale))
			if kind == "FileStore" {
				fs := NewFileStore(tokenPath(t))
				if err := fs.Save(context.Background(), stale); err != nil {
					t.Fatal(err)
				}
				store = fs
			}
			var events eventRecorder
			tr := &Transport{Store: store, Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken"}, OnRefresh: events.record}
			c := NewClient(nil, tr)
			if code, _ := get(t, c, srv.URL+"/api/x"); code != 200 {
				t.Fatalf("status = %d; want 200", code)
			}
			cur, err := tr.Tokens(context.Background())
			if err != nil || cur == stale {
				t.Fatalf("Tokens() = %v, %v; want a refreshed pair", cur, err)
			}
			secrets := []string{stale.AccessToken, stale.RefreshToken, cur.AccessToken, cur.RefreshToken}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if resp, err := c.Get(srv.URL + "/api/x"); err == nil {
							resp.Body.Close()
						}
					}
				})
			}
			for range 3 {
				checkPrinted(t, "*Transport in use", tr, secrets...)
			}
			close(stop)
			wg.Wait()
			evs := events.all()
			if len(evs) != 1 {
				t.Errorf("refresh events = %d; want 1", len(evs))
			}
			for _, ev := range evs {
				checkPrinted(t, "RefreshEvent", ev, secrets...)
				checkPrinted(t, "*RefreshEvent", &ev, secrets...)
			}
		})
	}
}

func TestRequestsShareNoHeaderValues(t *testing.T) {
	tok := Tokens{AccessToken: "access-value", RefreshToken: "refresh-value"}
	// A base, like a logging middleware that masks secrets, that edits the
	// header values of the request it gets in place.
	var mu sync.Mutex
	var seen [][2]string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		//lint:ignore SA1008 the token headers are sent as written
		seen = append(seen, [2]string{r.Header["accessToken"][0], r.Header["refreshToken"][0]})
		mu.Unlock()
		//lint:ignore SA1008 the token headers are sent as written
		r.Header["accessToken"][0] = "masked"
		//lint:ignore SA1008 the token headers are sent as written
		r.Header["refreshToken"][0] = "masked"
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := &Transport{Base: base, Store: NewMemoryStore(tok)}
	c := NewClient(nil, tr)
	for range 3 {
		resp, err := c.Get("https://api.example.com/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// And a caller that masks what the response's request carried.
		//lint:ignore SA1008 the token headers are sent as written
		if v := resp.Request.Header["accessToken"]; len(v) == 1 {
			v[0] = "masked by caller"
		}
	}
	want := [2]string{tok.AccessToken, tok.RefreshToken}
	for i, got := range seen {
		if got != want {
			t.Errorf("request %d carried %q; want %q", i, got, want)
		}
	}
	if got, err := tr.Tokens(context.Background()); err != nil || got != tok {
		t.Errorf("Tokens() = %v, %v; want the tokens unchanged", got, err)
	}
}

// stallRefusals makes srv answer a refused token with a 403 that promises
// 4 KiB of body, sends one byte and then stalls until the test ends (or the
// client hangs up), for the requests that refused reports.
func stallRefusals(t *testing.T, srv *protoServer, refused func(*http.Request) bool) {
	t.Helper()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) }) // before srv.Close, which waits for handlers
	h := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !refused(r) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", "4096")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
}

// within fails the test if f does not return within a generous deadline.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5 s while a refused response stalls", what)
	}
}

func TestStalledRefusalDoesNotHang(t *testing.T) {
	srv := newProtoServer(t)
	stallRefusals(t, srv, func(r *http.Request) bool {
		return strings.HasPrefix(r.URL.Path, "/api/") && !srv.valid(r.Header.Get("accessToken"))
	})
	tr, _ := srv.transport(srv.stale())
	var code int
	var err error
	within(t, "RoundTrip", func() {
		var resp *http.Response
		resp, err = NewClient(nil, tr).Get(srv.URL + "/api/x") // no deadline
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
	})
	if err != nil || code != 200 {
		t.Errorf("got %d, %v; want 200 after a refresh and a replay", code, err)
	}
	if n := srv.refreshCalls.Load(); n != 1 {
		t.Errorf("refresh calls = %d; want 1", n)
	}
}

func TestStoreErrorTextThroughTransport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(`{"accessToken": "tru`), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &Transport{Store: NewFileStore(path), Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})}
	req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, ErrCorruptFile) {
		t.Fatalf("error = %v; want ErrCorruptFile", err)
	}
	msg := err.Error()
	if n := strings.Count(msg, "autorefresh:"); n != 1 || strings.Contains(msg, "load tokens: autorefresh: load") {
		t.Errorf("error %q: want one \"autorefresh:\" prefix and no doubled \"load\"", msg)
	}
}
