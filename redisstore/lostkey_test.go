package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
)

// singleUseServer speaks the header protocol with opaque tokens: a refresh
// token works once (a second use is refused with 401, and counted), and an
// access token stays valid until expire is called for it, as with servers
// whose old access tokens live on after a refresh.
type singleUseServer struct {
	*httptest.Server

	mu     sync.Mutex // guards the fields below
	n      int
	access map[string]bool // valid access tokens
	spent  map[string]bool // refresh tokens: false unspent, true spent
}

func newSingleUseServer(t *testing.T) *singleUseServer {
	t.Helper()
	s := &singleUseServer{access: map[string]bool{}, spent: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth/refreshtoken", func(w http.ResponseWriter, r *http.Request) {
		rt := r.Header.Get("refreshToken")
		s.mu.Lock()
		defer s.mu.Unlock()
		if spent, known := s.spent[rt]; !known || spent {
			http.Error(w, "bad refresh token", http.StatusUnauthorized)
			return
		}
		s.spent[rt] = true
		tok := s.issueLocked()
		json.NewEncoder(w).Encode(map[string]string{"accessToken": tok.AccessToken, "refreshToken": tok.RefreshToken})
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		ok := s.access[r.Header.Get("accessToken")]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Write([]byte("ok"))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *singleUseServer) issue() autorefresh.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked()
}

func (s *singleUseServer) issueLocked() autorefresh.Tokens {
	s.n++
	n := strconv.Itoa(s.n)
	tok := autorefresh.Tokens{AccessToken: "a" + n, RefreshToken: "r" + n}
	s.access[tok.AccessToken] = true
	s.spent[tok.RefreshToken] = false
	return tok
}

// expire makes the access token a invalid.
func (s *singleUseServer) expire(a string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.access, a)
}

// TestVanishedKeyStaleReplicaDoesNotLogEveryoneOut: replica A refreshes and
// saves the new pair; replica B, idle meanwhile, still holds the old pair in
// memory (opaque tokens: it learns of the new pair only when refused). The
// key then vanishes (FLUSHALL, eviction, a restart without persistence).
// B is refused, finds the key gone, writes its spent pair back, refreshes
// it, is rejected, and clears the store with a tombstone: a logout for
// every replica. A, whose refresh token was never spent and whose user
// never logged out, then loses its session at its next refresh. Issue 12
// item 4: a vanished key must not log every replica out; a replica holding
// a valid pair refreshes with it and saves it again.
func TestVanishedKeyStaleReplicaDoesNotLogEveryoneOut(t *testing.T) {
	ctx := context.Background()
	ctrl := newClient(t)
	key := uniqueKey(t, ctrl)
	srv := newSingleUseServer(t)
	p0 := srv.issue()
	if err := redisstore.New(ctrl, key).Save(ctx, p0); err != nil {
		t.Fatal(err)
	}
	replica := func() (*autorefresh.Transport, *http.Client) {
		tr := &autorefresh.Transport{
			Store:     redisstore.New(newClient(t), key),
			Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		}
		return tr, &http.Client{Transport: tr}
	}
	get := func(c *http.Client) error {
		resp, err := c.Get(srv.URL + "/api/x")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	trA, a := replica()
	_, b := replica()
	for name, c := range map[string]*http.Client{"A": a, "B": b} {
		if err := get(c); err != nil {
			t.Fatalf("first request of %s: %v", name, err)
		}
	}

	// A is refused and refreshes p0 into p1; B keeps using p0's access
	// token, still valid.
	srv.expire(p0.AccessToken)
	if err := get(a); err != nil {
		t.Fatalf("A after its token expired: %v", err)
	}
	p1, _ := trA.Tokens(ctx)

	// The key vanishes; then p0's access token expires and B is refused.
	if err := ctrl.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	srv.expire(p0.AccessToken)
	errB := get(b)
	t.Logf("B after the key vanished: %v", errB)

	// A's access token expires: A must refresh with its refresh token,
	// which nobody spent, and go on.
	srv.expire(p1.AccessToken)
	if err := get(a); err != nil {
		t.Errorf("A's request after the key vanished = %v; want its session kept (its refresh token was never spent, nobody logged out)", err)
	}
	if got := loadState(t, ctrl, redisstore.New(ctrl, key)); strings.HasPrefix(got, "tombstone@") {
		t.Errorf("store = %s; want A's pair, not a logout written by a replica whose spent pair was rejected", got)
	}
}
