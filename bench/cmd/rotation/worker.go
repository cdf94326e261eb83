package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// worker sends requests one after another and records what they took.
type worker struct {
	client *http.Client
	url    string
	tr     *tracker
	slow   time.Duration // R/2

	describe time.Duration // with tr.out: describe requests that took this long

	starts    []int64 // of each request, in ns since the start of the run
	latencies []time.Duration
	requests  int64
	failed    int64
	refused   int64
	waited    int64 // requests that took ≥ R/2
	firstErr  string
	waits     []int         // of the requests that took ≥ R/2 with a valid token
	slowOnes  []slowRequest // with tr.out
}

// slowRequest describes a request that took at least -vmin.
type slowRequest struct {
	start time.Time
	took  time.Duration
	valid bool // the token the client held when it started was valid
}

func (w *worker) loop(deadline time.Time) {
	for time.Now().Before(deadline) {
		start := time.Now()
		valid := start.UnixNano() < w.tr.expiry.Load()
		err := w.get()
		took := time.Since(start)
		w.record(start, took, valid, err)
	}
}

// record counts a request that started at start and took took.
func (w *worker) record(start time.Time, took time.Duration, valid bool, err error) {
	w.requests++
	w.starts = append(w.starts, int64(start.Sub(w.tr.start)))
	w.latencies = append(w.latencies, took)
	if took >= w.slow {
		w.waited++
		if valid {
			w.waits = append(w.waits, len(w.starts)-1)
		}
	}
	if w.tr.out != nil && took >= w.describe {
		w.slowOnes = append(w.slowOnes, slowRequest{start, took, valid})
	}
	if err != nil {
		w.failed++
		if w.firstErr == "" {
			w.firstErr = err.Error()
		}
	}
}

// errRefused is the error of a request answered 401 or 403.
var errRefused = errors.New("refused")

func (w *worker) get() error {
	resp, err := w.client.Get(w.url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		w.refused++
		return fmt.Errorf("%w: status %d", errRefused, resp.StatusCode)
	}
	return fmt.Errorf("status %d", resp.StatusCode)
}

// summarize adds up the workers' counts and latencies. refreshes are the
// spans during which a refresh ran, stalls those during which the process
// stalled.
func summarize(ws []*worker, refreshes, stalls []interval) result {
	var res result
	var all []time.Duration
	for _, w := range ws {
		res.requests += w.requests
		res.failed += w.failed
		res.refused += w.refused
		res.waited += w.waited
		res.waitedValid += int64(len(w.waits))
		for _, i := range w.waits {
			if overlaps(w.starts[i], w.latencies[i], stalls) {
				res.waitedStalled++
			}
		}
		if res.firstErr == "" {
			res.firstErr = w.firstErr
		}
		all = append(all, w.latencies...)
		res.maxDuring = max(res.maxDuring, w.maxDuring(refreshes))
	}
	if len(all) == 0 {
		return res
	}
	slices.Sort(all)
	at := func(q float64) time.Duration { return all[int(q*float64(len(all)-1))] }
	res.p50, res.p99, res.p999, res.max = at(0.5), at(0.99), at(0.999), all[len(all)-1]
	return res
}

// maxDuring returns the longest latency of w's requests that were in flight
// while one of refreshes ran.
func (w *worker) maxDuring(refreshes []interval) time.Duration {
	var longest time.Duration
	for i, from := range w.starts {
		if overlaps(from, w.latencies[i], refreshes) {
			longest = max(longest, w.latencies[i])
		}
	}
	return longest
}

// describeSlow describes the slow requests of ws, in the order they started.
func (tr *tracker) describeSlow(ws []*worker) {
	if tr.out == nil {
		return
	}
	var all []slowRequest
	for _, w := range ws {
		all = append(all, w.slowOnes...)
	}
	slices.SortFunc(all, func(a, b slowRequest) int { return a.start.Compare(b.start) })
	for _, r := range all {
		fmt.Fprintf(tr.out, "%s: request started at +%v took %v, token valid %v\n",
			tr.impl, tr.since(r.start), r.took.Round(time.Millisecond), r.valid)
	}
}
