package redisstore_test

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
)

// rotatingServer is a small API with single-use, rotating refresh tokens and
// short-lived opaque access tokens, speaking the header protocol of
// autorefresh.Endpoint: GET /api/... needs a live accessToken header (403
// otherwise), and GET /auth/refreshtoken trades a refreshToken header, once,
// for a new pair with its expiry.
type rotatingServer struct {
	*httptest.Server
	ttl time.Duration

	mu           sync.Mutex           // guards the fields below
	access       map[string]time.Time // access token -> expiry
	spent        map[string]bool      // refresh token -> already used
	expiries     []time.Time          // expiry of every access token issued, in order
	refreshCalls int                  // refresh requests received
	reuses       int                  // refreshes with a spent refresh token
	early        int                  // refreshes of an access token that was still live
}

func newRotatingServer(t *testing.T, ttl time.Duration) *rotatingServer {
	t.Helper()
	s := &rotatingServer{ttl: ttl, access: map[string]time.Time{}, spent: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/", s.serveAPI)
	mux.HandleFunc("GET /auth/refreshtoken", s.serveRefresh)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// issue makes a new pair. s.mu must be held.
func (s *rotatingServer) issue() autorefresh.Tokens {
	tok := autorefresh.Tokens{
		AccessToken:  crand.Text(),
		RefreshToken: crand.Text(),
		Expiry:       time.Now().Add(s.ttl),
	}
	s.access[tok.AccessToken] = tok.Expiry
	s.spent[tok.RefreshToken] = false
	s.expiries = append(s.expiries, tok.Expiry)
	return tok
}

// Login returns a first pair, as a login would.
func (s *rotatingServer) Login() autorefresh.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issue()
}

func (s *rotatingServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	exp, ok := s.access[r.Header.Get("accessToken")]
	s.mu.Unlock()
	if !ok || !time.Now().Before(exp) {
		http.Error(w, "access token refused", http.StatusForbidden)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *rotatingServer) serveRefresh(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshCalls++
	spent, known := s.spent[r.Header.Get("refreshToken")]
	switch {
	case !known:
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	case spent:
		s.reuses++
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	if exp, ok := s.access[r.Header.Get("accessToken")]; ok && time.Now().Before(exp) {
		s.early++
	}
	s.spent[r.Header.Get("refreshToken")] = true
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.issue())
}

// serverStats is a snapshot of the server's counters.
type serverStats struct {
	now                         time.Time // when the snapshot was taken
	issued                      int       // access tokens issued
	newest                      time.Time // issue time of the newest
	expired                     int       // issued access tokens whose expiry is before now
	refreshCalls, reuses, early int
}

func (s *rotatingServer) stats() serverStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	st := serverStats{now: now, issued: len(s.expiries), refreshCalls: s.refreshCalls, reuses: s.reuses, early: s.early}
	for _, exp := range s.expiries {
		if !exp.After(now) {
			st.expired++
		}
	}
	if n := len(s.expiries); n > 0 {
		st.newest = s.expiries[n-1].Add(-s.ttl)
	}
	return st
}

// noLock hides the Store's Lock method, so that a Transport refreshes
// without the cluster-wide lock.
type noLock struct{ autorefresh.TokenStore }

// replicaRun is the outcome of runReplicas.
type replicaRun struct {
	requests, failed int64
	adopted          int64 // refreshes done by adopting another replica's pair
	firstFailure     string
	atStop           serverStats // the server when the workers were told to stop
	end              serverStats // the server when they all had
}

// runReplicas runs replicas independent Transports (each with its own Redis
// client, Store value, singleflight and connection pool) sharing one key,
// with workers goroutines each sending requests, until expiries access
// tokens have been replaced and the newest one is a quarter through its
// life. withLock false hides the Store's Lock from the Transports.
func runReplicas(t *testing.T, srv *rotatingServer, replicas, workers, expiries int, withLock bool) replicaRun {
	t.Helper()
	ctrl := newClient(t)
	key := uniqueKey(t, ctrl)
	if err := redisstore.New(ctrl, key).Save(context.Background(), srv.Login()); err != nil {
		t.Fatal(err)
	}

	var run replicaRun
	var failMu sync.Mutex
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
				if ev.Adopted {
					atomic.AddInt64(&run.adopted, 1)
				}
			},
		}
		client := &http.Client{Transport: tr}
		for range workers {
			wg.Go(func() {
				for i := 0; i < 2000; i++ { // bounded, whatever the timing
					select {
					case <-stop:
						return
					default:
					}
					atomic.AddInt64(&run.requests, 1)
					resp, err := client.Get(srv.URL + "/api/data")
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						atomic.AddInt64(&run.failed, 1)
						failMu.Lock()
						if run.firstFailure == "" {
							run.firstFailure = err.Error()
						}
						failMu.Unlock()
					}
					time.Sleep(200*time.Millisecond + rand.N(200*time.Millisecond))
				}
			})
		}
	}

	// Stop once expiries access tokens have been replaced and the newest
	// one is a quarter into its life, so that no expiry is in progress
	// when the workers are told to stop. If the newest has already expired
	// (a slow machine), wait for the next.
	start := time.Now()
	deadline := start.Add(time.Duration(expiries+2)*srv.ttl + 10*time.Second)
	for {
		st := srv.stats()
		if age := st.now.Sub(st.newest); st.issued > expiries && age >= srv.ttl/4 && age < srv.ttl {
			run.atStop = st
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("after %v only %d access tokens were issued; want %d", time.Since(start).Round(time.Millisecond), st.issued, expiries+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	run.end = srv.stats()
	return run
}

// TestReplicasShareOneRefresh is the headline test of the package: six
// replicas of a service, each with its own Transport and Redis client, share
// one session whose refresh tokens are single-use, across several access
// token expiries.
func TestReplicasShareOneRefresh(t *testing.T) {
	const (
		replicas = 6
		workers  = 50
		ttl      = 2 * time.Second
		expiries = 3
	)
	redisAddr(t)

	t.Run("with lock", func(t *testing.T) {
		srv := newRotatingServer(t, ttl)
		run := runReplicas(t, srv, replicas, workers, expiries, true)
		stop, end := run.atStop, run.end
		t.Logf("%d requests, %d failed; at stop: %d expiries, %d refresh calls; %d adopted by other replicas; %d reuses",
			run.requests, run.failed, stop.expired, stop.refreshCalls, run.adopted, end.reuses)
		if run.failed != 0 {
			t.Errorf("failed requests = %d (first: %s); want 0", run.failed, run.firstFailure)
		}
		if end.reuses != 0 {
			t.Errorf("refresh-token reuses = %d; want 0", end.reuses)
		}
		if end.early != 0 {
			t.Errorf("refreshes of a live access token = %d; want 0", end.early)
		}
		// The counts are read together, at the moment the workers are
		// told to stop, a quarter into the life of the newest token:
		// every earlier token has expired, none is expiring, so each
		// expiry must have cost exactly one refresh call, whichever
		// replica made it. Duplicate refreshes make the count higher
		// (and show as reuses or early refreshes), missed ones lower.
		// Requests still in flight after the stop are checked for
		// failures and reuse only: on a slow machine the newest token
		// can expire before they are done, and one more refresh is then
		// correct.
		if stop.refreshCalls != stop.expired {
			t.Errorf("refresh calls = %d; want %d (one per expiry crossed)", stop.refreshCalls, stop.expired)
		}
		if stop.expired < expiries {
			t.Errorf("expiries crossed = %d; want at least %d", stop.expired, expiries)
		}
	})

	t.Run("without lock", func(t *testing.T) {
		// The same run with the lock hidden: every replica refreshes on
		// its own with the same single-use token, and the server sees
		// reuse. This shows the test above can fail.
		srv := newRotatingServer(t, ttl)
		run := runReplicas(t, srv, replicas, workers, 1, false)
		st := run.end
		t.Logf("%d requests, %d failed; %d expiries, %d refresh calls, %d reuses",
			run.requests, run.failed, st.expired, st.refreshCalls, st.reuses)
		if st.reuses == 0 {
			t.Errorf("refresh-token reuses without the lock = 0; want > 0 (replicas: %d, refresh calls: %d)", replicas, st.refreshCalls)
		}
	})
}
