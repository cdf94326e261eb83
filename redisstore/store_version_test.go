package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// loadState describes what the key of s holds: the access token that Load
// returns, or "tombstone" or "lost" for an empty store, or "corrupt",
// followed by "@" and the version of the stored value (0 for a missing
// key). It loads through a Store value of its own, which never holds the
// lock, so that it changes no fence of s.
func loadState(t *testing.T, c *redis.Client, s *redisstore.Store) string {
	t.Helper()
	ctx := context.Background()
	raw, err := c.Get(ctx, s.Key()).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("GET %s: %v", s.Key(), err)
	}
	v := redisstore.RecordVersion(raw)
	got, err := redisstore.New(c, s.Key()).Load(ctx)
	switch {
	case errors.Is(err, autorefresh.ErrTokensLost):
		return fmt.Sprint("lost@", v)
	case errors.Is(err, autorefresh.ErrNoTokens):
		return fmt.Sprint("tombstone@", v)
	case errors.Is(err, autorefresh.ErrCorruptRecord):
		return fmt.Sprint("corrupt@", v)
	case err != nil:
		t.Fatalf("Load: %v", err)
	}
	return fmt.Sprint(got.AccessToken, "@", v)
}

// pair returns a token pair whose access token is a.
func pair(a string) autorefresh.Tokens {
	return autorefresh.Tokens{AccessToken: a, RefreshToken: "r-" + a}
}

// TestVersions walks a Store through saves and clears, and checks the
// version of each state: every change writes the stored version plus one,
// a clear of a tombstone leaves it, and a vanished key counts from 0 again.
func TestVersions(t *testing.T) {
	c, s := setup(t, redisstore.WithTTL(time.Hour))
	ctx := context.Background()
	save := func(a string) func() error { return func() error { return s.Save(ctx, pair(a)) } }
	clear := func() error { return s.Clear(ctx) }
	vanish := func() error { return c.Del(ctx, s.Key()).Err() }

	for _, step := range []struct {
		name   string
		change func() error
		want   string // loadState afterwards
	}{
		{"nothing", func() error { return nil }, "lost@0"},
		{"Save of a missing key", save("a1"), "a1@1"},
		{"Save", save("a2"), "a2@2"},
		{"Save of the same pair", save("a2"), "a2@3"},
		{"Clear", clear, "tombstone@4"},
		{"Clear of the tombstone", clear, "tombstone@4"},
		{"Save over the tombstone", save("a5"), "a5@5"},
		{"DEL", vanish, "lost@0"},
		{"Clear of a missing key", clear, "tombstone@1"},
		{"Save over it", save("a2"), "a2@2"},
	} {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := loadState(t, c, s); got != step.want {
			t.Fatalf("after %s: state = %s; want %s", step.name, got, step.want)
		}
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
		if err := s.Clear(ctx); err != nil {
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
// without a version, loads at version 0, and that a save or a clear, fenced
// or not, replaces it at version 1.
func TestUnversionedRecord(t *testing.T) {
	const old = `{"accessToken":"old-a","refreshToken":"old-r","expiry":"2030-01-02T03:04:05Z"}`
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		locked bool
		change func(*redisstore.Store) error
		want   string
	}{
		{"Save", false, func(s *redisstore.Store) error { return s.Save(ctx, pair("new")) }, "new@1"},
		{"Clear", false, func(s *redisstore.Store) error { return s.Clear(ctx) }, "tombstone@1"},
		{"fenced Save", true, func(s *redisstore.Store) error { return s.Save(ctx, pair("new")) }, "new@1"},
		{"fenced Clear", true, func(s *redisstore.Store) error { return s.Clear(ctx) }, "tombstone@1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t)
			c.Set(ctx, s.Key(), old, 0)
			if tt.locked {
				unlock, err := s.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
			}
			got, err := s.Load(ctx)
			if err != nil || got.AccessToken != "old-a" || got.RefreshToken != "old-r" ||
				!got.Expiry.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Fatalf("Load of an old record = %v, %v; want its tokens", got, err)
			}
			if got := loadState(t, c, s); got != "old-a@0" {
				t.Fatalf("state of an old record = %s; want old-a@0", got)
			}
			if err := tt.change(s); err != nil {
				t.Fatal(err)
			}
			if got := loadState(t, c, s); got != tt.want {
				t.Errorf("state after %s = %s; want %s", tt.name, got, tt.want)
			}
		})
	}
}

