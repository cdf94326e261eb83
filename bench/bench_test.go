package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"golang.org/x/oauth2"
)

// A contender is one way of sending an authenticated request. Given the
// base that sends it and a good token pair, it returns its RoundTripper and
// the request to send through it. Every contender's request has the same
// URL and headers, and reaches the base with one header added (two for
// autorefresh's default scheme).
type contender struct {
	impl string
	new  func(srv *benchServer, base http.RoundTripper, tok autorefresh.Tokens) (http.RoundTripper, *http.Request)
}

// contenders lists the steady-state contenders, oauth2 first so that
// benchstat -col /impl compares the others with it.
var contenders = []contender{
	{"oauth2", func(srv *benchServer, base http.RoundTripper, tok autorefresh.Tokens) (http.RoundTripper, *http.Request) {
		return &oauth2.Transport{Base: base, Source: oauth2Source(srv, nil, tok)}, newAPIRequest(srv.URL)
	}},
	// autorefresh-bearer is configured as oauth2 is (an OAuth 2.0 token
	// endpoint) and sends what oauth2 sends (Authorization: Bearer): the
	// apples-to-apples row against oauth2.
	{"autorefresh-bearer", func(srv *benchServer, base http.RoundTripper, tok autorefresh.Tokens) (http.RoundTripper, *http.Request) {
		return newAutorefreshBearer(srv, base, nil, tok), newAPIRequest(srv.URL)
	}},
	// autorefresh sends the default scheme: accessToken and refreshToken.
	{"autorefresh", func(srv *benchServer, base http.RoundTripper, tok autorefresh.Tokens) (http.RoundTripper, *http.Request) {
		return newAutorefresh(srv, base, nil, tok), newAPIRequest(srv.URL)
	}},
	// bare is the floor: the base alone, sending a request whose caller
	// set the Authorization header itself.
	{"bare", func(srv *benchServer, base http.RoundTripper, tok autorefresh.Tokens) (http.RoundTripper, *http.Request) {
		req := newAPIRequest(srv.URL)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return base, req
	}},
}

// newAPIRequest returns the request every contender sends.
func newAPIRequest(serverURL string) *http.Request {
	req, err := http.NewRequest("GET", serverURL+"/api/items?page=1", nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "autorefresh-bench/1")
	return req
}

// newAutorefresh returns a Transport over base holding tok, refreshing
// through srv's header-protocol endpoint over refresh (the default
// transport if nil).
func newAutorefresh(srv *benchServer, base, refresh http.RoundTripper, tok autorefresh.Tokens) *autorefresh.Transport {
	return &autorefresh.Transport{
		Base:      base,
		Store:     autorefresh.NewMemoryStore(tok),
		Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken", Base: refresh},
	}
}

// newAutorefreshBearer returns a Transport over base holding tok, sending
// it with BearerScheme and refreshing through srv's OAuth 2.0 token
// endpoint over refresh (the default transport if nil), as oauth2Source
// does.
func newAutorefreshBearer(srv *benchServer, base, refresh http.RoundTripper, tok autorefresh.Tokens) *autorefresh.Transport {
	return &autorefresh.Transport{
		Base:  base,
		Store: autorefresh.NewMemoryStore(tok),
		Refresher: &autorefresh.OAuth2{
			TokenURL:  srv.URL + "/oauth/token",
			ClientID:  "bench",
			AuthStyle: autorefresh.AuthStyleInParams,
			Base:      refresh,
		},
		Scheme: autorefresh.BearerScheme,
	}
}

// oauth2Source returns what oauth2.Config.Client uses: a ReuseTokenSource
// holding tok, refreshing through srv's token endpoint over refresh (the
// default transport if nil).
func oauth2Source(srv *benchServer, refresh http.RoundTripper, tok autorefresh.Tokens) oauth2.TokenSource {
	cfg := &oauth2.Config{
		ClientID: "bench",
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	ctx := context.Background()
	if refresh != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: refresh})
	}
	t := oauth2Token(tok)
	return oauth2.ReuseTokenSource(t, cfg.TokenSource(ctx, t))
}

