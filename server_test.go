package autorefresh

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// protoServer is an httptest server that speaks the header protocol:
// requests under /api/ need a valid accessToken header (403 otherwise), and
// GET /auth/refreshtoken trades a refresh token, once, for a new pair.
type protoServer struct {
	*httptest.Server

	// jwtTTL, when set, makes access tokens JWTs expiring jwtTTL after
	// jwtNow(); otherwise they are opaque.
	jwtTTL time.Duration
	jwtNow func() time.Time

	// Knobs, safe to change while serving.
	refreshStatus atomic.Int64           // non-zero: the refresh endpoint answers this status
	refreshBody   atomic.Pointer[string] // set: the refresh endpoint answers 200 with this body
	noRotate      atomic.Bool            // answer refreshes without a refreshToken
	reject        atomic.Bool            // the API refuses every token
	refreshGate   chan struct{}          // not nil: refreshes wait until it is closed

	mu      sync.Mutex      // guards the maps
	access  map[string]bool // valid access tokens
	refresh map[string]bool // refresh token -> spent

	refreshCalls, reuses, apiCalls, api403s atomic.Int64

	bodiesMu sync.Mutex // guards bodies
	bodies   []string   // request bodies seen by the API, in order
}

func newProtoServer(t *testing.T) *protoServer {
	t.Helper()
	s := &protoServer{access: map[string]bool{}, refresh: map[string]bool{}, jwtNow: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth/refreshtoken", s.serveRefresh)
	mux.HandleFunc("/api/", s.serveAPI)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func randomString() string {
	b := make([]byte, 12)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// issue mints a new valid pair.
func (s *protoServer) issue() Tokens {
	access := "acc-" + randomString()
	if s.jwtTTL != 0 {
		now := s.jwtNow()
		claims := jwt.RegisteredClaims{
			ID:        randomString(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.jwtTTL)),
		}
		var err error
		access, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test key"))
		if err != nil {
			panic(err)
		}
	}
	tok := Tokens{AccessToken: access, RefreshToken: "ref-" + randomString()}
	s.mu.Lock()
	s.access[tok.AccessToken] = true
	s.refresh[tok.RefreshToken] = false
	s.mu.Unlock()
	return tok
}

// expireAll makes every access token issued so far invalid.
func (s *protoServer) expireAll() {
	s.mu.Lock()
	clear(s.access)
	s.mu.Unlock()
}

// stale returns a pair whose access token the server refuses but whose
// refresh token is good.
func (s *protoServer) stale() Tokens {
	tok := s.issue()
	s.mu.Lock()
	delete(s.access, tok.AccessToken)
	s.mu.Unlock()
	return tok
}

func (s *protoServer) valid(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access[access]
}

func (s *protoServer) serveRefresh(w http.ResponseWriter, r *http.Request) {
	s.refreshCalls.Add(1)
	if s.refreshGate != nil {
		select {
		case <-s.refreshGate:
		case <-r.Context().Done():
			return
		}
	}
	if code := s.refreshStatus.Load(); code != 0 {
		http.Error(w, "refresh refused for "+r.Header.Get("refreshToken"), int(code))
		return
	}
	if body := s.refreshBody.Load(); body != nil {
		io.WriteString(w, *body)
		return
	}
	rt := r.Header.Get("refreshToken")
	s.mu.Lock()
	spent, ok := s.refresh[rt]
	if ok && !spent {
		s.refresh[rt] = true
	}
	s.mu.Unlock()
	if !ok || spent {
		if spent {
			s.reuses.Add(1)
		}
		http.Error(w, "bad refresh token", http.StatusUnauthorized)
		return
	}
	tok := s.issue()
	if s.noRotate.Load() {
		tok.RefreshToken = ""
		s.mu.Lock()
		s.refresh[rt] = false
		s.mu.Unlock()
	}
	json.NewEncoder(w).Encode(map[string]string{"accessToken": tok.AccessToken, "refreshToken": tok.RefreshToken})
}

func (s *protoServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.apiCalls.Add(1)
	body, _ := io.ReadAll(r.Body)
	s.bodiesMu.Lock()
	s.bodies = append(s.bodies, string(body))
	s.bodiesMu.Unlock()
	if s.reject.Load() || !s.valid(r.Header.Get("accessToken")) {
		s.api403s.Add(1)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
}

func (s *protoServer) seenBodies() []string {
	s.bodiesMu.Lock()
	defer s.bodiesMu.Unlock()
	return append([]string(nil), s.bodies...)
}

// transport returns a Transport with a MemoryStore holding tok, refreshing
// through s's endpoint.
func (s *protoServer) transport(tok Tokens) (*Transport, *MemoryStore) {
	store := NewMemoryStore(tok)
	return &Transport{Store: store, Refresher: &Endpoint{URL: s.URL + "/auth/refreshtoken"}}, store
}

// get sends a GET for path through c and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// testJWT returns an HS256 JWT expiring at exp.
func testJWT(t testing.TB, exp time.Time) string {
	t.Helper()
	claims := jwt.RegisteredClaims{IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(exp)}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
