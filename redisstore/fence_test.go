package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// lockAndLoad takes the lock of s and loads the key under it, which arms
// the fence of s. It returns the unlock function, also called when the test
// ends.
func lockAndLoad(t *testing.T, s *redisstore.Store) (unlock func()) {
	t.Helper()
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	if _, err := s.Load(context.Background()); err != nil && !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Fatal(err)
	}
	return unlock
}

// loseLease ends the lease of the lock of s as Redis does when it runs out
// while the holder stalls: the lock key goes, and the holder is not told
// (its renewal then finds the lock gone and stops).
func loseLease(t *testing.T, c *redis.Client, s *redisstore.Store) {
	t.Helper()
	if err := c.Del(context.Background(), s.LockKey()).Err(); err != nil {
		t.Fatal(err)
	}
}

// fencedOps are the writes that the fence refuses, by name.
func fencedOps(s *redisstore.Store) map[string]func() error {
	ctx := context.Background()
	return map[string]func() error{
		"Save":  func() error { return s.Save(ctx, pair("late")) },
		"Clear": func() error { return s.Clear(ctx) },
	}
}

// refused runs op, a write that the fence must refuse, and checks that it
// returns an error wrapping ErrLockLost that names the operation, and that
// it changed neither the stored value nor its TTL.
func refused(t *testing.T, c *redis.Client, s *redisstore.Store, name string, op func() error) {
	t.Helper()
	ctx := context.Background()
	before, ttl := c.Get(ctx, s.Key()).Val(), c.PTTL(ctx, s.Key()).Val()
	err := op()
	if !errors.Is(err, autorefresh.ErrLockLost) {
		t.Fatalf("%s: error = %v; want one wrapping ErrLockLost", name, err)
	}
	if want := "autorefresh: redisstore: " + strings.ToLower(name) + " "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%s: error %q; want prefix %q", name, err, want)
	}
	after, ttlAfter := c.Get(ctx, s.Key()).Val(), c.PTTL(ctx, s.Key()).Val()
	if after != before || (ttl < 0) != (ttlAfter < 0) || ttlAfter > ttl {
		t.Fatalf("refused %s changed the value or its TTL: %s (TTL %v) became %s (TTL %v)", name, before, ttl, after, ttlAfter)
	}
}

// other returns the first operation of fencedOps that is not op.
func other(op string) string {
	if op == "Save" {
		return "Clear"
	}
	return "Save"
}

// TestStalledHolderIsFenced is issue 12 item 3 with a real lease: a holder
// cut off from Redis (its connection hangs, as in a GC or VM pause or a
// partition) past its lease loses the lock to another replica, which saves a
// newer pair. When the stalled holder comes back, its Save and its Clear are
// refused with ErrLockLost, and the newer pair stays.
func TestStalledHolderIsFenced(t *testing.T) {
	for _, first := range []string{"Save", "Clear"} {
		t.Run(first, func(t *testing.T) {
			const lease = 300 * time.Millisecond
			ctx := context.Background()
			ctrl := newClient(t)
			key := uniqueKey(t, ctrl)
			p := newHangProxy(t)
			p.resume()
			stalledClient := hangClient(t, p)
			stalled := redisstore.New(stalledClient, key, redisstore.WithLease(lease), redisstore.WithTTL(time.Hour))
			replica := redisstore.New(newClient(t), key, redisstore.WithLease(lease), redisstore.WithTTL(time.Hour), fastRetry)
			if err := replica.Save(ctx, pair("a1")); err != nil {
				t.Fatal(err)
			}
			lockAndLoad(t, stalled)

			p.hang() // the holder stalls: its renewals no longer reach Redis
			waitCtx, cancel := context.WithTimeout(ctx, lease+5*time.Second)
			defer cancel()
			unlock, err := replica.Lock(waitCtx)
			if err != nil {
				t.Fatalf("Lock of the other replica: %v; want the lock once the stalled holder's lease ran out", err)
			}
			defer unlock()
			if _, err := replica.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if err := replica.Save(ctx, pair("a2")); err != nil {
				t.Fatal(err)
			}

			p.resume() // the holder wakes up, still believing it holds the lock
			waitFor(t, 5*time.Second, "the stalled holder to reach Redis again", func() bool {
				return stalledClient.Ping(ctx).Err() == nil
			})
			ops := fencedOps(stalled)
			for _, op := range []string{first, other(first)} {
				refused(t, ctrl, stalled, op, ops[op])
			}
			if got := loadState(t, ctrl, stalled); got != "a2@2" {
				t.Errorf("state = %s; want a2@2, the other replica's pair", got)
			}
			// The other replica's lock and writes are untouched.
			if err := replica.Save(ctx, pair("a3")); err != nil {
				t.Errorf("Save of the current holder: %v", err)
			}
		})
	}
}

