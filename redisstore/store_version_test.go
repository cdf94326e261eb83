package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

var _ autorefresh.VersionedStore = (*redisstore.Store)(nil)

// loadState describes what LoadVersion reports: the access token, or for an
// empty store "tombstone" or "lost", and the version.
func loadState(t *testing.T, s *redisstore.Store) string {
	t.Helper()
	got, v, err := s.LoadVersion(context.Background())
	switch {
	case errors.Is(err, autorefresh.ErrTokensLost):
		return fmt.Sprint("lost@", v)
	case errors.Is(err, autorefresh.ErrNoTokens):
		return fmt.Sprint("tombstone@", v)
	case err != nil:
		t.Fatalf("LoadVersion: %v", err)
	}
	return fmt.Sprint(got.AccessToken, "@", v)
}

// conflict runs a conditional change that must fail with
// autorefresh.ErrVersionConflict, and checks that it changed neither the
// value nor its TTL.
func conflict(t *testing.T, c *redis.Client, s *redisstore.Store, name string, change func() error) {
	t.Helper()
	ctx := context.Background()
	before, ttl := c.Get(ctx, s.Key()).Val(), c.PTTL(ctx, s.Key()).Val()
	if err := change(); !errors.Is(err, autorefresh.ErrVersionConflict) {
		t.Fatalf("%s: error = %v; want ErrVersionConflict", name, err)
	}
	after, ttlAfter := c.Get(ctx, s.Key()).Val(), c.PTTL(ctx, s.Key()).Val()
	if after != before || (ttl < 0) != (ttlAfter < 0) || ttlAfter > ttl {
		t.Fatalf("%s changed the value or its TTL: %s (TTL %v) became %s (TTL %v)", name, before, ttl, after, ttlAfter)
	}
}

// TestVersions walks a Store through saves, conditional saves and clears,
// and checks the version of each state and that conditional changes with a
// stale version change nothing.
func TestVersions(t *testing.T) {
	c, s := setup(t, redisstore.WithTTL(time.Hour))
	ctx := context.Background()
	pair := func(a string) autorefresh.Tokens { return autorefresh.Tokens{AccessToken: a, RefreshToken: "r"} }
	saveVersion := func(a string, prev uint64) func() error {
		return func() error {
			v, err := s.SaveVersion(ctx, pair(a), prev)
			if err == nil && v != prev+1 {
				err = fmt.Errorf("SaveVersion(%d) = %d; want %d", prev, v, prev+1)
			}
			return err
		}
	}
	clearVersion := func(prev uint64) func() error { return func() error { return s.ClearVersion(ctx, prev) } }
	save := func(a string) func() error { return func() error { return s.Save(ctx, pair(a)) } }
	clear := func() error { return s.Clear(ctx) }

	for _, step := range []struct {
		name     string
		change   func() error
		conflict bool
		want     string // loadState afterwards
	}{
		{"SaveVersion(1) of a missing key", saveVersion("x", 1), true, "lost@0"},
		{"ClearVersion(1) of a missing key", clearVersion(1), true, "lost@0"},
		{"SaveVersion(0) of a missing key", saveVersion("a1", 0), false, "a1@1"},
		{"Save", save("a2"), false, "a2@2"},
		{"SaveVersion(1) at 2", saveVersion("x", 1), true, "a2@2"},
		{"SaveVersion(3) at 2", saveVersion("x", 3), true, "a2@2"},
		{"ClearVersion(1) at 2", clearVersion(1), true, "a2@2"},
		{"SaveVersion(2) at 2", saveVersion("a3", 2), false, "a3@3"},
		{"ClearVersion(3) at 3", clearVersion(3), false, "tombstone@4"},
		{"ClearVersion(3) of the tombstone", clearVersion(3), true, "tombstone@4"},
		{"SaveVersion(3) over the tombstone", saveVersion("x", 3), true, "tombstone@4"},
		{"ClearVersion(4) of the tombstone", clearVersion(4), false, "tombstone@4"},
		{"Clear of the tombstone", clear, false, "tombstone@4"},
		{"SaveVersion(4) over the tombstone", saveVersion("a5", 4), false, "a5@5"},
		{"Clear", clear, false, "tombstone@6"},
		{"Save over the tombstone", save("a7"), false, "a7@7"},
	} {
		if step.conflict {
			conflict(t, c, s, step.name, step.change)
		} else if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := loadState(t, s); got != step.want {
			t.Fatalf("after %s: LoadVersion = %s; want %s", step.name, got, step.want)
		}
	}

	// The key vanishes (FLUSHALL, eviction, a restart without
	// persistence): versions start again from 0.
	c.Del(ctx, s.Key())
	if got := loadState(t, s); got != "lost@0" {
		t.Fatalf("after DEL: LoadVersion = %s; want lost@0", got)
	}
	if err := s.ClearVersion(ctx, 0); err != nil {
		t.Fatalf("ClearVersion(0) of a missing key: %v", err)
	}
	if got := loadState(t, s); got != "tombstone@1" {
		t.Fatalf("after ClearVersion(0) of a missing key: LoadVersion = %s; want tombstone@1", got)
	}
}