// memoryBase answers every request at once with a canned response. The
// responses are recycled (see send), so that the base allocates nothing,
// while each caller gets one of its own: a response belongs to the caller
// of RoundTrip, which may set its fields.
type memoryBase struct{}

var responses = sync.Pool{New: func() any { return new(http.Response) }}

const memoryProto = "memory"

func (memoryBase) RoundTrip(*http.Request) (*http.Response, error) {
	r := responses.Get().(*http.Response)
	*r = http.Response{StatusCode: http.StatusOK, Proto: memoryProto, Body: http.NoBody}
	return r, nil
}

// send sends req through rt and reads the response, which must be a 200.
func send(rt http.RoundTripper, req *http.Request) error {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	if resp.Body != http.NoBody {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	status := resp.StatusCode
	if resp.Proto == memoryProto {
		responses.Put(resp)
	}
	if status != http.StatusOK {
		return fmt.Errorf("status = %d; want 200", status)
	}
	return nil
}

// BenchmarkSteadyState measures a request with a good token (a JWT that
// expires in an hour, so that the expiry checks run) through each
// contender, over an in-memory base (the contender's own overhead) and over
// a loopback server (a whole request, the server's work included).
func BenchmarkSteadyState(b *testing.B) {
	srv := newBenchServer(b)
	loopback := &http.Transport{MaxIdleConnsPerHost: 64}
	defer loopback.CloseIdleConnections()
	tok := srv.issue()

	for _, base := range []struct {
		name string
		rt   http.RoundTripper
	}{{"memory", memoryBase{}}, {"loopback", loopback}} {
		for _, c := range contenders {
			rt, req := c.new(srv, base.rt, tok)
			name := "base=" + base.name + "/impl=" + c.impl
			b.Run(name+"/mode=serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := send(rt, req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/mode=parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := send(rt, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
	if n := srv.refreshCalls.Load(); n != 0 {
		b.Fatalf("refresh calls = %d; want 0 in steady state", n)
	}
}

// burstSizes are the numbers of concurrent requests in a burst.
var burstSizes = []int{1, 100, 1000}

// A burstClient is a contender in the burst. Before each burst, arm gives
// it a stale token pair and returns the RoundTripper to send the burst
// through.
type burstClient struct {
	detect string // how the client learns that the token is stale: "403", "401" or "expiry"
	impl   string
	arm    func(tb testing.TB) http.RoundTripper
}

// burstClients returns the contenders of the burst, sending requests to
// srv's API over api and refreshing over refresh.
//
// With detect=403 and detect=401 the stale access token is opaque: the
// client cannot tell that it expired until the server refuses it, with a
// 403 in the header protocol (autorefresh's DefaultScheme and Endpoint), or
// a 401 invalid_token challenge for a bearer token (BearerScheme and
// OAuth2). Only autorefresh can run these cases, as oauth2.Transport
// returns a refusal to the caller. With detect=expiry the stale access token is a
// JWT that expired a second ago, which both clients see before sending;
// both send Authorization: Bearer and refresh at the same OAuth 2.0 token
// endpoint.
func burstClients(srv *benchServer, api, refresh http.RoundTripper) []burstClient {
	arm := func(tb testing.TB, tr *autorefresh.Transport, tok autorefresh.Tokens) http.RoundTripper {
		if err := tr.SetTokens(context.Background(), tok); err != nil {
			tb.Fatal(err)
		}
		return tr
	}
	header := newAutorefresh(srv, api, refresh, autorefresh.Tokens{})
	bearer := newAutorefreshBearer(srv, api, refresh, autorefresh.Tokens{})
	return []burstClient{
		{"403", "autorefresh", func(tb testing.TB) http.RoundTripper {
			return arm(tb, header, srv.staleOpaque())
		}},
		{"401", "autorefresh", func(tb testing.TB) http.RoundTripper {
			return arm(tb, bearer, srv.staleOpaque())
		}},
		{"expiry", "autorefresh", func(tb testing.TB) http.RoundTripper {
			return arm(tb, bearer, srv.staleExpired())
		}},
		{"expiry", "oauth2", func(tb testing.TB) http.RoundTripper {
			return &oauth2.Transport{Base: api, Source: oauth2Source(srv, refresh, srv.staleExpired())}
		}},
	}
}

// newBurstTransports returns the transports that a burst's requests and
// refreshes go over: a pool of at most 100 connections for the API, as a
// client would keep, and a separate one for the refresh endpoint, so that
// the refresh does not queue behind the burst for a connection.
func newBurstTransports(tb testing.TB) (api, refresh *http.Transport) {
	api = &http.Transport{MaxConnsPerHost: 100, MaxIdleConnsPerHost: 100}
	refresh = &http.Transport{MaxIdleConnsPerHost: 4}
	tb.Cleanup(api.CloseIdleConnections)
	tb.Cleanup(refresh.CloseIdleConnections)
	return api, refresh
}

// burst arms c, sends n concurrent GETs through it at once and returns
// their latencies appended to lat. It fails tb unless every request got a
// 200, exactly one refresh was made, and no refresh token was spent twice.
// When tb is a *testing.B, only the burst itself is timed: the caller stops
// the timer first.
func burst(tb testing.TB, srv *benchServer, c burstClient, n int, lat []time.Duration) []time.Duration {
	tb.Helper()
	rt := c.arm(tb)
	req := newAPIRequest(srv.URL)
	refreshes, reuses, refused := srv.refreshCalls.Load(), srv.reuses.Load(), srv.refusals.Load()

	var ready, done sync.WaitGroup
	start := make(chan struct{})
	took := make([]time.Duration, n)
	errs := make([]error, n)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			t0 := time.Now()
			errs[i] = send(rt, req)
			took[i] = time.Since(t0)
		}()
	}
	ready.Wait()
	b, _ := tb.(*testing.B)
	if b != nil {
		b.StartTimer()
	}
	close(start)
	done.Wait()
	if b != nil {
		b.StopTimer()
	}

	for i, err := range errs {
		if err != nil {
			tb.Fatalf("request %d of %d: %v", i, n, err)
		}
	}
	if got := srv.refreshCalls.Load() - refreshes; got != 1 {
		tb.Fatalf("refresh calls = %d; want 1 for a burst of %d", got, n)
	}
	if got := srv.reuses.Load() - reuses; got != 0 {
		tb.Fatalf("refresh tokens spent twice = %d; want 0", got)
	}
	got, want := srv.refusals.Load()-refused, int64(n) // each request is refused at most once
	if c.detect == "expiry" {
		want = 0 // the stale token is never sent
	}
	if got > want {
		tb.Fatalf("requests refused = %d; want at most %d", got, want)
	}
	return append(lat, took...)
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, i-1)]
}

