package interop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// srv is the oidc-provider that TestMain started for the tests.
var srv *server

// pkjwtKey is the key of the private_key_jwt client "pkjwt": TestMain makes
// it and gives its public half to the server.
var pkjwtKey *ecdsa.PrivateKey

// serverDir holds server.js, package.json and the node_modules that
// "npm ci" installs.
const serverDir = "server"

// defaultTTL is the lifetime in seconds of the access tokens and client
// credentials tokens the server issues; a test that changes it with
// configure or setAccessTTL gets it back when it ends.
const defaultTTL = 60

// TestMain starts the server, runs the tests and stops the server. Without
// node or the server's node_modules it prints one line saying so and runs
// no test ("[no tests to run]" in go test's summary), or fails when CI is
// "true".
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if problem := missingPrerequisite(); problem != "" {
		if os.Getenv("CI") == "true" {
			fmt.Printf("INTEROP TESTS FAILED: %s (CI=true: the interop tests must run)\n", problem)
			return 1
		}
		fmt.Printf("INTEROP TESTS SKIPPED: %s\n", problem)
		flag.Set("test.run", "^$") // so that go test's summary says [no tests to run]
		return m.Run()
	}
	var err error
	pkjwtKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Printf("interop: %v\n", err)
		return 1
	}
	srv, err = startServer(pkjwtKey)
	if err != nil {
		fmt.Printf("interop: starting oidc-provider: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := srv.stop(); err != nil {
		fmt.Printf("interop: stopping oidc-provider: %v\n", err)
	}
	if code != 0 {
		fmt.Printf("interop: oidc-provider's output:\n%s", srv.log.String())
	}
	return code
}

// missingPrerequisite says what is missing to run the server, or "".
func missingPrerequisite() string {
	const install = "run: npm ci --prefix interop/server"
	if _, err := exec.LookPath("node"); err != nil {
		return "node (Node.js >= 20.18) is not installed; install it, then " + install
	}
	if _, err := os.Stat(filepath.Join(serverDir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return "interop/server/node_modules is missing; " + install
	}
	return ""
}

// server is a running server.js.
type server struct {
	Issuer   string // http://127.0.0.1:PORT, the provider
	Resource string // http://127.0.0.1:PORT/api, the resource server

	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan error
	log    *syncBuffer // stderr, and stdout after the first line
}

// startServer starts server.js with a config for the tests, waits for the
// line with its addresses and for its discovery document, and returns it.
func startServer(pkjwt *ecdsa.PrivateKey) (_ *server, err error) {
	cfg, err := os.CreateTemp("", "autorefresh-interop-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(cfg.Name())
	err = json.NewEncoder(cfg).Encode(map[string]any{
		"port":                 0,
		"resourcePort":         0,
		"ttl":                  map[string]int{"AccessToken": defaultTTL, "ClientCredentials": defaultTTL, "RefreshToken": 86400},
		"privateKeyJwtJwk":     publicJWK(&pkjwt.PublicKey, "pkjwt-1"),
		"dpopRequireNonce":     true,
		"resourceRequireNonce": true,
	})
	if cerr := cfg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	s := &server{log: new(syncBuffer), exited: make(chan error, 1)}
	first := &firstLine{line: make(chan string, 1), rest: s.log}
	s.cmd = exec.Command("node", "server.js", cfg.Name())
	s.cmd.Dir = serverDir
	s.cmd.Stdout = first
	s.cmd.Stderr = s.log
	// server.js exits when its stdin closes: if this process dies without
	// stopping it, it does not outlive us.
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	defer func() {
		if err != nil {
			s.stop()
			err = fmt.Errorf("%w\n%s", err, s.log.String())
		}
	}()

	select {
	case line := <-first.line:
		var addr struct{ Issuer, Resource string }
		if err := json.Unmarshal([]byte(line), &addr); err != nil || addr.Issuer == "" || addr.Resource == "" {
			return nil, fmt.Errorf("server.js printed %q; want its addresses as JSON", line)
		}
		s.Issuer, s.Resource = addr.Issuer, addr.Resource
	case err := <-s.exited:
		s.exited <- err
		return nil, fmt.Errorf("server.js exited: %v", err)
	case <-time.After(20 * time.Second):
		return nil, errors.New("server.js printed no address within 20s")
	}
	return s, s.awaitDiscovery(20 * time.Second)
}

// awaitDiscovery polls the discovery document until it names the issuer.
func (s *server) awaitDiscovery(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = s.checkDiscovery(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no discovery document within %v: %w", limit, last)
}

func (s *server) checkDiscovery(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var doc struct{ Issuer string }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if doc.Issuer != s.Issuer {
		return fmt.Errorf("issuer %q; want %q", doc.Issuer, s.Issuer)
	}
	return nil
}

// stop ends the server: it closes its stdin, which server.js exits on,
// and kills its process (by pid) if it has not exited within 5s.
func (s *server) stop() error {
	s.stdin.Close()
	select {
	case err := <-s.exited:
		return err
	case <-time.After(5 * time.Second):
	}
	s.cmd.Process.Kill()
	return <-s.exited
}

// firstLine is the server's stdout: it hands the first line to line and
// writes the rest to rest.
type firstLine struct {
	line chan string
	rest io.Writer
	buf  []byte // the first line so far; nil once it was sent
	sent bool
}

// Write implements io.Writer. exec.Cmd calls it from one goroutine.
func (w *firstLine) Write(p []byte) (int, error) {
	if w.sent {
		return w.rest.Write(p)
	}
	n := len(p)
	w.buf = append(w.buf, p...)
	i := bytes.IndexByte(w.buf, '\n')
	if i < 0 {
		return n, nil
	}
	w.line <- strings.TrimSpace(string(w.buf[:i]))
	w.sent = true
	_, err := w.rest.Write(w.buf[i+1:])
	w.buf = nil
	return n, err
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