// TestTombstoneVersusMissingKey checks that only a missing key reports lost
// tokens: a key that was never written, deleted, or whose tombstone
// expired. A tombstone is an explicit logout. Both are no tokens.
func TestTombstoneVersusMissingKey(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	isLost := func() bool {
		t.Helper()
		_, err := s.Load(ctx)
		if !errors.Is(err, autorefresh.ErrNoTokens) {
			t.Fatalf("Load of an empty store: %v; want ErrNoTokens", err)
		}
		return errors.Is(err, autorefresh.ErrTokensLost)
	}
	if !isLost() {
		t.Error("a key that was never written does not load as lost")
	}
	if err := s.Save(ctx, autorefresh.Tokens{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if isLost() {
		t.Error("a tombstone loads as lost")
	}
	other := redisstore.New(newClient(t), s.Key())
	if _, err := other.Load(ctx); errors.Is(err, autorefresh.ErrTokensLost) || !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("Load of the tombstone by another replica: %v; want ErrNoTokens and not ErrTokensLost", err)
	}
	c.Del(ctx, s.Key())
	if !isLost() {
		t.Error("a deleted key does not load as lost")
	}
}

// TestTombstoneTTL checks that a tombstone gets the TTL of WithTTL, and no
// expiry without it, and that an expired tombstone is a missing key.
func TestTombstoneTTL(t *testing.T) {
	ctx := context.Background()
	pair := autorefresh.Tokens{AccessToken: "a", RefreshToken: "r"}
	t.Run("none", func(t *testing.T) {
		c, s := setup(t)
		if err := s.Save(ctx, pair); err != nil {
			t.Fatal(err)
		}
		if err := s.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.PTTL(ctx, s.Key()).Val(); got != -1 {
			t.Errorf("PTTL of a tombstone without WithTTL = %v; want -1 (no expiry)", got)
		}
	})
	t.Run("WithTTL", func(t *testing.T) {
		const ttl = time.Hour
		c, s := setup(t, redisstore.WithTTL(ttl))
		if err := s.ClearVersion(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if got := c.PTTL(ctx, s.Key()).Val(); got <= 0 || got > ttl {
			t.Errorf("PTTL of a tombstone = %v; want in (0, %v]", got, ttl)
		}
	})
	t.Run("expires", func(t *testing.T) {
		_, s := setup(t, redisstore.WithTTL(20*time.Millisecond))
		if err := s.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the tombstone to expire", func() bool {
			_, err := s.Load(ctx)
			return errors.Is(err, autorefresh.ErrTokensLost)
		})
	})
}

