package autorefreshtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// TestDropAfterRotateWaitsForSuccess: a refused refresh is answered
// normally, is not a fault and leaves the fault armed for the next refresh
// that succeeds.
func TestDropAfterRotateWaitsForSuccess(t *testing.T) {
	for _, ep := range refreshers {
		t.Run(ep.name, func(t *testing.T) {
			srv := setup(t, autorefreshtest.Options{})
			tok := srv.Issue("alice")
			srv.SetRefreshFault(autorefreshtest.FaultDropAfterRotate, 1)
			resp, err := ep.send(srv, autorefresh.Tokens{RefreshToken: "unknown"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode < 400 {
				t.Fatalf("refused refresh: %d, %v; want a complete refusal", resp.StatusCode, err)
			}
			if st := srv.Stats(); st.RefreshFaults != 0 || st.RefreshRejections != 1 {
				t.Errorf("after a refusal: RefreshFaults, RefreshRejections = %d, %d; want 0, 1", st.RefreshFaults, st.RefreshRejections)
			}
			resp, err = ep.send(srv, tok)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("good refresh: reading the body: %v; want the armed fault's io.ErrUnexpectedEOF", err)
			}
			st := srv.Stats()
			if st.RefreshFaults != 1 || st.Refreshes != 1 || st.RefreshCalls != 2 {
				t.Errorf("RefreshFaults, Refreshes, RefreshCalls = %d, %d, %d; want 1, 1, 2", st.RefreshFaults, st.Refreshes, st.RefreshCalls)
			}
		})
	}
}

// possible reports whether st satisfies the relations that Stats documents,
// cheaply, so that a reader can take many snapshots.
func possible(st *autorefreshtest.Stats) bool {
	return st.ReuseRejections <= st.RefreshRejections &&
		st.Refreshes+st.ClientCredentialsGrants+st.RefreshRejections <= st.RefreshCalls &&
		st.RefreshFaults+st.RefreshRejections <= st.RefreshCalls &&
		st.API401s+st.API403s <= st.APICalls &&
		st.CheckFailures <= st.Checks &&
		st.DiscoveryFaults <= st.DiscoveryFetches &&
		st.RevocationFaults+st.RevokedAccessTokens <= st.RevocationCalls
}

// statsInvariants returns the impossible combinations in st, and the
// counters that decreased since prev.
func statsInvariants(prev, st autorefreshtest.Stats) []string {
	var bad []string
	if !possible(&st) {
		bad = append(bad, fmt.Sprintf("impossible snapshot %+v", st))
	}
	var walk func(path string, p, c reflect.Value)
	walk = func(path string, p, c reflect.Value) {
		for i := range c.NumField() {
			name := path + c.Type().Field(i).Name
			if c.Field(i).Kind() == reflect.Struct {
				walk(name+".", p.Field(i), c.Field(i))
			} else if c.Field(i).Int() < p.Field(i).Int() {
				bad = append(bad, fmt.Sprintf("%s went from %d to %d", name, p.Field(i).Int(), c.Field(i).Int()))
			}
		}
	}
	walk("", reflect.ValueOf(prev), reflect.ValueOf(st))
	return bad
}

// statsLoad sends every kind of request to srv, from many goroutines, and
// arms and clears faults meanwhile.
type statsLoad struct {
	t        *testing.T
	srv      *autorefreshtest.Server
	client   http.Header // client_secret_basic of the registered client
	stop     chan struct{}
	requests atomic.Int64
}

func (l *statsLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// send sends a request; a connection dropped by a fault is not an error.
func (l *statsLoad) send(method, path string, header http.Header, body string) response {
	r, err := tryDo(context.Background(), l.srv, method, path, header, body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		l.t.Errorf("%s %s: %v", method, path, err)
	}
	l.requests.Add(1)
	return r
}

// session refreshes a session, reuses its spent refresh tokens, and calls
// the API and the check with good and bad tokens.
func (l *statsLoad) session() {
	tok := l.srv.Issue("alice")
	spent := tok.RefreshToken
	for !l.stopped() {
		r := l.send("GET", "/auth/refreshtoken", http.Header{"refreshToken": {tok.RefreshToken}}, "")
		var next autorefresh.Tokens
		if r.status == 200 && json.Unmarshal(r.body, &next) == nil {
			spent, tok = tok.RefreshToken, next
		} else if r.status == 0 { // dropped after rotation
			tok = l.srv.Issue("alice")
		}
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spent}}
		l.send("POST", "/oauth/token", l.client, form.Encode())
		l.send("GET", "/api/echo", http.Header{"accessToken": {tok.AccessToken}}, "")
		l.send("GET", "/api/me", bearer("forged"), "")
		l.send("GET", "/auth/check", http.Header{"accessToken": {"forged"}}, "")
	}
}

