package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/autorefresh/autorefresh/redisstore"
)

// noLock hides the Store's Lock method, so that a Transport refreshes
// without the cluster-wide lock.
type noLock struct{ autorefresh.TokenStore }

// generations records the access tokens that came into use, by expiry.
type generations struct {
	mu  sync.Mutex     // guards exp
	exp map[int64]bool // expiry in Unix milliseconds
}

func (g *generations) add(exp time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exp[exp.UnixMilli()] = true
}

// at reports how many access tokens came into use, how many of them expired
// by now, and when the newest expires.
func (g *generations) at(now time.Time) (n, expired int, newest time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for ms := range g.exp {
		exp := time.UnixMilli(ms)
		if !exp.After(now) {
			expired++
		}
		if exp.After(newest) {
			newest = exp
		}
	}
	return len(g.exp), expired, newest
}

// replicaRun is the outcome of runReplicas.
type replicaRun struct {
	requests, failed int64
	adopted          int64 // refreshes done by adopting another replica's pair

	mu           sync.Mutex // guards firstFailure
	firstFailure string

	// When the workers were told to stop: access tokens that expired
	// and refresh calls the server had received.
	expired      int
	refreshCalls int64

	end autorefreshtest.Stats // the server once all workers were done
}

// work sends requests to url through client until stop is closed (at most
// 2000), counting them and their failures in run.
func (run *replicaRun) work(client *http.Client, url string, stop <-chan struct{}) {
	for i := 0; i < 2000; i++ { // bounded, whatever the timing
		select {
		case <-stop:
			return
		default:
		}
		atomic.AddInt64(&run.requests, 1)
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			atomic.AddInt64(&run.failed, 1)
			run.mu.Lock()
			if run.firstFailure == "" {
				run.firstFailure = err.Error()
			}
			run.mu.Unlock()
		}
		time.Sleep(200*time.Millisecond + rand.N(200*time.Millisecond))
	}
}

// runReplicas runs replicas independent Transports (each with its own Redis
// client, Store value, singleflight and connection pool) sharing one key,
// with workers goroutines each sending requests, until expiries access
// tokens have been replaced and the newest one is a quarter through its
// life. withLock false hides the Store's Lock from the Transports.
func runReplicas(t *testing.T, ttl time.Duration, replicas, workers, expiries int, withLock bool) *replicaRun {
	t.Helper()
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: ttl})
	t.Cleanup(srv.Close)
	if !withLock {
		// Without the lock each replica still reads the store before it
		// refreshes, and adopts a pair another one saved: a refresh that
		// takes a while lets them all read the old pair first.
		srv.SetRefreshLatency(200 * time.Millisecond)
	}
	ctrl := newClient(t)
	key := uniqueKey(t, ctrl)
	first := srv.Issue(autorefreshtest.DefaultUser)
	if err := redisstore.New(ctrl, key).Save(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	gens := &generations{exp: map[int64]bool{first.Expiry.UnixMilli(): true}}

	run := new(replicaRun)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range replicas {
		var store autorefresh.TokenStore = redisstore.New(newClient(t), key)
		if !withLock {
			store = noLock{store}
		}
		base := &http.Transport{MaxIdleConnsPerHost: workers}
		t.Cleanup(base.CloseIdleConnections)
		tr := &autorefresh.Transport{
			Base:      base,
			Store:     store,
			Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken", Base: base},
			// Refresh when the access token expires (or is refused),
			// not ahead of time: each expiry needs exactly one refresh.
			EarlyRefresh: -1,
			OnRefresh: func(ev autorefresh.RefreshEvent) {
				if ev.Err == nil {
					gens.add(ev.NewExpiry)
				}
				if ev.Adopted {
					atomic.AddInt64(&run.adopted, 1)
				}
			},
		}
		client := &http.Client{Transport: tr}
		for range workers {
			wg.Go(func() { run.work(client, srv.URL+"/api/me", stop) })
		}
	}

	// Stop once expiries access tokens have been replaced and the newest
	// one is a quarter into its life, so that no expiry is in progress
	// when the workers are told to stop. If the newest has already expired
	// (a slow machine), wait for the next.
	start := time.Now()
	deadline := start.Add(time.Duration(expiries+2)*ttl + 10*time.Second)
	for {
		now := time.Now()
		n, expired, newest := gens.at(now)
		if left := newest.Sub(now); n > expiries && left > 0 && left <= ttl*3/4 {
			run.expired = expired
			run.refreshCalls = srv.Stats().RefreshCalls
			break
		}
		if now.After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("after %v only %d access tokens came into use; want %d", now.Sub(start).Round(time.Millisecond), n, expiries+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	run.end = srv.Stats()
	return run
}

// TestReplicasShareOneRefresh is the headline test of the package: six
// replicas of a service, each with its own Transport and Redis client, share
// one session of an autorefreshtest server, whose refresh tokens are
// single-use, across several access-token expiries.
//
// The access tokens live 2s, not less: on a loaded 2-core machine under
// -race a request or a turn at the lock can take a good part of a second,
// and a replica that adopts a pair only after that pair has expired replays
// its request with an expired token.
func TestReplicasShareOneRefresh(t *testing.T) {
	const (
		replicas = 6
		workers  = 50
		ttl      = 2 * time.Second
		expiries = 3
	)
	redisAddr(t)

	t.Run("with lock", func(t *testing.T) {
		run := runReplicas(t, ttl, replicas, workers, expiries, true)
		end := run.end
		t.Logf("%d requests, %d failed; at stop: %d expiries, %d refresh calls; %d adopted by other replicas; %d reuses",
			run.requests, run.failed, run.expired, run.refreshCalls, run.adopted, end.ReuseRejections)
		if run.failed != 0 {
			t.Errorf("failed requests = %d (first: %s); want 0", run.failed, run.firstFailure)
		}
		if end.ReuseRejections != 0 {
			t.Errorf("refresh-token reuses = %d; want 0", end.ReuseRejections)
		}
		if end.RefreshRejections != 0 {
			t.Errorf("refused refreshes = %d; want 0", end.RefreshRejections)
		}
		// Both counts are read when the workers are told to stop, a
		// quarter into the life of the newest access token: every
		// earlier token has expired and none is expiring, so each
		// expiry must have cost exactly one refresh call, whichever
		// replica made it. Duplicate refreshes make the count higher
		// (as reuses, or as refreshes of a token another replica had
		// just received, whose expiry is still ahead), missed ones
		// lower. Requests still in flight after the stop are checked
		// for failures and reuse only: on a slow machine the newest
		// token can expire before they are done, and one more refresh
		// is then right.
		if run.refreshCalls != int64(run.expired) {
			t.Errorf("refresh calls = %d; want %d (one per expiry crossed)", run.refreshCalls, run.expired)
		}
		if run.expired < expiries {
			t.Errorf("expiries crossed = %d; want at least %d", run.expired, expiries)
		}
	})

	t.Run("without lock", func(t *testing.T) {
		// The same run with the lock hidden: replicas refresh on their
		// own with the same single-use token, and the server sees reuse.
		// This shows the test above can fail.
		run := runReplicas(t, ttl, replicas, workers, 1, false)
		end := run.end
		t.Logf("%d requests, %d failed; %d refresh calls, %d reuses",
			run.requests, run.failed, end.RefreshCalls, end.ReuseRejections)
		if end.ReuseRejections == 0 {
			t.Errorf("refresh-token reuses without the lock = 0; want > 0 (replicas: %d, refresh calls: %d)", replicas, end.RefreshCalls)
		}
	})
}
