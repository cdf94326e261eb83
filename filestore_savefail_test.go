package autorefresh_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// Saves that fail (a full disk, a quota) must never lead a Transport to
// spend a refresh token it already spent: the pair it could not save is
// kept in memory, saved again before the next refresh, and refreshed
// itself, never the older pair the store still holds.

// failingSaves is a FileStore whose Save fails when fail says so, as a
// full disk would make it fail. It is still a Locker: Lock is FileStore's.
type failingSaves struct {
	*autorefresh.FileStore
	fail   func(autorefresh.Tokens) bool
	failed atomic.Int64
}

func (s *failingSaves) Save(ctx context.Context, t autorefresh.Tokens) error {
	if s.fail(t) {
		s.failed.Add(1)
		return errDiskFull // faults_test.go
	}
	return s.FileStore.Save(ctx, t)
}

// failFirst returns a fail function for failingSaves that fails the first n
// saves, whatever they save.
func failFirst(n int) func(autorefresh.Tokens) bool {
	var left atomic.Int64
	left.Store(int64(n))
	return func(autorefresh.Tokens) bool { return left.Add(-1) >= 0 }
}

// failEachPair returns a fail function for failingSaves that fails the
// first n attempts to save each pair.
func failEachPair(n int) func(autorefresh.Tokens) bool {
	var mu sync.Mutex
	attempts := map[string]int{}
	return func(t autorefresh.Tokens) bool {
		mu.Lock()
		defer mu.Unlock()
		attempts[t.RefreshToken]++
		return attempts[t.RefreshToken] <= n
	}
}

// TestFailedSaveDoesNotSpendOldRefreshToken has two Transports, as two
// processes would, share a token file through failingSaves, against a
// server whose refresh tokens are single-use and whose sessions are revoked
// on reuse. They refresh with OAuth2, whose answers carry the expiry, so
// that the pair in memory and the pair read back from the file are equal
// field by field.
//
// Each round, the server refuses every access token issued so far; the
// Transports then send in the order of the round, so that the first one
// refreshes and the others find the new pair in the file. The first
// Transport's saves fail (when both send at once, the saves of whichever
// refreshes): once (the retry of the save gets through); for a
// whole refresh (three attempts, so that the new pair is only in memory, and
// its next refresh must save it before refreshing it rather than take the
// spent pair in the file); or for two refreshes in a row. The other
// Transport sends only once a save went through: before that, it could
// only spend the pair in the file, which no Transport can prevent. Every
// request succeeds, no refresh token is presented twice, and the file ends
// holding the pair in use.
func TestFailedSaveDoesNotSpendOldRefreshToken(t *testing.T) {
	tests := []struct {
		name   string
		fails  int
		rounds [][]int // who sends, in order, each round: 0, 1, or 2 for both at once
		// shared: the saves of both Transports count towards fails, for
		// rounds where which of them refreshes is a race.
		shared bool
	}{
		{"save fails once", 1, [][]int{{0, 1}, {1, 0}, {0, 1}, {2}}, false},
		{"save fails once, both at once", 1, [][]int{{2}, {2}, {2}, {2}}, true},
		{"save fails for a whole refresh", 3, [][]int{{0}, {0, 1}, {1, 0}, {2}}, false},
		// The first refresh's three attempts, then the second's attempt
		// before it refreshes and its three after.
		{"saves fail for two refreshes in a row", 7, [][]int{{0}, {0}, {0, 1}, {1, 0}, {2}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := autorefreshtest.NewServer(autorefreshtest.Options{RevokeOnReuse: true})
			t.Cleanup(srv.Close)
			path := filepath.Join(t.TempDir(), "tokens.json")
			if err := autorefresh.NewFileStore(path).Save(context.Background(), srv.Issue("alice")); err != nil {
				t.Fatal(err)
			}
			stores := [2]*failingSaves{
				{FileStore: autorefresh.NewFileStore(path), fail: failFirst(tt.fails)},
				{FileStore: autorefresh.NewFileStore(path), fail: failFirst(0)},
			}
			if tt.shared {
				stores[1].fail = stores[0].fail
			}
			var trs [2]*autorefresh.Transport
			var evs [2]events
			for i := range trs {
				trs[i] = &autorefresh.Transport{Store: stores[i], Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token"},
					OnRefresh: evs[i].add}
				if _, err := trs[i].Tokens(context.Background()); err != nil { // both hold the first pair
					t.Fatal(err)
				}
			}
			for round, senders := range tt.rounds {
				srv.ExpireAccessTokens()
				for _, who := range senders {
					for i, err := range sendRound(trs, who, srv.URL+"/api/me") {
						if err != nil {
							t.Errorf("round %d, transport %d: %v", round, i, err)
						}
					}
				}
			}
			if n := stores[0].failed.Load() + stores[1].failed.Load(); n != int64(tt.fails) {
				t.Errorf("failed saves = %d; want %d", n, tt.fails)
			}
			// A save that failed after its retries is reported.
			if n := evs[0].count(func(ev autorefresh.RefreshEvent) bool { return errors.Is(ev.StoreErr, errDiskFull) }); tt.fails >= 3 && n == 0 {
				t.Error("no refresh event reported the failed save in StoreErr")
			}
			checkNoReuse(t, srv, trs[:], &evs, path)
		})
	}
}

// sendRound sends a GET to url through trs[who], or through both at once
// when who is 2, and returns the error of each (nil for a 200 or for a
// Transport that did not send).
func sendRound(trs [2]*autorefresh.Transport, who int, url string) [2]error {
	var errs [2]error
	var wg sync.WaitGroup
	for i, tr := range trs {
		if who != 2 && who != i {
			continue
		}
		wg.Go(func() {
			resp, err := autorefresh.NewClient(nil, tr).Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// checkNoReuse checks that the server never saw a refresh token twice nor
// rejected one, that no session ended, and that the file holds the pair
// of the Transport that refreshed last.
func checkNoReuse(t *testing.T, srv *autorefreshtest.Server, trs []*autorefresh.Transport, evs *[2]events, path string) {
	t.Helper()
	if st := srv.Stats(); st.ReuseRejections != 0 || st.RefreshRejections != 0 || st.Revocations != 0 {
		t.Errorf("server: %d refreshes rejected, %d of them reuses, %d sessions revoked; want 0, 0, 0",
			st.RefreshRejections, st.ReuseRejections, st.Revocations)
	}
	for i := range evs {
		if n := evs[i].count(func(ev autorefresh.RefreshEvent) bool { return ev.SessionEnded }); n != 0 {
			t.Errorf("transport %d: sessions ended = %d; want 0", i, n)
		}
	}
	stored, err := autorefresh.NewFileStore(path).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range trs {
		cur, err := tr.Tokens(context.Background())
		if err == nil && cur.RefreshToken == stored.RefreshToken {
			return
		}
		t.Logf("transport %d holds another pair than the file (%v)", i, err)
	}
	t.Error("the file holds a pair that neither Transport uses")
}
