package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
	cfg := config{duration: 300 * time.Millisecond, workers: 4, lifetime: 100 * time.Millisecond, store: path}
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