// waitFor polls cond until it holds, and fails the test if it does not
// within limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnversionedRecord checks that a record saved by an older release,
// without a version, loads at version 0 and can be replaced or cleared with
// prev 0.
func TestUnversionedRecord(t *testing.T) {
	const old = `{"accessToken":"old-a","refreshToken":"old-r","expiry":"2030-01-02T03:04:05Z"}`
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		change func(*redisstore.Store) error
		want   string
	}{
		{"SaveVersion", func(s *redisstore.Store) error {
			_, err := s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: "new"}, 0)
			return err
		}, "new@1"},
		{"Save", func(s *redisstore.Store) error { return s.Save(ctx, autorefresh.Tokens{AccessToken: "new"}) }, "new@1"},
		{"ClearVersion", func(s *redisstore.Store) error { return s.ClearVersion(ctx, 0) }, "tombstone@1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t)
			c.Set(ctx, s.Key(), old, 0)
			got, v, err := s.LoadVersion(ctx)
			if err != nil || v != 0 || got.AccessToken != "old-a" || got.RefreshToken != "old-r" ||
				!got.Expiry.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Fatalf("LoadVersion of an old record = %v, version %d, %v; want its tokens at version 0", got, v, err)
			}
			conflict(t, c, s, "SaveVersion(1)", func() error {
				_, err := s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: "x"}, 1)
				return err
			})
			if err := tt.change(s); err != nil {
				t.Fatal(err)
			}
			if got := loadState(t, s); got != tt.want {
				t.Errorf("LoadVersion after %s = %s; want %s", tt.name, got, tt.want)
			}
		})
	}
}

// TestVersionRuleOfScripts stores values that are not what Save writes and
// checks that the scripts read the same version from them as LoadVersion: a
// conditional save with the version LoadVersion reported succeeds, one with
// another version conflicts. A replica that holds good tokens can then
// replace a corrupt value without losing the protection of the version.
func TestVersionRuleOfScripts(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		value   string
		version uint64
	}{
		{`{"accessToken":"a","version":5}`, 5},
		{`{ "version" : 5 , "accessToken" : 42 }`, 5},
		{`{"version":5}`, 5},
		{`{"cleared":true,"version":5}`, 5},
		{`{"cleared":"yes","version":5}`, 5},
		{`{"accessToken":"a","version":1,"version":5}`, 5},
		{"{\"accessToken\":\"\xff\",\"version\":5}", 5},
		{`{"x":{"version":3}}`, 0},
		{`{"Version":3}`, 0},
		{`{"version":"3"}`, 0},
		{`{"version":null}`, 0},
		{`{"version":-1}`, 0},
		{`{"version":-0}`, 0},
		{`{"version":3.0}`, 0},
		{`{"version":3.5}`, 0},
		{`{"version":3e0}`, 0},
		{`{"version":0x3}`, 0},
		{`{"version":003}`, 0},
		{`{"version":1e400}`, 0},
		{`{"version":9007199254740992}`, 0},
		{`{"version":3} trailing`, 0},
		{`[{"version":3}]`, 0},
		{`"version"`, 0},
		{`not JSON at all`, 0},
		{``, 0},
	}
	c, s := setup(t)
	for _, tt := range tests {
		c.Set(ctx, s.Key(), tt.value, 0)
		_, v, _ := s.LoadVersion(ctx)
		if v != tt.version {
			t.Errorf("LoadVersion of %q: version %d; want %d", tt.value, v, tt.version)
		}
		if _, err := s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: "x"}, v+1); !errors.Is(err, autorefresh.ErrVersionConflict) {
			t.Errorf("value %q: SaveVersion(%d): %v; want ErrVersionConflict", tt.value, v+1, err)
		}
		c.Set(ctx, s.Key(), tt.value, 0)
		if nv, err := s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: "x"}, v); err != nil || nv != v+1 {
			t.Errorf("value %q: SaveVersion(%d) = %d, %v; want %d, nil", tt.value, v, nv, err, v+1)
		}
	}
}

// TestVersionLimit checks that a save past the largest version fails
// instead of wrapping around or losing precision.
func TestVersionLimit(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	const largest = 1<<53 - 1
	c.Set(ctx, s.Key(), fmt.Sprintf(`{"accessToken":"a","version":%d}`, largest), 0)
	if _, v, err := s.LoadVersion(ctx); err != nil || v != largest {
		t.Fatalf("LoadVersion = version %d, %v; want %d, nil", v, err, uint64(largest))
	}
	if err := s.Save(ctx, autorefresh.Tokens{AccessToken: "b"}); err == nil {
		t.Error("Save past the largest version succeeded")
	}
	if err := s.Clear(ctx); err == nil {
		t.Error("Clear past the largest version succeeded")
	}
	if got := loadState(t, s); got != fmt.Sprint("a@", largest) {
		t.Errorf("LoadVersion after the refused changes = %s; want a@%d", got, uint64(largest))
	}
}

