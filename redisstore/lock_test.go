package redisstore_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// fastRetry makes waiters poll often, so that contended tests stay quick.
var fastRetry = redisstore.WithRetryInterval(time.Millisecond, 10*time.Millisecond)

func TestLockMutualExclusion(t *testing.T) {
	tests := []struct {
		name                     string
		clients, storesPerClient int
		goroutinesPerStore       int
	}{
		{"goroutines sharing one store", 1, 1, 24},
		{"independent clients and stores", 4, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const iterations = 8
			ctrl := newClient(t)
			key := uniqueKey(t, ctrl)
			counterKey := key + ":counter"

			var stores []*redisstore.Store
			for range tt.clients {
				c := newClient(t)
				for range tt.storesPerClient {
					stores = append(stores, redisstore.New(c, key, fastRetry))
				}
			}

			var inside, maxInside atomic.Int32
			var wg sync.WaitGroup
			errc := make(chan error, len(stores)*tt.goroutinesPerStore)
			for _, s := range stores {
				for range tt.goroutinesPerStore {
					wg.Go(func() {
						ctx := context.Background()
						for range iterations {
							unlock, err := s.Lock(ctx)
							if err != nil {
								errc <- err
								return
							}
							n := inside.Add(1)
							for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
							}
							// A read-modify-write through Redis that
							// loses increments unless the lock excludes.
							v, _ := ctrl.Get(ctx, counterKey).Int()
							runtime.Gosched()
							ctrl.Set(ctx, counterKey, v+1, 0)
							inside.Add(-1)
							unlock()
						}
					})
				}
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Errorf("Lock: %v", err)
			}
			want := len(stores) * tt.goroutinesPerStore * iterations
			if got, _ := ctrl.Get(context.Background(), counterKey).Int(); got != want {
				t.Errorf("counter = %d; want %d (increments lost under the lock)", got, want)
			}
			if got := maxInside.Load(); got != 1 {
				t.Errorf("most holders at once = %d; want 1", got)
			}
			if n := ctrl.Exists(context.Background(), stores[0].LockKey()).Val(); n != 0 {
				t.Errorf("lock key exists after all unlocks (EXISTS = %d); want 0", n)
			}
		})
	}
}

func TestLockContextWhileWaiting(t *testing.T) {
	c, a := setup(t)
	b := redisstore.New(newClient(t), a.Key())
	unlockA, err := a.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	owner := c.Get(context.Background(), a.LockKey()).Val()

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		unlock, err := b.Lock(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock while held: err = %v; want context.DeadlineExceeded", err)
		}
		if unlock != nil {
			t.Error("Lock returned an unlock function with an error")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		if _, err := b.Lock(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Lock while held: err = %v; want context.Canceled", err)
		}
	})
	if got := c.Get(context.Background(), a.LockKey()).Val(); got != owner {
		t.Error("a waiter that gave up changed the holder's lock")
	}

	unlockA()
	t.Run("already canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Lock(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Lock with canceled ctx: err = %v; want context.Canceled", err)
		}
		if n := c.Exists(context.Background(), a.LockKey()).Val(); n != 0 {
			t.Errorf("EXISTS lock after canceled Lock = %d; want 0", n)
		}
	})
	unlockB, err := b.Lock(context.Background())
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	unlockB()
}