// TestFenceRefusesLateWrites checks that a holder whose lease ran out cannot
// write over whatever another writer did meanwhile, with Save or Clear, and
// that once refused, every later write under the same lock is refused too.
func TestFenceRefusesLateWrites(t *testing.T) {
	ctx := context.Background()
	meanwhile := []struct {
		name string
		do   func(t *testing.T, c *redis.Client, replica *redisstore.Store)
	}{
		{"another holder saved", func(t *testing.T, c *redis.Client, replica *redisstore.Store) {
			lockAndLoad(t, replica)
			if err := replica.Save(ctx, pair("new")); err != nil {
				t.Fatal(err)
			}
		}},
		{"another holder cleared", func(t *testing.T, c *redis.Client, replica *redisstore.Store) {
			lockAndLoad(t, replica)
			if err := replica.Clear(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"a save without the lock", func(t *testing.T, c *redis.Client, replica *redisstore.Store) {
			if err := replica.Save(ctx, pair("new")); err != nil {
				t.Fatal(err)
			}
		}},
		// The version alone would not tell this one: the new record has
		// the version of the one the holder read.
		{"the key vanished and another holder saved again", func(t *testing.T, c *redis.Client, replica *redisstore.Store) {
			c.Del(ctx, replica.Key())
			lockAndLoad(t, replica)
			if err := replica.Save(ctx, pair("new")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, m := range meanwhile {
		for _, op := range []string{"Save", "Clear"} {
			t.Run(m.name+"/"+op, func(t *testing.T) {
				c, holder := setup(t)
				replica := redisstore.New(newClient(t), holder.Key())
				if err := replica.Save(ctx, pair("a1")); err != nil {
					t.Fatal(err)
				}
				lockAndLoad(t, holder)
				loseLease(t, c, holder)
				m.do(t, c, replica)
				want := loadState(t, c, holder)
				ops := fencedOps(holder)
				refused(t, c, holder, op, ops[op])
				if got := loadState(t, c, holder); got != want {
					t.Errorf("state after the refused %s = %s; want %s", op, got, want)
				}
				// Refused for good under this lock: even over a missing
				// key, which a holder not found late may write over.
				c.Del(ctx, holder.Key())
				refused(t, c, holder, other(op), ops[other(op)])
			})
		}
	}
}

// TestFenceNothingElseWrote checks that a lease that ran out refuses
// nothing while nobody else wrote: the write overwrites nothing newer, and
// refusing it would lose a freshly rotated pair. If another replica took the
// lock meanwhile, it is that replica's later write that is refused.
func TestFenceNothingElseWrote(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		op, want, then, wantThen string
	}{
		{"Save", "late@2", "Clear", "tombstone@3"},
		{"Clear", "tombstone@2", "Save", "late@3"},
	} {
		t.Run(tt.op, func(t *testing.T) {
			c, s := setup(t)
			if err := s.Save(ctx, pair("a1")); err != nil {
				t.Fatal(err)
			}
			lockAndLoad(t, s)
			loseLease(t, c, s)
			ops := fencedOps(s)
			if err := ops[tt.op](); err != nil {
				t.Fatalf("%s after the lease ran out, nobody else having written: %v", tt.op, err)
			}
			if got := loadState(t, c, s); got != tt.want {
				t.Errorf("state after %s = %s; want %s", tt.op, got, tt.want)
			}
			// The holder's own write moved its fence along.
			if err := ops[tt.then](); err != nil {
				t.Fatalf("%s after its own %s: %v", tt.then, tt.op, err)
			}
			if got := loadState(t, c, s); got != tt.wantThen {
				t.Errorf("state after %s = %s; want %s", tt.then, got, tt.wantThen)
			}
		})
	}

	t.Run("another replica took the lock", func(t *testing.T) {
		c, late := setup(t)
		replica := redisstore.New(newClient(t), late.Key())
		if err := late.Save(ctx, pair("a1")); err != nil {
			t.Fatal(err)
		}
		lockAndLoad(t, late)
		loseLease(t, c, late)
		lockAndLoad(t, replica)
		if err := late.Save(ctx, pair("late")); err != nil {
			t.Fatalf("Save of the late holder before the other replica wrote: %v", err)
		}
		refused(t, c, replica, "Save", func() error { return replica.Save(ctx, pair("new")) })
		if got := loadState(t, c, late); got != "late@2" {
			t.Errorf("state = %s; want late@2", got)
		}
	})
}

// TestUnfencedWrites checks the writes that are not fenced: those of a Store
// value that does not hold the lock, and those made under the lock before
// anything was read, which then fence the writes after them.
func TestUnfencedWrites(t *testing.T) {
	ctx := context.Background()
	setupPair := func(t *testing.T) (*redis.Client, *redisstore.Store, *redisstore.Store) {
		c, s := setup(t)
		writer := redisstore.New(newClient(t), s.Key())
		if err := writer.Save(ctx, pair("a1")); err != nil {
			t.Fatal(err)
		}
		return c, s, writer
	}

	t.Run("without the lock", func(t *testing.T) {
		c, s, writer := setupPair(t)
		if _, err := s.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if err := writer.Save(ctx, pair("b")); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, pair("c")); err != nil {
			t.Fatalf("Save without the lock after another write: %v", err)
		}
		if err := s.Clear(ctx); err != nil {
			t.Fatalf("Clear without the lock: %v", err)
		}
		if got := loadState(t, c, s); got != "tombstone@4" {
			t.Errorf("state = %s; want tombstone@4", got)
		}
	})

	t.Run("under the lock before any Load", func(t *testing.T) {
		c, s, writer := setupPair(t)
		unlock, err := s.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		if err := writer.Save(ctx, pair("b")); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, pair("c")); err != nil {
			t.Fatalf("Save under the lock before any Load: %v; want it unconditional", err)
		}
		if got := loadState(t, c, s); got != "c@3" {
			t.Errorf("state = %s; want c@3", got)
		}
		// That write armed the fence.
		if err := writer.Save(ctx, pair("d")); err != nil {
			t.Fatal(err)
		}
		refused(t, c, s, "Clear", func() error { return s.Clear(ctx) })
	})

	t.Run("after unlock", func(t *testing.T) {
		c, s, writer := setupPair(t)
		unlock := lockAndLoad(t, s)
		unlock()
		if err := writer.Save(ctx, pair("b")); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, pair("c")); err != nil {
			t.Fatalf("Save after unlock: %v; want it unconditional", err)
		}
		if got := loadState(t, c, s); got != "c@3" {
			t.Errorf("state = %s; want c@3", got)
		}
	})
}

// TestFencePerStoreValue checks that each Store value is a holder of its
// own, even with one client in one process, and that the fence belongs to
// one acquisition of the lock: a later one of the same Store value starts
// afresh, and the unlock of the earlier one leaves it alone.
func TestFencePerStoreValue(t *testing.T) {
	ctx := context.Background()

	t.Run("two Store values", func(t *testing.T) {
		c, a := setup(t)
		b := redisstore.New(c, a.Key())
		if err := a.Save(ctx, pair("a1")); err != nil {
			t.Fatal(err)
		}
		unlockA := lockAndLoad(t, a)
		loseLease(t, c, a)
		unlockB := lockAndLoad(t, b)
		if err := b.Save(ctx, pair("b")); err != nil {
			t.Fatal(err)
		}
		refused(t, c, a, "Save", func() error { return a.Save(ctx, pair("late")) })
		if err := b.Save(ctx, pair("b2")); err != nil {
			t.Fatalf("Save of the holder after the other Store value was refused: %v", err)
		}
		unlockA()
		// B still holds its lock, and its fence.
		if err := c.Set(ctx, a.Key(), `{"accessToken":"x","version":9}`, 0).Err(); err != nil {
			t.Fatal(err)
		}
		refused(t, c, b, "Save", func() error { return b.Save(ctx, pair("b3")) })
		unlockB()
		if err := b.Save(ctx, pair("b4")); err != nil {
			t.Fatalf("Save after unlock: %v", err)
		}
		if got := loadState(t, c, b); got != "b4@10" {
			t.Errorf("state = %s; want b4@10", got)
		}
	})

	t.Run("two acquisitions of one Store value", func(t *testing.T) {
		c, s := setup(t)
		if err := s.Save(ctx, pair("a1")); err != nil {
			t.Fatal(err)
		}
		unlockFirst := lockAndLoad(t, s)
		loseLease(t, c, s)
		unlockSecond, err := s.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer unlockSecond()
		// The second acquisition has read nothing yet: its first write
		// is unconditional, whatever the first one knew.
		if err := c.Set(ctx, s.Key(), `{"accessToken":"x","version":5}`, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, pair("b")); err != nil {
			t.Fatalf("first Save of the second acquisition: %v", err)
		}
		unlockFirst() // must not drop the second acquisition's fence
		if err := c.Set(ctx, s.Key(), `{"accessToken":"y","version":7}`, 0).Err(); err != nil {
			t.Fatal(err)
		}
		refused(t, c, s, "Clear", func() error { return s.Clear(ctx) })
	})
}

// TestFenceLoadDoesNotRearm checks that a holder whose lease ran out cannot
// read its way past the fence: a Load that finds another writer's pair does
// not make that pair the holder's.
func TestFenceLoadDoesNotRearm(t *testing.T) {
	ctx := context.Background()
	c, late := setup(t)
	replica := redisstore.New(newClient(t), late.Key())
	if err := late.Save(ctx, pair("a1")); err != nil {
		t.Fatal(err)
	}
	lockAndLoad(t, late)
	loseLease(t, c, late)
	lockAndLoad(t, replica)
	if err := replica.Save(ctx, pair("new")); err != nil {
		t.Fatal(err)
	}
	if got, err := late.Load(ctx); err != nil || got.AccessToken != "new" {
		t.Fatalf("Load of the late holder = %q, %v; want new", got.AccessToken, err)
	}
	refused(t, c, late, "Save", func() error { return late.Save(ctx, pair("late")) })
}

// TestFenceMissingKey checks that a fenced write may replace a missing key
// (its pair was lost, not replaced by anyone), and that a holder that found
// the key missing cannot overwrite a pair another holder saved since.
func TestFenceMissingKey(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct{ op, want string }{{"Save", "late@1"}, {"Clear", "tombstone@1"}} {
		t.Run("vanished/"+tt.op, func(t *testing.T) {
			c, s := setup(t)
			if err := s.Save(ctx, pair("a1")); err != nil {
				t.Fatal(err)
			}
			lockAndLoad(t, s)
			c.Del(ctx, s.Key()) // FLUSHALL, eviction, a restart
			if err := fencedOps(s)[tt.op](); err != nil {
				t.Fatalf("%s over a key that vanished: %v", tt.op, err)
			}
			if got := loadState(t, c, s); got != tt.want {
				t.Errorf("state = %s; want %s", got, tt.want)
			}
		})
	}

	t.Run("saved since", func(t *testing.T) {
		c, late := setup(t)
		replica := redisstore.New(newClient(t), late.Key())
		lockAndLoad(t, late) // loads a missing key
		loseLease(t, c, late)
		lockAndLoad(t, replica)
		if err := replica.Save(ctx, pair("new")); err != nil {
			t.Fatal(err)
		}
		refused(t, c, late, "Save", func() error { return late.Save(ctx, pair("late")) })
		if got := loadState(t, c, late); got != "new@1" {
			t.Errorf("state = %s; want new@1", got)
		}
	})
}

// TestFencedWritesRace runs, round after round, Saves and Clears at once by
// several holders that all read the same pair under a lock whose lease then
// ran out, each with its own client: the compare and the write are one
// step, so exactly one of them writes and the others are refused.
func TestFencedWritesRace(t *testing.T) {
	const holders, rounds = 6, 4
	ctx := context.Background()
	c, base := setup(t)
	for round := range rounds {
		if err := base.Save(ctx, pair("base")); err != nil {
			t.Fatal(err)
		}
		version := 2*round + 1
		stores := make([]*redisstore.Store, holders)
		unlocks := make([]func(), holders)
		for i := range stores {
			stores[i] = redisstore.New(newClient(t), base.Key())
			unlocks[i] = lockAndLoad(t, stores[i])
			loseLease(t, c, stores[i])
		}
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			wins   atomic.Int32
			winner atomic.Int32
		)
		for i, s := range stores {
			wg.Go(func() {
				<-start
				var err error
				if i%2 == 0 {
					err = s.Save(ctx, pair(fmt.Sprint("h", i)))
				} else {
					err = s.Clear(ctx)
				}
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(int32(i))
				case !errors.Is(err, autorefresh.ErrLockLost):
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		for _, unlock := range unlocks {
			unlock()
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d fenced writes succeeded; want 1", round, n)
		}
		want := fmt.Sprint("h", winner.Load(), "@", version+1)
		if winner.Load()%2 == 1 {
			want = fmt.Sprint("tombstone@", version+1)
		}
		if got := loadState(t, c, base); got != want {
			t.Errorf("round %d: state = %s; want %s, the winner's", round, got, want)
		}
	}
}

// TestFenceRetryAfterLostReply checks that a fenced write whose reply was
// lost although Redis did it can be made again: the holder accepts the
// value its own write may have left, as well as the one before. Other
// writers are still fenced off.
func TestFenceRetryAfterLostReply(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct{ op, done, again string }{
		{"Save", "late@2", "late@3"},
		{"Clear", "tombstone@2", "tombstone@2"},
	} {
		t.Run(tt.op, func(t *testing.T) {
			ctrl := newClient(t)
			key := uniqueKey(t, ctrl)
			p := newHangProxy(t)
			p.resume()
			c := hangClient(t, p)
			s := redisstore.New(c, key, redisstore.WithSaveTimeout(100*time.Millisecond))
			if err := redisstore.New(ctrl, key).Save(ctx, pair("a1")); err != nil {
				t.Fatal(err)
			}
			lockAndLoad(t, s)

			p.mute() // Redis does the write, the holder never hears of it
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			op := fencedOps(s)[tt.op]
			if tt.op == "Clear" {
				op = func() error { return s.Clear(short) }
			}
			if err := op(); err == nil || errors.Is(err, autorefresh.ErrLockLost) {
				t.Fatalf("%s whose reply was dropped: %v; want a timeout", tt.op, err)
			}
			waitFor(t, 5*time.Second, "the write to be done", func() bool { return loadState(t, ctrl, s) == tt.done })

			p.resume()
			waitFor(t, 5*time.Second, "the client to reach Redis again", func() bool { return c.Ping(ctx).Err() == nil })
			if err := fencedOps(s)[tt.op](); err != nil {
				t.Fatalf("%s again after its reply was lost: %v; want it to go through", tt.op, err)
			}
			if got := loadState(t, ctrl, s); got != tt.again {
				t.Errorf("state = %s; want %s", got, tt.again)
			}
			if err := ctrl.Set(ctx, key, `{"accessToken":"x","version":9}`, 0).Err(); err != nil {
				t.Fatal(err)
			}
			refused(t, ctrl, s, other(tt.op), fencedOps(s)[other(tt.op)])
		})
	}
}

// TestTransportLateHolderAdoptsNewerPair runs issue 12 item 3 through
// Transports: replica A takes the lock and calls the refresh endpoint, which
// answers only after A's lease ran out and replica B refreshed and saved.
// A's save is refused, and A uses B's pair instead of overwriting it.
func TestTransportLateHolderAdoptsNewerPair(t *testing.T) {
	ctx := context.Background()
	ctrl := newClient(t)
	key := uniqueKey(t, ctrl)
	expired := autorefresh.Tokens{AccessToken: "a0", RefreshToken: "r0", Expiry: time.Now().Add(-time.Minute)}
	if err := redisstore.New(ctrl, key).Save(ctx, expired); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	issued := func(a string) autorefresh.Tokens {
		return autorefresh.Tokens{AccessToken: a, RefreshToken: "r-" + a, Expiry: time.Now().Add(time.Hour)}
	}

	entered, release := make(chan struct{}), make(chan struct{})
	var adopted atomic.Bool
	a := &autorefresh.Transport{
		Store: redisstore.New(newClient(t), key),
		Refresher: autorefresh.RefreshFunc(func(context.Context, autorefresh.Tokens) (autorefresh.Tokens, error) {
			close(entered)
			<-release
			return issued("late"), nil
		}),
		EarlyRefresh: -1,
		OnRefresh:    func(ev autorefresh.RefreshEvent) { adopted.Store(ev.Adopted) },
	}
	b := &autorefresh.Transport{
		Store: redisstore.New(newClient(t), key),
		Refresher: autorefresh.RefreshFunc(func(context.Context, autorefresh.Tokens) (autorefresh.Tokens, error) {
			return issued("b"), nil
		}),
		EarlyRefresh: -1,
	}
	get := func(tr *autorefresh.Transport) error {
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	done := make(chan error, 1)
	go func() { done <- get(a) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("replica A did not refresh")
	}
	// A holds the lock and has read the store; its lease runs out.
	if err := ctrl.Del(ctx, key+":lock").Err(); err != nil {
		t.Fatal(err)
	}
	if err := get(b); err != nil {
		t.Fatal(err)
	}
	if got := loadState(t, ctrl, a.Store.(*redisstore.Store)); got != "b@2" {
		t.Fatalf("state after B's refresh = %s; want b@2", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("A's request: %v", err)
	}
	if got := loadState(t, ctrl, a.Store.(*redisstore.Store)); got != "b@2" {
		t.Errorf("state after A's late refresh = %s; want b@2, B's pair", got)
	}
	if tok, err := a.Tokens(ctx); err != nil || tok.AccessToken != "b" {
		t.Errorf("A's tokens = %q, %v; want B's pair", tok.AccessToken, err)
	}
	if !adopted.Load() {
		t.Error("A's refresh event does not say it adopted the stored pair")
	}
}
