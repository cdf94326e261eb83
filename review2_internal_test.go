package autorefresh

import (
	"testing"
	"time"
)

// TestDefaultEarlyWindowAsREADMEStates holds the default early-refresh
// window to what the README ("Ahead of time, without waiting") promises: "By
// default the window is a quarter of the token's lifetime (at most 30 s) but
// at least twice the last refresh's duration ... capped at half the
// lifetime". Since f355160 the code (and Transport.EarlyRefresh's doc) use a
// tenth of the lifetime and one and a half times the last refresh once a
// refresh was measured, so the README (and bench/README.md, which also says
// OAuth2 counts expires_in from the request) describe another behaviour.
func TestDefaultEarlyWindowAsREADMEStates(t *testing.T) {
	tests := []struct {
		name        string
		life        time.Duration
		lastRefresh time.Duration // 0: none measured yet
		want        time.Duration
	}{
		{"before any refresh", 40 * time.Second, 0, 10 * time.Second},
		{"capped at 30 s", 10 * time.Minute, 0, 30 * time.Second},
		{"after a fast refresh", 40 * time.Second, time.Millisecond, 4 * time.Second},
		{"after a slow refresh", 40 * time.Second, 8 * time.Second, 12 * time.Second},
		{"capped at half the lifetime", 2 * time.Second, 800 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{Store: NewMemoryStore(Tokens{})}
			m := tr.manager()
			m.lastRefresh.Store(int64(tt.lastRefresh))
			if got := m.window(tt.life); got != tt.want {
				t.Errorf("window(%v) after a refresh of %v = %v; want %v", tt.life, tt.lastRefresh, got, tt.want)
			}
		})
	}
}
