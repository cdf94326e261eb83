package autorefresh

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noGetBody hides a reader's type so that http.NewRequest sets no GetBody.
type noGetBody struct{ io.Reader }

func TestReplayBody(t *testing.T) {
	checkGoroutines(t)
	small := strings.Repeat("a little body. ", 100)
	big := strings.Repeat("0123456789abcdef", 128<<10) // 2 MiB
	tests := []struct {
		name     string
		body     func() io.Reader
		getBody  bool
		max      int64
		early403 bool // the server refuses before reading the body
		wantErr  error
	}{
		{"GetBody", func() io.Reader { return strings.NewReader(small) }, true, 0, false, nil},
		{"GetBody big", func() io.Reader { return strings.NewReader(big) }, true, 0, false, nil},
		{"buffered", func() io.Reader { return noGetBody{strings.NewReader(small)} }, false, 0, false, nil},
		{"buffered, refused before read", func() io.Reader { return noGetBody{strings.NewReader(big)} }, false, 4 << 20, true, nil},
		{"unread rest after limit", func() io.Reader { return noGetBody{strings.NewReader(big)} }, false, 0, true, nil},
		{"too big", func() io.Reader { return noGetBody{strings.NewReader(big)} }, false, 0, false, ErrBodyNotReplayable},
		{"buffering off", func() io.Reader { return noGetBody{strings.NewReader(small)} }, false, -1, false, ErrBodyNotReplayable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newProtoServer(t)
			stale := srv.stale()
			tr, _ := srv.transport(stale)
			tr.MaxReplayBody = tt.max
			if tt.early403 {
				tr.Base = refuseBeforeReading(stale.AccessToken)
			}
			req, _ := http.NewRequest("POST", srv.URL+"/api/echo", tt.body())
			if (req.GetBody != nil) != tt.getBody {
				t.Fatalf("GetBody set = %v; want %v", req.GetBody != nil, tt.getBody)
			}
			body := &trackedBody{r: req.Body}
			req.Body = body
			resp, err := NewClient(nil, tr).Do(req)
			if tt.wantErr != nil {
				checkNotReplayed(t, err, tt.wantErr, body)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkEchoed(t, resp, "POST /api/echo "+string(readAll(tt.body())))
			if !tt.early403 {
				checkSameBodyTwice(t, srv)
			}
			if !tt.getBody && !body.closed.Load() {
				t.Error("request body not closed")
			}
		})
	}
}

// refuseBeforeReading returns a base whose first attempt, with the access
// token stale, reads a little of the body, closes it and is refused, as a
// server that answers before reading the whole body. Other requests go to
// http.DefaultTransport.
func refuseBeforeReading(stale string) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		//lint:ignore SA1008 the token headers are sent as written
		if v := r.Header["accessToken"]; v[0] != stale {
			return http.DefaultTransport.RoundTrip(r)
		}
		io.CopyN(io.Discard, r.Body, 1000)
		r.Body.Close()
		return &http.Response{StatusCode: 403, Body: http.NoBody, Request: r}, nil
	}
}

