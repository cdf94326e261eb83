package redisstore

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// releaseScript deletes the lock only when it still holds the caller's owner
// value, so a holder whose lease ran out cannot release the lock of the
// holder that came after it.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// renewScript extends the lease only when the lock still holds the caller's
// owner value.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// maxReleaseWait bounds how long a release waits for Redis to confirm it. If
// Redis does not answer, the lock still ends when its lease runs out.
const maxReleaseWait = 5 * time.Second

// Lock takes the store's Redis lock, waiting while another holder (in this
// process or any other) has it, until ctx is done. It implements
// autorefresh.Locker.
//
// The lock is the key LockKey set with SET NX PX to a random owner value that
// lives for the lease (WithLease). While it is held, a goroutine renews the
// lease every third of it. The returned unlock stops that goroutine and
// deletes the key only if it still holds this owner value; unlock must be
// called exactly once, and later calls do nothing. Errors of the release are
// not reported: a lock that could not be deleted ends when its lease runs
// out.
//
// From Lock to unlock, the Save and Clear of this Store value are fenced:
// once it read or wrote the key, they write only if no other writer changed
// it since, and otherwise return an error wrapping autorefresh.ErrLockLost.
// See "Fencing" in the package doc.
//
// unlock waits for the release until Redis confirms it or ctx is done,
// whichever comes first; in the latter case the release goes on in the
// background, and gives up after the lease or 5 seconds, whichever is
// shorter. So when ctx has a deadline, neither Lock nor unlock waits for a
// hanging Redis past it, provided the client honours deadlines (see the
// package doc on redis.Options.ContextTimeoutEnabled). With a done ctx, the
// lock may still be held for a moment after unlock returns.
//
// When ctx ends first, Lock returns an error that wraps ctx.Err(). It returns
// other errors when Redis cannot be reached (among them the client's timeout
// errors when ctx's deadline passes during a command); then nobody can
// coordinate, and the caller should not refresh. A command that failed may
// still have taken the lock in Redis: Lock then deletes it in the
// background, bounded like the release.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	owner := crand.Text()
	if err := s.acquire(ctx, owner); err != nil {
		return nil, err
	}
	f := new(fence)
	s.register(f)
	return s.hold(ctx, owner, f), nil
}

// acquire sets the lock key to owner, polling with jittered exponential
// backoff while it is taken.
func (s *Store) acquire(ctx context.Context, owner string) error {
	wait := s.minRetry
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("autorefresh: redisstore: lock %q: %w", s.lockKey, err)
		}
		ok, err := s.client.SetNX(ctx, s.lockKey, owner, s.lease).Result()
		if err != nil {
			// The SET may have reached Redis though its reply did not
			// come back: do not leave the lock held until the lease ends.
			// The release runs in the background, bounded by its own
			// timeout, so that Lock returns at the caller's deadline
			// when Redis hangs.
			go s.release(context.WithoutCancel(ctx), owner)
			return fmt.Errorf("autorefresh: redisstore: lock %q: %w", s.lockKey, err)
		}
		if ok {
			return nil
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("autorefresh: redisstore: lock %q: %w", s.lockKey, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, s.maxRetry)
	}
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(d-half+1)
}

// hold starts the renewal of owner's lease and returns the function that
// drops the fence f, stops the renewal and releases the lock.
func (s *Store) hold(ctx context.Context, owner string, f *fence) (unlock func()) {
	// The lock outlives the call to Lock: renewal and release must not
	// end with ctx, but they keep its values (tracing, for example).
	base := context.WithoutCancel(ctx)
	renewCtx, stop := context.WithCancel(base)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.renew(renewCtx, owner)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.unregister(f)
			stop()
			released := make(chan struct{})
			go func() {
				defer close(released)
				<-done
				s.release(base, owner)
			}()
			// Wait for the release, but not past ctx: when Redis hangs
			// the caller's deadline holds, and the release goes on in
			// the background until its own timeout.
			select {
			case <-released:
			case <-ctx.Done():
			}
		})
	}
}

// renew extends owner's lease every third of it until ctx is done or the
// lock is found to belong to someone else. A failed renewal (Redis
// unreachable) is tried again at the next tick.
func (s *Store) renew(ctx context.Context, owner string) {
	every := s.lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		n, err := renewScript.Run(rctx, s.client, []string{s.lockKey}, owner, s.lease.Milliseconds()).Int64()
		cancel()
		if err == nil && n == 0 {
			// The lease ran out before this renewal and the key is
			// gone or another holder's. Nothing is left to renew.
			return
		}
	}
}

// release deletes the lock key if it still holds owner.
func (s *Store) release(ctx context.Context, owner string) {
	ctx, cancel := context.WithTimeout(ctx, min(s.lease, maxReleaseWait))
	defer cancel()
	_ = releaseScript.Run(ctx, s.client, []string{s.lockKey}, owner).Err()
}
