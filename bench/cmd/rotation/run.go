package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"golang.org/x/oauth2"
)

// result is what one client's run measured.
type result struct {
	impl                      string
	requests, failed, refused int64
	firstErr                  string
	refreshes, reuses         int64 // refresh calls and reuse rejections at the server
	waitedValid, waited       int64 // requests that took ≥ R/2 (while their token was valid)
	waitedStalled             int64 // of waitedValid, those in flight during a stall of the process
	p50, p99, p999, max       time.Duration
	maxDuring                 time.Duration // of the requests in flight while a refresh ran
	stall                     time.Duration // the longest overrun of a 5 ms heartbeat
}

// lifetimes returns the number of token lifetimes a run of cfg crosses.
func (cfg config) lifetimes() float64 { return float64(cfg.duration) / float64(cfg.lifetime) }

// misses returns the targets that res misses: no request that waited ≥ R/2
// with a valid token (but during a stall of the process), a maximum within 2 × p99.9 plus the noise allowance,
// at most one refresh per lifetime crossed plus one, nothing failed,
// nothing refused, no refresh token reused.
func (cfg config) misses(res result) []string {
	var m []string
	if res.waitedValid > res.waitedStalled {
		m = append(m, "waited")
	}
	if res.max > 2*res.p999+cfg.noise {
		m = append(m, "max")
	}
	if float64(res.refreshes) > cfg.lifetimes()+1 {
		m = append(m, "refreshes")
	}
	if res.failed != 0 || res.refused != 0 || res.reuses != 0 {
		m = append(m, "failed")
	}
	return m
}

// run runs the workers of cfg through the client impl, against a server of
// its own.
func run(impl string, cfg config) (result, error) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: cfg.lifetime})
	defer srv.Close()
	srv.SetRefreshLatency(cfg.latency)
	api := &http.Transport{MaxIdleConnsPerHost: cfg.workers, MaxIdleConns: cfg.workers}
	refresh := &http.Transport{}
	defer api.CloseIdleConnections()
	defer refresh.CloseIdleConnections()

	tok := srv.Issue(autorefreshtest.DefaultUser)
	tr := &tracker{out: cfg.verbose, impl: impl, start: time.Now(), stallMin: min(50*time.Millisecond, cfg.latency/4)}
	tr.expiry.Store(tok.Expiry.UnixNano())
	client := &http.Client{Transport: newClient(impl, cfg, srv, tok, api, refresh, tr)}

	deadline := tr.start.Add(cfg.duration)
	ws := make([]*worker, cfg.workers)
	var wg sync.WaitGroup
	var stall time.Duration
	wg.Go(func() { stall = tr.heartbeat(deadline) })
	for i := range ws {
		ws[i] = &worker{client: client, url: srv.URL + "/api/me", tr: tr,
			slow: cfg.latency / 2, describe: cmp.Or(cfg.slowest, cfg.latency/2)}
		wg.Go(func() { ws[i].loop(deadline) })
	}
	wg.Wait()
	st := srv.Stats()
	tr.describeSlow(ws)
	refreshes, stalls := tr.spans()
	res := summarize(ws, refreshes, stalls)
	res.impl, res.refreshes, res.reuses, res.stall = impl, st.RefreshCalls, st.ReuseRejections, stall
	if res.requests == 0 {
		return res, fmt.Errorf("%s: no request was sent", impl)
	}
	return res, nil
}

// newClient returns the RoundTripper of impl, holding tok, that sends API
// requests with api and refresh calls with refresh, and tells tr about
// every refresh.
func newClient(impl string, cfg config, srv *autorefreshtest.Server, tok autorefresh.Tokens, api, refresh http.RoundTripper, tr *tracker) http.RoundTripper {
	switch impl {
	case "autorefresh":
		return &autorefresh.Transport{
			Base:      api,
			Store:     autorefresh.NewMemoryStore(tok),
			Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken", Base: refresh},
			OnRefresh: tr.note,
		}
	case "autorefresh-bearer":
		return &autorefresh.Transport{
			Base:      api,
			Store:     autorefresh.NewMemoryStore(tok),
			Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", Base: refresh},
			Scheme:    autorefresh.BearerScheme,
			OnRefresh: tr.note,
		}
	}
	conf := &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: refresh})
	t := &oauth2.Token{AccessToken: tok.AccessToken, TokenType: "Bearer", RefreshToken: tok.RefreshToken, Expiry: tok.Expiry}
	src := noteSource{conf.TokenSource(ctx, t), tr}
	return &oauth2.Transport{Base: api, Source: oauth2.ReuseTokenSourceWithExpiry(t, src, cfg.oauth2Early)}
}

