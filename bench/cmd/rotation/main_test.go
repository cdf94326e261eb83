package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRun runs every client for a few short lifetimes, so that the program
// keeps working; it checks counts, not speed (the numbers are in the
// README, from full runs).
func TestRun(t *testing.T) {
	cfg := config{workers: 4, lifetime: 300 * time.Millisecond, latency: 30 * time.Millisecond,
		duration: 700 * time.Millisecond, oauth2Early: 100 * time.Millisecond, noise: 10 * time.Millisecond}
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			res, err := run(impl, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.requests == 0 || res.refreshes < 1 || res.reuses != 0 {
				t.Errorf("requests = %d, refreshes = %d, reuses = %d; want some, at least 1, 0", res.requests, res.refreshes, res.reuses)
			}
			// oauth2 returns a refusal when a token expires on its way;
			// autorefresh refreshes and replays.
			if impl != "oauth2" && res.failed != 0 {
				t.Errorf("failed requests = %d (the first: %s); want 0", res.failed, res.firstErr)
			}
			var out bytes.Buffer
			printRow(&out, cfg, res)
			if !strings.HasPrefix(out.String(), "| "+impl+" | ") {
				t.Errorf("row = %q; want it to start with the client's name", out.String())
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil || cfg.workers != 20 || cfg.lifetime != 2*time.Second || cfg.latency != 300*time.Millisecond ||
		cfg.duration != 8*time.Second || cfg.oauth2Early != 500*time.Millisecond || len(cfg.impls) != 3 {
		t.Errorf("defaults = %+v, %v; want the issue's scenario", cfg, err)
	}
	for _, args := range [][]string{{"-workers", "0"}, {"-impl", "nope"}, {"-duration", "-1s"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error; want one", args)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseFlags(-h) = %v; want flag.ErrHelp", err)
	}
}
