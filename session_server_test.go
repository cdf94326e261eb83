package autorefresh_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// Resume against autorefreshtest, whose access tokens are real JWTs.

func newTestServer(t *testing.T, opts autorefreshtest.Options) *autorefreshtest.Server {
	t.Helper()
	srv := autorefreshtest.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

func newTransport(srv *autorefreshtest.Server, stored autorefresh.Tokens) (*autorefresh.Transport, *autorefresh.MemoryStore) {
	store := autorefresh.NewMemoryStore(stored)
	return &autorefresh.Transport{Store: store, Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"}}, store
}

// A broken refresh endpoint never ends the session.
func TestResumeRefreshFaultsKeepTokens(t *testing.T) {
	tests := []struct {
		name   string
		inject func(*autorefreshtest.Server)
	}{
		{"503", func(s *autorefreshtest.Server) { s.FailRefresh(1, http.StatusServiceUnavailable) }},
		{"malformed JSON", func(s *autorefreshtest.Server) { s.SetRefreshFault(autorefreshtest.FaultMalformedJSON, 1) }},
		{"no access token", func(s *autorefreshtest.Server) { s.SetRefreshFault(autorefreshtest.FaultNoAccessToken, 1) }},
		{"huge body", func(s *autorefreshtest.Server) { s.SetRefreshFault(autorefreshtest.FaultHugeBody, 1) }},
		{"dropped connection", func(s *autorefreshtest.Server) { s.SetRefreshFault(autorefreshtest.FaultDropConnection, 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, autorefreshtest.Options{})
			stored := srv.IssueTTL("alice", -time.Minute)
			tr, store := newTransport(srv, stored)
			tt.inject(srv)

			err := tr.Resume(t.Context(), srv.URL+"/auth/check")
			if err == nil || errors.Is(err, autorefresh.ErrSessionExpired) {
				t.Fatalf("Resume with a failing refresh: %v; want a transient error", err)
			}
			if got, err := store.Load(t.Context()); err != nil || got != stored {
				t.Errorf("store after a transient failure changed (err %v)", err)
			}
			// The fault was for one call: the next start-up resumes.
			if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); err != nil {
				t.Errorf("second Resume: %v; want nil", err)
			}
			if st := srv.Stats(); st.Refreshes != 1 || st.ReuseRejections != 0 {
				t.Errorf("server refreshes = %d, reuse rejections = %d; want 1, 0", st.Refreshes, st.ReuseRejections)
			}
		})
	}
}

// A refresh whose answer was lost spent the refresh token: the session is
// over, and Resume says so.
func TestResumeAfterLostRefresh(t *testing.T) {
	srv := newTestServer(t, autorefreshtest.Options{RevokeOnReuse: true})
	tr, store := newTransport(srv, srv.IssueTTL("alice", -time.Minute))
	srv.SetRefreshFault(autorefreshtest.FaultDropAfterRotate, 1)
	if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); err == nil || errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Fatalf("first Resume: %v; want a transient error", err)
	}
	err := tr.Resume(t.Context(), srv.URL+"/auth/check")
	if !errors.Is(err, autorefresh.ErrSessionExpired) {
		t.Fatalf("second Resume: %v; want ErrSessionExpired", err)
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("store Load after the session ended: %v; want ErrNoTokens", err)
	}
}

// Many goroutines resume and call the API at once with an expired access
// token. The server revokes the session if a refresh token is used twice,
// so a second refresh would fail every request after it.
func TestConcurrentResumeWithTestServer(t *testing.T) {
	srv := newTestServer(t, autorefreshtest.Options{RevokeOnReuse: true})
	tr, _ := newTransport(srv, srv.IssueTTL("alice", -time.Minute))
	client := autorefresh.NewClient(http.DefaultClient, tr)
	const n = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 * n {
		wg.Go(func() {
			<-start
			if i%2 == 0 {
				if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); err != nil {
					t.Errorf("Resume: %v", err)
				}
				return
			}
			resp, err := client.Get(srv.URL + "/api/me")
			if err != nil {
				t.Errorf("GET /api/me: %v", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /api/me: status %d; want 200", resp.StatusCode)
			}
		})
	}
	close(start)
	wg.Wait()
	if st := srv.Stats(); st.RefreshCalls != 1 || st.ReuseRejections != 0 || st.Revocations != 0 {
		t.Errorf("server refresh calls = %d, reuse rejections = %d, revocations = %d; want 1, 0, 0",
			st.RefreshCalls, st.ReuseRejections, st.Revocations)
	}
	// Still logged in afterwards.
	if err := tr.Resume(t.Context(), srv.URL+"/auth/check"); err != nil {
		t.Errorf("Resume afterwards: %v", err)
	}
}