// service makes client credentials grants, fetches the metadata and
// revokes tokens.
func (l *statsLoad) service() {
	for !l.stopped() {
		l.send("POST", "/oauth/token", l.client, ccGrant.Encode())
		l.send("GET", "/.well-known/openid-configuration", nil, "")
		tok := l.srv.Issue("bob")
		l.send("POST", "/oauth/revoke", l.client, url.Values{"token": {tok.AccessToken}}.Encode())
		l.send("POST", "/oauth/revoke", l.client, url.Values{"token": {tok.RefreshToken}}.Encode())
	}
}

// faults arms and clears faults.
func (l *statsLoad) faults() {
	for !l.stopped() {
		l.srv.SetRefreshFault(autorefreshtest.FaultDropAfterRotate, 1)
		l.srv.FailRefresh(1, 503)
		l.srv.FailDiscovery(1, 500)
		l.srv.SetDiscoveryFault(autorefreshtest.DiscoveryHTML, 1)
		l.srv.FailRevocation(1, 503)
		l.send("GET", "/api/status/403", http.Header{"accessToken": {l.srv.Issue("carol").AccessToken}}, "")
	}
}

// TestStatsSnapshotsExact runs every kind of request from many goroutines,
// with faults armed and cleared meanwhile, and checks that each of the
// snapshots taken meanwhile (over a million on a fast machine) is
// possible: no counter ahead of the one it is part of, none decreasing.
func TestStatsSnapshotsExact(t *testing.T) {
	const snapshots, minRequests = 5000, 3000
	srv := setup(t, autorefreshtest.Options{ClientID: "svc", ClientSecret: "s3cret", Logf: func(string, ...any) {}})
	l := &statsLoad{t: t, srv: srv, client: basicHeader("svc", "s3cret"), stop: make(chan struct{})}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go([]func(){l.session, l.service, l.faults}[i%3])
	}
	// Every snapshot is checked against the relations; every 64th also
	// against the one before it, which is slower.
	var prev autorefreshtest.Stats
	var bad []string
	n := 0
	for ; (n < snapshots || l.requests.Load() < minRequests) && len(bad) < 10; n++ {
		st := srv.Stats()
		if !possible(&st) || n%64 == 0 {
			for _, b := range statsInvariants(prev, st) {
				bad = append(bad, fmt.Sprintf("snapshot %d: %s", n, b))
			}
			prev = st
		}
	}
	close(l.stop)
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
	st := srv.Stats()
	t.Logf("%d snapshots over %d requests; final %+v", n, l.requests.Load(), st)
	if st.RefreshFaults == 0 || st.ReuseRejections == 0 || st.DiscoveryFaults == 0 || st.RevocationFaults == 0 ||
		st.ClientCredentialsGrants == 0 {
		t.Errorf("final Stats = %+v; want faults and reuse rejections to have happened", st)
	}
	if bad := statsInvariants(prev, st); len(bad) > 0 {
		t.Errorf("final snapshot: %q", bad)
	}
}