// noteSource tells its tracker about the refreshes of its TokenSource.
// oauth2's ReuseTokenSource calls it under its mutex, so the tracker knows
// of a new token before any request gets it.
type noteSource struct {
	src oauth2.TokenSource
	tr  *tracker
}

func (s noteSource) Token() (*oauth2.Token, error) {
	start := time.Now()
	t, err := s.src.Token()
	ev := autorefresh.RefreshEvent{Proactive: true, Duration: time.Since(start), Err: err}
	if err == nil {
		ev.NewExpiry = t.Expiry
	}
	s.tr.note(ev)
	return t, err
}

// tracker follows the refreshes of one client's run: the expiry of the
// newest token the client holds, when each refresh ran, and when the
// process stalled for stallMin or more. If out is not nil, it describes
// every refresh, every slow request and every stall there.
type tracker struct {
	expiry   atomic.Int64 // Unix ns
	out      io.Writer
	impl     string
	start    time.Time
	stallMin time.Duration

	mu        sync.Mutex // guards intervals and stalls
	intervals []interval
	stalls    []interval
}

// interval is a span of time, in nanoseconds since the start of the run.
type interval struct{ from, to int64 }

// note records a refresh that ended now.
func (tr *tracker) note(ev autorefresh.RefreshEvent) {
	if ev.Err == nil && !ev.NewExpiry.IsZero() {
		tr.expiry.Store(ev.NewExpiry.UnixNano())
	}
	end := time.Since(tr.start)
	tr.mu.Lock()
	tr.intervals = append(tr.intervals, interval{int64(end - ev.Duration), int64(end)})
	tr.mu.Unlock()
	if tr.out != nil {
		fmt.Fprintf(tr.out, "%s: refresh ended at +%v: took %v, proactive %v, adopted %v, new expiry +%v, error %v\n",
			tr.impl, end.Round(time.Millisecond), ev.Duration.Round(time.Millisecond), ev.Proactive, ev.Adopted,
			tr.since(ev.NewExpiry), ev.Err)
	}
}

// spans returns when the refreshes ran, and when the process stalled.
func (tr *tracker) spans() (refreshes, stalls []interval) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]interval(nil), tr.intervals...), append([]interval(nil), tr.stalls...)
}

// overlaps reports whether a request that started at from (ns since the
// start of the run) and took took was in flight during one of spans.
func overlaps(from int64, took time.Duration, spans []interval) bool {
	to := from + int64(took)
	for _, s := range spans {
		if from < s.to && to > s.from {
			return true
		}
	}
	return false
}

// beat is the period of the heartbeat.
const beat = 5 * time.Millisecond

// heartbeat sleeps for beat over and over until deadline, and returns by
// how much the longest sleep overran: a measure of the stalls of the whole
// process (the machine is shared, its CPUs throttled, the collector runs),
// which hold requests up whatever the client does. It records the overruns
// of stallMin or more as stalls.
func (tr *tracker) heartbeat(deadline time.Time) time.Duration {
	var worst time.Duration
	for {
		start := time.Now()
		if !start.Before(deadline) {
			return worst
		}
		time.Sleep(beat) // the measurement itself, not a wait for an event
		over := time.Since(start) - beat
		worst = max(worst, over)
		if over < tr.stallMin {
			continue
		}
		from := int64(start.Sub(tr.start))
		tr.mu.Lock()
		tr.stalls = append(tr.stalls, interval{from, from + int64(beat+over)})
		tr.mu.Unlock()
		if tr.out != nil {
			fmt.Fprintf(tr.out, "%s: the process stalled at +%v for %v\n", tr.impl, tr.since(start), over.Round(time.Millisecond))
		}
	}
}

// since returns how long after the start of the run t was.
func (tr *tracker) since(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(tr.start).Round(time.Millisecond)
}
