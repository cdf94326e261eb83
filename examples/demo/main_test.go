package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// TestRun runs the demo for a few token lifetimes. Its checks do not depend
// on the machine's speed: a slow machine makes fewer requests and at most
// as many refreshes.
func TestRun(t *testing.T) {
	cfg := config{duration: 1500 * time.Millisecond, workers: 8, lifetime: 500 * time.Millisecond, progress: 250 * time.Millisecond}
	var out bytes.Buffer
	sum, err := run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("output:\n%s", out.String())

	if sum.requests == 0 {
		t.Errorf("requests = 0; want some")
	}
	if sum.failed != 0 {
		t.Errorf("failed requests = %d; want 0 (first: %s)", sum.failed, sum.firstFailure)
	}
	if sum.refreshes < 1 {
		t.Errorf("refreshes = %d; want at least 1 in %.1f token lifetimes", sum.refreshes, cfg.duration.Seconds()/cfg.lifetime.Seconds())
	}
	// About one refresh per lifetime: at most one per started lifetime,
	// and one more for a token that was due early.
	if limit := int64(sum.elapsed/cfg.lifetime) + 2; sum.refreshes > limit {
		t.Errorf("refreshes = %d in %v; want at most %d", sum.refreshes, sum.elapsed, limit)
	}
	if sum.serverRefreshes != sum.refreshes {
		t.Errorf("server refreshes = %d; want the transport's %d", sum.serverRefreshes, sum.refreshes)
	}
	if sum.reuses != 0 || sum.refreshFailures != 0 {
		t.Errorf("refresh token reuses = %d, failed refreshes = %d; want 0, 0", sum.reuses, sum.refreshFailures)
	}
	if sum.replays != sum.forbidden {
		t.Errorf("replays = %d; want one per 403 seen (%d)", sum.replays, sum.forbidden)
	}
	for _, want := range []string{"logged in as alice", "summary after", "ok: no request failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(out.String(), "  failed 0  refreshes ") {
		t.Errorf("output has no progress line")
	}
	if strings.Contains(out.String(), "\r") {
		t.Errorf("output holds a carriage return; want plain lines when not live")
	}
}

func TestRunLiveProgress(t *testing.T) {
	cfg := config{duration: 300 * time.Millisecond, workers: 2, lifetime: time.Minute, progress: 50 * time.Millisecond, live: true}
	var out bytes.Buffer
	if _, err := run(t.Context(), cfg, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "\r") {
		t.Errorf("live output has no carriage return:\n%s", out.String())
	}
}

// With -store the tokens go to a file. A second run finds them, learns
// that its new server does not know them, and logs in again.
func TestRunFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	// Tokens outlive the run: this test is about the file, and a
	// sub-second lifetime can expire between a refresh and its replay on
	// a loaded machine.
	cfg := config{duration: 300 * time.Millisecond, workers: 4, lifetime: 2 * time.Second, store: path}
	for i, want := range []string{"logged in as alice", "the stored session is over"} {
		var out bytes.Buffer
		sum, err := run(t.Context(), cfg, &out)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("run %d output lacks %q:\n%s", i, want, out.String())
		}
		if sum.failed != 0 || sum.requests == 0 || sum.reuses != 0 {
			t.Errorf("run %d: requests = %d, failed = %d, reuses = %d; want some, 0, 0 (first failure: %s)",
				i, sum.requests, sum.failed, sum.reuses, sum.firstFailure)
		}
		stored, err := autorefresh.NewFileStore(path).Load(t.Context())
		if err != nil || stored.AccessToken == "" {
			t.Errorf("run %d: token file Load: %v; want tokens", i, err)
		}
		if runtime.GOOS != "windows" {
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("run %d: token file mode %v (err %v); want 0600", i, fi.Mode().Perm(), err)
			}
		}
	}
}