// TestVersionRuleOfScripts stores values that are not what Save writes and
// checks that the scripts read the same version from them as Load does
// (RecordVersion): a save writes that version plus one. It also checks that
// a fenced save accepts each value that the holder loaded under the lock:
// the scripts compare the same bytes as Load read, whatever they are.
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
		if v := redisstore.RecordVersion([]byte(tt.value)); v != tt.version {
			t.Errorf("version of %q as Load reads it = %d; want %d", tt.value, v, tt.version)
		}
		c.Set(ctx, s.Key(), tt.value, 0)
		if err := s.Save(ctx, pair("x")); err != nil {
			t.Fatalf("value %q: Save: %v", tt.value, err)
		}
		if got, want := loadState(t, c, s), fmt.Sprint("x@", tt.version+1); got != want {
			t.Errorf("value %q: state after Save = %s; want %s", tt.value, got, want)
		}

		c.Set(ctx, s.Key(), tt.value, 0)
		unlock, err := s.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Load(ctx) // arms the fence with the value, whatever Load says of it
		err = s.Save(ctx, pair("y"))
		unlock()
		if err != nil {
			t.Errorf("value %q: fenced Save after loading it: %v; want it to go through", tt.value, err)
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
	if got, want := loadState(t, c, s), fmt.Sprint("a@", uint64(largest)); got != want {
		t.Fatalf("state = %s; want %s", got, want)
	}
	if err := s.Save(ctx, pair("b")); err == nil {
		t.Error("Save past the largest version succeeded")
	}
	if err := s.Clear(ctx); err == nil {
		t.Error("Clear past the largest version succeeded")
	}
	if got, want := loadState(t, c, s), fmt.Sprint("a@", uint64(largest)); got != want {
		t.Errorf("state after the refused changes = %s; want %s", got, want)
	}
}

// TestConcurrentSave runs many unconditional saves at once and checks that
// each got a version of its own: the increment is atomic.
func TestConcurrentSave(t *testing.T) {
	c, s := setup(t)
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
	if got := loadState(t, c, s); got != fmt.Sprint("a@", saves) {
		t.Errorf("state after %d concurrent saves = %s; want a@%d", saves, got, saves)
	}
}

// TestSaveOutlivesContext checks that Save finishes a write that Redis holds
// back (CLIENT PAUSE WRITE, as during a failover) past the deadline of its
// context, which a rotated pair needs, outside the lock and fenced under it.
func TestSaveOutlivesContext(t *testing.T) {
	ctrl := newClient(t)
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c, uniqueKey(t, ctrl))
	const pause, deadline = 500 * time.Millisecond, 50 * time.Millisecond
	ctx := context.Background()
	for i, locked := range []bool{false, true} {
		if locked {
			unlock, err := s.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			if _, err := s.Load(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := ctrl.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, deadline)
		// The pause holds back a write of the client: a plain SET with
		// this context fails, so the save below has to outlive it.
		if err := c.Set(short, s.Key()+":probe", "x", 0).Err(); err == nil {
			t.Errorf("SET during CLIENT PAUSE WRITE with a %v deadline succeeded; the test does not pause", deadline)
		}
		err := s.Save(short, pair(fmt.Sprint("a", i+1)))
		cancel()
		if err != nil {
			t.Fatalf("save %d (locked: %v) during CLIENT PAUSE WRITE: %v", i+1, locked, err)
		}
	}
	if got := loadState(t, ctrl, s); got != "a2@2" {
		t.Errorf("state = %s; want a2@2", got)
	}
}