// TestConcurrentSaveVersion runs, round after round, conditional saves and
// clears with the same previous version from many goroutines on several
// clients, without the lock: the scripts let exactly one win each round,
// and the others change nothing and get ErrVersionConflict.
func TestConcurrentSaveVersion(t *testing.T) {
	_, s := setup(t)
	stores := []*redisstore.Store{s}
	for range 3 {
		stores = append(stores, redisstore.New(newClient(t), s.Key()))
	}
	for round := range 6 {
		concurrentRound(t, stores, round%2 == 1)
	}
}

// concurrentRound runs one round of TestConcurrentSaveVersion; with clears,
// every fourth goroutine clears instead of saving.
func concurrentRound(t *testing.T, stores []*redisstore.Store, clears bool) {
	t.Helper()
	const goroutines = 24
	ctx := context.Background()
	_, prev, err := stores[0].LoadVersion(ctx)
	if err != nil && !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		wins   atomic.Int32
		winner atomic.Int32
	)
	for g := range goroutines {
		wg.Go(func() {
			s := stores[g%len(stores)]
			<-start
			var err error
			if clears && g%4 == 0 {
				err = s.ClearVersion(ctx, prev)
			} else {
				_, err = s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: fmt.Sprint("g", g)}, prev)
			}
			if err == nil {
				wins.Add(1)
				winner.Store(int32(g))
			} else if !errors.Is(err, autorefresh.ErrVersionConflict) {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d conditional changes from version %d succeeded; want 1", n, prev)
	}
	want := fmt.Sprint("g", winner.Load(), "@", prev+1)
	if g := winner.Load(); clears && g%4 == 0 {
		want = fmt.Sprint("tombstone@", prev+1)
	}
	if got := loadState(t, stores[1]); got != want {
		t.Errorf("LoadVersion = %s; want %s", got, want)
	}
}

// TestConcurrentSave runs many unconditional saves at once and checks that
// each got a version of its own: the increment is atomic.
func TestConcurrentSave(t *testing.T) {
	_, s := setup(t)
	other := redisstore.New(newClient(t), s.Key())
	const saves = 40
	var wg sync.WaitGroup
	for i := range saves {
		wg.Go(func() {
			st := s
			if i%2 == 1 {
				st = other
			}
			if err := st.Save(context.Background(), autorefresh.Tokens{AccessToken: "a"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := loadState(t, s); got != fmt.Sprint("a@", saves) {
		t.Errorf("LoadVersion after %d concurrent saves = %s; want a@%d", saves, got, saves)
	}
}

// TestSaveOutlivesContext checks that Save and SaveVersion finish a write
// that Redis holds back (CLIENT PAUSE WRITE, as during a failover) past the
// deadline of their context, which a rotated pair needs.
func TestSaveOutlivesContext(t *testing.T) {
	ctrl := newClient(t)
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c, uniqueKey(t, ctrl))
	const pause, deadline = 500 * time.Millisecond, 50 * time.Millisecond
	for i, save := range []func(context.Context) error{
		func(ctx context.Context) error { return s.Save(ctx, autorefresh.Tokens{AccessToken: "a1"}) },
		func(ctx context.Context) error {
			_, err := s.SaveVersion(ctx, autorefresh.Tokens{AccessToken: "a2"}, 1)
			return err
		},
	} {
		if err := ctrl.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		// The pause holds back a write of the client: a plain SET with
		// this context fails, so the save below has to outlive it.
		if err := c.Set(ctx, s.Key()+":probe", "x", 0).Err(); err == nil {
			t.Errorf("SET during CLIENT PAUSE WRITE with a %v deadline succeeded; the test does not pause", deadline)
		}
		err := save(ctx)
		cancel()
		if err != nil {
			t.Fatalf("save %d during CLIENT PAUSE WRITE: %v", i+1, err)
		}
	}
	if got := loadState(t, s); got != "a2@2" {
		t.Errorf("LoadVersion = %s; want a2@2", got)
	}
}