// TestRunDPoP runs the demo with -dpop for two token lifetimes: DPoP-bound
// tokens refreshed through OAuth2, a proof with every request, a nonce
// retry for the requests sent before the API gave its nonce, and the key in
// a temporary directory that is removed at the end.
func TestRunDPoP(t *testing.T) {
	cfg := config{duration: 2 * time.Second, workers: 8, lifetime: time.Second, progress: 500 * time.Millisecond, dpop: true}
	var out bytes.Buffer
	sum, err := run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("output:\n%s", out.String())
	wantDPoPSummary(t, sum, cfg)
	for _, want := range []string{"(created, removed at the end)", "logged in as alice", "401s seen", "DPoP proofs", "nonce retries", "ok: no request failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(out.String(), "  failed 0  refreshes ") || !strings.Contains(out.String(), "  401s ") {
		t.Errorf("output has no progress line with the 401s")
	}
	m := regexp.MustCompile(`key in (\S+)`).FindStringSubmatch(out.String())
	if m == nil || filepath.Base(m[1]) != dpopKeyFile {
		t.Fatalf("output names no key file %s", dpopKeyFile)
	}
	if _, err := os.Stat(filepath.Dir(m[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary key directory: Stat = %v; want it removed", err)
	}
}

// wantDPoPSummary checks the summary of a run with -dpop that did not
// resume a session.
func wantDPoPSummary(t *testing.T, sum summary, cfg config) {
	t.Helper()
	if sum.requests == 0 || sum.failed != 0 {
		t.Errorf("requests = %d, failed = %d; want some, 0 (first failure: %s)", sum.requests, sum.failed, sum.firstFailure)
	}
	if limit := int64(sum.elapsed/cfg.lifetime) + 2; sum.refreshes < 1 || sum.refreshes > limit {
		t.Errorf("refreshes = %d in %v; want 1 to %d", sum.refreshes, sum.elapsed, limit)
	}
	if sum.serverRefreshes != sum.refreshes || sum.reuses != 0 || sum.refreshFailures != 0 {
		t.Errorf("server refreshes = %d, reuses = %d, failed refreshes = %d; want %d, 0, 0", sum.serverRefreshes, sum.reuses, sum.refreshFailures, sum.refreshes)
	}
	// The API keeps one nonce: only requests sent before it gave it to
	// the Transport are asked for it, at most one per worker.
	if sum.nonceRetries < 1 || sum.nonceRetries > int64(cfg.workers) {
		t.Errorf("nonce retries = %d; want 1 to %d", sum.nonceRetries, cfg.workers)
	}
	if sum.nonceDemands <= sum.nonceRetries {
		t.Errorf("server nonce demands = %d; want more than the API's %d (the token endpoint asks too)", sum.nonceDemands, sum.nonceRetries)
	}
	if sum.forbidden != sum.replays+sum.nonceRetries {
		t.Errorf("401s = %d; want one per replay (%d) and nonce retry (%d)", sum.forbidden, sum.replays, sum.nonceRetries)
	}
	if sum.proofs < sum.requests+sum.refreshes {
		t.Errorf("DPoP proofs accepted = %d; want at least one per request and refresh (%d)", sum.proofs, sum.requests+sum.refreshes)
	}
}

// With -dpop and -store the key goes beside the token file: the first run
// creates it (mode 0600), the second loads the same one. A run without
// -dpop over the same file finds tokens bound to a key and logs in again.
func TestRunDPoPFileStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	cfg := config{duration: 300 * time.Millisecond, workers: 4, lifetime: 2 * time.Second, store: path, dpop: true}
	created := runDPoPStore(t, cfg, "(created)")
	if loaded := runDPoPStore(t, cfg, "(loaded)"); !bytes.Equal(loaded, created) {
		t.Error("the second run's key file differs; want the first run's key")
	}

	var out bytes.Buffer
	cfg.dpop = false
	if sum, err := run(t.Context(), cfg, &out); err != nil || sum.failed != 0 {
		t.Fatalf("run without -dpop: %v, %d failed", err, sum.failed)
	}
	if !strings.Contains(out.String(), "bound to a DPoP key (run with -dpop to use them); logging in") {
		t.Errorf("run without -dpop over DPoP tokens: output\n%s\nwant it to log in again", out.String())
	}
}

// runDPoPStore runs the demo with cfg (-dpop -store), checks that it says
// how it got the key file beside the token file (how: "(created)" or
// "(loaded)"), that the file has mode 0600 and the token file DPoP tokens,
// and returns the key file's content.
func runDPoPStore(t *testing.T, cfg config, how string) []byte {
	t.Helper()
	keyPath := filepath.Join(filepath.Dir(cfg.store), dpopKeyFile)
	var out bytes.Buffer
	sum, err := run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "DPoP: tokens bound to the key in "+keyPath+" "+how) {
		t.Errorf("output lacks the key file %s %s:\n%s", keyPath, how, out.String())
	}
	if sum.failed != 0 || sum.requests == 0 {
		t.Errorf("requests = %d, failed = %d; want some, 0 (first failure: %s)", sum.requests, sum.failed, sum.firstFailure)
	}
	if stored, err := autorefresh.NewFileStore(cfg.store).Load(t.Context()); err != nil || stored.TokenType != "DPoP" {
		t.Errorf("token file Load: type %q, %v; want DPoP tokens", stored.TokenType, err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestMain runs main instead of the tests when DEMO_TEST_MAIN_ARGS is set,
// so that TestInterruptSignal can run the demo as a process of its own.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("DEMO_TEST_MAIN_ARGS"); ok {
		os.Args = append([]string{"demo"}, strings.Fields(args)...)
		main()
		return
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer that may be written and read at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds; the test's deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error output
	}{
		{[]string{"-workers", "0"}, `invalid value "0" for flag -workers: must be at least 1`},
		{[]string{"-workers", "-3"}, `invalid value "-3" for flag -workers`},
		{[]string{"-duration", "-1s"}, `invalid value "-1s" for flag -duration: must be positive`},
		{[]string{"-duration", "0"}, `invalid value "0s" for flag -duration`},
		{[]string{"-lifetime", "0s"}, `invalid value "0s" for flag -lifetime`},
		{[]string{"-workers", "many"}, `invalid value "many" for flag -workers`},
		{[]string{"-nope"}, `flag provided but not defined: -nope`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := runMain(t.Context(), tt.args, &stdout, &stderr); got != exitUsage {
				t.Errorf("exit status = %d; want %d", got, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "Usage") {
				t.Errorf("error output:\n%s\nwant %q and the usage", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("output %q; want none", stdout.String())
			}
		})
	}
	var stderr bytes.Buffer
	if got := runMain(t.Context(), []string{"-h"}, io.Discard, &stderr); got != exitOK || !strings.Contains(stderr.String(), "-workers") {
		t.Errorf("-h: exit status %d, output %q; want 0 and the usage", got, stderr.String())
	}
	cfg, err := parseFlags([]string{"-workers", "3", "-duration", "2s", "-lifetime", "1s", "-store", "f", "-dpop"}, io.Discard)
	if want := (config{duration: 2 * time.Second, workers: 3, lifetime: time.Second, store: "f", dpop: true}); err != nil || cfg != want {
		t.Errorf("parseFlags = %+v, %v; want %+v", cfg, err, want)
	}
}

// TestRunInterrupted ends the context mid-run: the demo stops, says it was
// interrupted, and exits 130.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	var stderr bytes.Buffer
	status := make(chan int, 1)
	go func() {
		status <- runMain(ctx, []string{"-duration", "10m", "-workers", "4", "-lifetime", "1s"}, out, &stderr)
	}()
	waitFor(t, "the login", func() bool { return strings.Contains(out.String(), "logged in") })
	cancel()
	if got := <-status; got != exitInterrupted {
		t.Errorf("exit status = %d; want %d", got, exitInterrupted)
	}
	if s := out.String(); !strings.Contains(s, "interrupted after") || strings.Contains(s, "ok:") {
		t.Errorf("output:\n%s\nwant the summary to say it was interrupted, not ok", s)
	}
	if !strings.Contains(stderr.String(), "demo: interrupted") {
		t.Errorf("error output %q; want demo: interrupted", stderr.String())
	}
}

// TestInterruptSignal runs the demo as a process and sends it SIGINT.
func TestInterruptSignal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	// If SIGINT were ignored, the demo would end after 30s with status 0.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DEMO_TEST_MAIN_ARGS=-duration 30s -workers 2 -lifetime 1s")
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // if the test failed before the process ended
		<-waited
	})
	waitFor(t, "the demo to log in", func() bool { return strings.Contains(stdout.String(), "logged in") })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := <-waited
	waited <- err // for the clean-up
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Errorf("demo ended with %v; want exit status %d", err, exitInterrupted)
	}
	if s := stdout.String(); !strings.Contains(s, "interrupted after") || strings.Contains(s, "ok:") {
		t.Errorf("output:\n%s\nwant the summary to say it was interrupted, not ok", s)
	}
	if !strings.Contains(stderr.String(), "demo: interrupted") {
		t.Errorf("error output %q; want demo: interrupted", stderr.String())
	}
}