func TestUnlockOnlyReleasesOwnLock(t *testing.T) {
	ctx := context.Background()
	c, a := setup(t)
	b := redisstore.New(newClient(t), a.Key())

	unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A's lease runs out (simulated by deleting the key) and B takes the
	// lock. A's late unlock must leave B's lock alone.
	c.Del(ctx, a.LockKey())
	unlockB, err := b.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ownerB := c.Get(ctx, a.LockKey()).Val()
	unlockA()
	unlockA() // a second call does nothing
	if got := c.Get(ctx, a.LockKey()).Val(); got != ownerB || got == "" {
		t.Fatalf("after A's unlock the lock is %q; want B's owner value (A released B's lock)", got)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := a.Lock(waitCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock while B holds it: err = %v; want context.DeadlineExceeded", err)
	}
	unlockB()
	if n := c.Exists(ctx, a.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after B's unlock = %d; want 0", n)
	}
}

func TestRenewalKeepsLongHolder(t *testing.T) {
	const lease = 300 * time.Millisecond
	ctx := context.Background()
	c, a := setup(t, redisstore.WithLease(lease))
	b := redisstore.New(newClient(t), a.Key(), redisstore.WithLease(lease))

	unlock, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owner := c.Get(ctx, a.LockKey()).Val()
	// Without renewal the lock would end after one lease and B would get
	// it; B waits five.
	waitCtx, cancel := context.WithTimeout(ctx, 5*lease)
	defer cancel()
	if unlockB, err := b.Lock(waitCtx); err == nil {
		unlockB()
		t.Fatalf("B took the lock while A held it for 5 leases: renewal did not keep it")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B's Lock: err = %v; want context.DeadlineExceeded", err)
	}
	if got := c.Get(ctx, a.LockKey()).Val(); got != owner {
		t.Errorf("lock owner changed while A held it")
	}
	if got := c.PTTL(ctx, a.LockKey()).Val(); got <= 0 || got > lease {
		t.Errorf("lock PTTL = %v; want in (0, %v]", got, lease)
	}
	unlock()
	if n := c.Exists(ctx, a.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after unlock = %d; want 0", n)
	}
}

func TestUnlockStopsRenewal(t *testing.T) {
	const cycles = 20
	ctx := context.Background()
	c, s := setup(t, redisstore.WithLease(30*time.Millisecond))
	if err := c.Ping(ctx).Err(); err != nil { // start the pool's goroutines
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range cycles {
		unlock, err := s.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond) // let a renewal or two run
		unlock()
	}
	// Goroutines end asynchronously elsewhere (timers, the pool); give
	// them a moment, but renewal goroutines left running would stay.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines after %d lock/unlock cycles = %d; want about %d (renewal goroutines leak)", cycles, after, before)
	}
	if n := c.Exists(ctx, s.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after unlock = %d; want 0", n)
	}
}

func TestDeadHolderBlocksAtMostOneLease(t *testing.T) {
	const lease = 200 * time.Millisecond
	ctx := context.Background()
	ctrl := newClient(t)
	key := uniqueKey(t, ctrl)

	// The dying replica has its own client; closing it cuts it off from
	// Redis, so its renewals fail and it never releases.
	dying := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	a := redisstore.New(dying, key, redisstore.WithLease(lease))
	unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlockA)
	dying.Close()
	if got := ctrl.PTTL(ctx, a.LockKey()).Val(); got <= 0 || got > lease {
		t.Fatalf("dead holder's lock PTTL = %v; want in (0, %v]", got, lease)
	}

	b := redisstore.New(newClient(t), key, redisstore.WithLease(lease))
	// The bound is generous so that a loaded machine does not fail the
	// test; a lock that is still renewed, or never expires, does.
	waitCtx, cancel := context.WithTimeout(ctx, lease+3*time.Second)
	defer cancel()
	start := time.Now()
	unlockB, err := b.Lock(waitCtx)
	if err != nil {
		t.Fatalf("Lock after the holder died: %v; want the lock once the lease (%v) ran out", err, lease)
	}
	t.Logf("waited %v for a dead holder's lock (lease %v)", time.Since(start).Round(time.Millisecond), lease)
	unlockB()
}

func TestLockKeyOption(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	key := uniqueKey(t, c)
	s := redisstore.New(c, key, redisstore.WithLockKey(key+":custom"))
	if got, want := s.LockKey(), key+":custom"; got != want {
		t.Errorf("LockKey() = %q; want %q", got, want)
	}
	if got, want := redisstore.New(c, key).LockKey(), key+":lock"; got != want {
		t.Errorf("default LockKey() = %q; want %q", got, want)
	}
	unlock, err := s.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if n := c.Exists(ctx, key+":custom").Val(); n != 1 {
		t.Errorf("EXISTS %s:custom while locked = %d; want 1", key, n)
	}
}