// BenchmarkBurst sends bursts of n concurrent requests, arriving just
// after the access token expired, through a loopback server whose refresh
// endpoint takes 2ms and rotates single-use refresh tokens. One op is one
// burst: ns/op is its wall time, refreshes/op the refresh calls the server
// got (always 1, or the benchmark fails), refused/op the requests the API
// refused with 403 or 401 (each then replayed once), p50-ns and p99-ns the
// latency of a single request.
func BenchmarkBurst(b *testing.B) {
	srv := newBenchServer(b)
	api, refresh := newBurstTransports(b)
	for _, c := range burstClients(srv, api, refresh) {
		for _, n := range burstSizes {
			b.Run(fmt.Sprintf("detect=%s/impl=%s/n=%d", c.detect, c.impl, n), func(b *testing.B) {
				b.StopTimer()
				refreshes, refused := srv.refreshCalls.Load(), srv.refusals.Load()
				var lat []time.Duration
				for range b.N {
					lat = burst(b, srv, c, n, lat)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(srv.refreshCalls.Load()-refreshes)/float64(b.N), "refreshes/op")
				b.ReportMetric(float64(srv.refusals.Load()-refused)/float64(b.N), "refused/op")
				b.ReportMetric(float64(percentile(lat, 50)), "p50-ns")
				b.ReportMetric(float64(percentile(lat, 99)), "p99-ns")
			})
		}
	}
}