// checkNotReplayed checks that a request that could not be replayed failed
// with wantErr and that its body was closed.
func checkNotReplayed(t *testing.T, err, wantErr error, body *trackedBody) {
	t.Helper()
	if !errors.Is(err, wantErr) {
		t.Errorf("error = %v; want %v", err, wantErr)
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
}

// checkEchoed reads and closes resp's body and checks that it is a 200
// echoing want.
func checkEchoed(t *testing.T, resp *http.Response, want string) {
	t.Helper()
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != want {
		t.Errorf("replay got %d with %d bytes echoed; want 200 with %d", resp.StatusCode, len(got), len(want))
	}
}

// checkSameBodyTwice checks that srv saw the body twice, the same both
// times.
func checkSameBodyTwice(t *testing.T, srv *protoServer) {
	t.Helper()
	if seen := srv.seenBodies(); len(seen) != 2 || seen[0] != seen[1] {
		t.Errorf("server saw %d bodies, equal = %v; want 2 equal bodies", len(seen), len(seen) == 2 && seen[0] == seen[1])
	}
}

func readAll(r io.Reader) []byte {
	b, _ := io.ReadAll(r)
	return b
}

func TestReplayStreamedBodyOverHTTP2(t *testing.T) {
	checkGoroutines(t)
	var got atomic.Pointer[string]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/auth/refreshtoken":
			io.WriteString(w, `{"accessToken":"new","refreshToken":"r2"}`)
		case r.Header.Get("accessToken") != "new":
			// Refuse after reading a little of the body.
			io.ReadFull(r.Body, make([]byte, 4))
			w.WriteHeader(http.StatusForbidden)
		default:
			b, _ := io.ReadAll(r.Body)
			s := string(b)
			got.Store(&s)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	for i := range 5 {
		tr := &Transport{
			Base:      srv.Client().Transport,
			Store:     NewMemoryStore(Tokens{AccessToken: "old", RefreshToken: "r1"}),
			Refresher: &Endpoint{URL: srv.URL + "/auth/refreshtoken", Base: srv.Client().Transport},
		}
		pr, pw := io.Pipe()
		want := strings.Repeat("A", 4<<10) + "BBBB" + "CCCC" + "DDDD"
		go func() {
			pw.Write([]byte(want[:4<<10]))
			pw.Write([]byte("BBBB"))
			time.Sleep(20 * time.Millisecond) // the refusal arrives meanwhile
			pw.Write([]byte("CCCC"))
			pw.Write([]byte("DDDD"))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", srv.URL+"/upload", pr)
		resp, err := NewClient(srv.Client(), tr).Do(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || got.Load() == nil || *got.Load() != want {
			n := -1
			if p := got.Load(); p != nil {
				n = len(*p)
			}
			t.Fatalf("attempt %d: status %d, replay carried %d bytes; want 200 with the %d bytes sent", i, resp.StatusCode, n, len(want))
		}
		got.Store(nil)
	}
}

func TestReplayWaitIsBounded(t *testing.T) {
	// A base that neither reads nor closes the body breaks the
	// RoundTripper contract; the replay gives up after RefreshTimeout.
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/auth/refreshtoken" {
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"accessToken":"new"}`)), Request: r}, nil
		}
		return &http.Response{StatusCode: 403, Body: http.NoBody, Request: r}, nil
	})
	tr := &Transport{
		Base:           base,
		Store:          NewMemoryStore(Tokens{AccessToken: "old", RefreshToken: "r"}),
		Refresher:      &Endpoint{URL: "http://127.0.0.1/auth/refreshtoken", Base: base},
		RefreshTimeout: 50 * time.Millisecond,
	}
	req, _ := http.NewRequest("POST", "http://127.0.0.1/x", noGetBody{strings.NewReader("body")})
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, ErrBodyNotReplayable) {
		t.Errorf("error = %v; want ErrBodyNotReplayable", err)
	}
}

// TestReplayMemoryBound sends many refused requests at once, each with a
// 64 KiB body without GetBody, and refuses them only once all have been
// read: with MaxReplayMemory set, only as many as fit in it keep a replay
// buffer, and the others fail with ErrBodyNotReplayable.
func TestReplayMemoryBound(t *testing.T) {
	const (
		n    = 16
		size = 64 << 10
	)
	tests := []struct {
		name        string
		max         int64
		maxReplayed int // at most this many replayed
		minReplayed int // at least this many
	}{
		{"256 KiB", 256 << 10, 256 << 10 / size, 1},
		{"no bound", -1, n, n},
		{"default", 0, n, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newProtoServer(t)
			stale := srv.stale()
			var arrived atomic.Int64
			all := make(chan struct{})
			h := srv.Config.Handler
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/echo" || r.Header.Get("accessToken") != stale.AccessToken {
					h.ServeHTTP(w, r)
					return
				}
				io.Copy(io.Discard, r.Body) // the whole body is read before the refusal
				if arrived.Add(1) == n {
					close(all)
				}
				select {
				case <-all:
				case <-r.Context().Done():
				case <-time.After(time.Minute): // a bug, not a timing: fail rather than hang
				}
				http.Error(w, "forbidden", http.StatusForbidden)
			})
			tr, _ := srv.transport(stale)
			tr.MaxReplayMemory = tt.max
			c := NewClient(nil, tr)

			var replayed, refused atomic.Int64
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					body := bytes.Repeat([]byte{byte('a' + i)}, size)
					req, _ := http.NewRequest("POST", srv.URL+"/api/echo", noGetBody{bytes.NewReader(body)})
					req.ContentLength = size
					resp, err := c.Do(req)
					switch {
					case errors.Is(err, ErrBodyNotReplayable):
						refused.Add(1)
						return
					case err != nil:
						t.Errorf("request %d: %v", i, err)
						return
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := "POST /api/echo " + string(body); resp.StatusCode != 200 || string(got) != want {
						t.Errorf("request %d: replay got %d with %d bytes echoed; want 200 with its own %d", i, resp.StatusCode, len(got), len(want))
						return
					}
					replayed.Add(1)
				})
			}
			wg.Wait()
			if r := int(replayed.Load()); r < tt.minReplayed || r > tt.maxReplayed {
				t.Errorf("replayed %d of %d requests (%d failed with ErrBodyNotReplayable); want between %d and %d",
					r, n, refused.Load(), tt.minReplayed, tt.maxReplayed)
			}
		})
	}
}
