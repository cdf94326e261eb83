package bench

import (
	"maps"
	"net/http"
	"slices"
	"testing"
)

// recordingBase answers 200 like memoryBase and keeps the last request it
// was given.
type recordingBase struct{ last *http.Request }

func (r *recordingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	r.last = req
	return memoryBase{}.RoundTrip(req)
}

// TestContendersAgree checks that the steady-state contenders do the same
// work: each sends the request's own headers plus the auth header(s) its
// scheme calls for, with the token the server expects, and the server
// accepts it.
func TestContendersAgree(t *testing.T) {
	srv := newBenchServer(t)
	tok := srv.issue()
	bearer := map[string]string{"Accept": "application/json", "User-Agent": "autorefresh-bench/1", "Authorization": "Bearer " + tok.AccessToken}
	want := map[string]map[string]string{
		"oauth2":             bearer,
		"autorefresh-bearer": bearer,
		"bare":               bearer,
		"autorefresh": {
			"Accept": "application/json", "User-Agent": "autorefresh-bench/1",
			"accessToken": tok.AccessToken, "refreshToken": tok.RefreshToken,
		},
	}
	loopback := &http.Transport{}
	defer loopback.CloseIdleConnections()
	for _, c := range contenders {
		t.Run(c.impl, func(t *testing.T) {
			rec := new(recordingBase)
			rt, req := c.new(srv, rec, tok)
			before := req.Header.Clone()
			if err := send(rt, req); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range rec.last.Header {
				if len(v) != 1 {
					t.Errorf("header %s has %d values; want 1", k, len(v))
				}
				got[k] = v[0]
			}
			if !maps.Equal(got, want[c.impl]) {
				t.Errorf("sent headers %v; want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want[c.impl])))
			}
			if !maps.EqualFunc(req.Header, before, slices.Equal) {
				t.Errorf("caller's request headers changed to %v; want %v", req.Header, before)
			}

			rt, req = c.new(srv, loopback, tok)
			if err := send(rt, req); err != nil {
				t.Errorf("over loopback: %v", err)
			}
		})
	}
	if n := srv.refusals.Load(); n != 0 {
		t.Errorf("requests refused = %d; want 0", n)
	}
	if n := srv.refreshCalls.Load(); n != 0 {
		t.Errorf("refresh calls = %d; want 0", n)
	}
}

// TestBurstRefreshesOnce runs every burst contender through two expiries
// in a row, each with 100 concurrent requests: burst fails the test unless
// each makes exactly one refresh and every request succeeds.
func TestBurstRefreshesOnce(t *testing.T) {
	srv := newBenchServer(t)
	api, refresh := newBurstTransports(t)
	for _, c := range burstClients(srv, api, refresh) {
		t.Run("detect="+c.detect+"/impl="+c.impl, func(t *testing.T) {
			for range 2 {
				if lat := burst(t, srv, c, 100, nil); len(lat) != 100 {
					t.Fatalf("latencies = %d; want 100", len(lat))
				}
			}
		})
	}
}
