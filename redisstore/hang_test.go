package redisstore_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// hangProxy is a loopback TCP server in front of a Redis. While it hangs
// it accepts connections and reads commands but never answers; otherwise it
// forwards them. While it is muted, it forwards commands but drops Redis's
// replies: a command is done but its caller never learns it.
type hangProxy struct {
	ln       net.Listener
	upstream string
	hung     atomic.Bool
	muted    atomic.Bool
	wg       sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  []net.Conn
	closed bool
}

// newHangProxy starts a hangProxy in front of the test Redis, hanging from
// the start. It is closed when the test ends.
func newHangProxy(t *testing.T) *hangProxy {
	t.Helper()
	upstream := redisAddr(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{ln: ln, upstream: upstream}
	p.hung.Store(true)
	p.wg.Go(p.serve)
	t.Cleanup(p.Close)
	return p
}

func (p *hangProxy) Addr() string { return p.ln.Addr().String() }

// hang makes the proxy stop answering, on its connections and on new ones.
func (p *hangProxy) hang() { p.hung.Store(true) }

// mute makes the proxy drop Redis's replies, on its connections and on new
// ones, while it goes on forwarding commands.
func (p *hangProxy) mute() { p.muted.Store(true) }

// resume closes the connections that hang or are muted, so that their
// pending commands fail, and forwards new connections again, both ways.
func (p *hangProxy) resume() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.hung.Store(false)
	p.muted.Store(false)
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// track records c so that resume and Close close it, or closes it at once
// when p is closed already.
func (p *hangProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *hangProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		var up net.Conn
		if !p.hung.Load() {
			if up, err = net.Dial("tcp", p.upstream); err != nil || !p.track(up) {
				c.Close()
				continue
			}
		}
		p.wg.Go(func() { p.forward(up, c, false) })
		if up != nil {
			p.wg.Go(func() { p.forward(c, up, true) })
		}
	}
}

// forward copies src to dst until src fails, dropping everything while p
// hangs, and the replies of Redis (from upstream) while p is muted. A nil
// dst drops everything.
func (p *hangProxy) forward(dst, src net.Conn, fromUpstream bool) {
	defer src.Close()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !p.hung.Load() && !(fromUpstream && p.muted.Load()) {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the proxy and closes its connections.
func (p *hangProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// hangClient returns a client of p that respects context deadlines, closed
// when the test ends.
func hangClient(t *testing.T, p *hangProxy) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// storeGoroutines returns how many goroutines run code of this package's
// Store (renewal, release).
func storeGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "redisstore.(*Store).")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitStoreGoroutines fails t unless the goroutines of Store end within
// limit, which is generous: it catches goroutines that never end.
func waitStoreGoroutines(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for storeGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Store goroutines still running %v later; want them ended", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hangDeadline is the caller's deadline in the tests against a hanging
// Redis, and hangBound a generous bound of the time a call may take then:
// far above the deadline, far below the release timeout (5s) that a call
// waiting for Redis synchronously would take.
const (
	hangDeadline = 200 * time.Millisecond
	hangBound    = 2 * time.Second
)

// TestLockReturnsAtDeadlineWhenRedisHangs checks that Lock returns at the
// caller's deadline when Redis accepts connections but never answers, and
// leaves the clean-up of its lock attempt to a goroutine that ends.
func TestLockReturnsAtDeadlineWhenRedisHangs(t *testing.T) {
	ctrl := newClient(t)
	p := newHangProxy(t)
	s := redisstore.New(hangClient(t, p), uniqueKey(t, ctrl))

	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	start := time.Now()
	unlock, err := s.Lock(ctx)
	took := time.Since(start)
	if err == nil {
		unlock()
		t.Fatal("Lock against a Redis that never answers succeeded")
	}
	if took > hangBound {
		t.Errorf("Lock with a %v deadline took %v against a hanging Redis; want it to return at the deadline", hangDeadline, took)
	}
	if !strings.HasPrefix(err.Error(), "autorefresh: redisstore: lock ") {
		t.Errorf("Lock error = %q; want one naming the lock", err)
	}
	t.Logf("Lock with a %v deadline returned after %v: %v", hangDeadline, took.Round(time.Millisecond), err)

	// The clean-up (the release of a SET that may have reached Redis)
	// ends once Redis answers again.
	p.resume()
	waitStoreGoroutines(t, 5*time.Second)
	if n := ctrl.Exists(context.Background(), s.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after a failed Lock = %d; want 0", n)
	}
}

// TestLockCleanupEndsWhileRedisHangs checks that the background clean-up of
// a failed Lock gives up after its bounded wait while Redis keeps hanging.
func TestLockCleanupEndsWhileRedisHangs(t *testing.T) {
	const lease = 300 * time.Millisecond // bounds the release's wait
	ctrl := newClient(t)
	p := newHangProxy(t)
	s := redisstore.New(hangClient(t, p), uniqueKey(t, ctrl), redisstore.WithLease(lease))
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	if unlock, err := s.Lock(ctx); err == nil {
		unlock()
		t.Fatal("Lock against a Redis that never answers succeeded")
	}
	waitStoreGoroutines(t, 5*time.Second)
}

// TestUnlockReturnsAtDeadlineWhenRedisHangs checks that unlock does not wait
// for a hanging Redis past the deadline of the context given to Lock, and
// that its release goes on in the background and deletes the lock once
// Redis answers again.
func TestUnlockReturnsAtDeadlineWhenRedisHangs(t *testing.T) {
	ctrl := newClient(t)
	p := newHangProxy(t)
	p.resume()
	s := redisstore.New(hangClient(t, p), uniqueKey(t, ctrl))

	// With Redis answering, unlock releases before it returns.
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if n := ctrl.Exists(context.Background(), s.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after unlock = %d; want 0", n)
	}

	// Lock with a deadline, then Redis hangs.
	const deadline = hangBound / 4
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	unlock, err = s.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.hang()
	start := time.Now()
	unlock()
	if took := time.Since(start); took > hangBound {
		t.Errorf("unlock took %v against a hanging Redis; want it to return at the deadline of Lock's context (%v)", took, deadline)
	}
	if n := ctrl.Exists(context.Background(), s.LockKey()).Val(); n != 1 {
		t.Errorf("EXISTS lock while Redis hangs = %d; want 1 (the release cannot have reached it)", n)
	}
	p.resume()
	waitStoreGoroutines(t, 5*time.Second)
	if n := ctrl.Exists(context.Background(), s.LockKey()).Val(); n != 0 {
		t.Errorf("EXISTS lock after the background release = %d; want 0", n)
	}
}

// TestUnlockWithDoneContext checks that unlock releases the lock in the
// background when the context given to Lock is already done.
func TestUnlockWithDoneContext(t *testing.T) {
	c, s := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	unlock, err := s.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	unlock()
	waitStoreGoroutines(t, 5*time.Second)
	if n, err := c.Exists(context.Background(), s.LockKey()).Result(); err != nil || n != 0 {
		t.Errorf("EXISTS lock after unlock = %d, %v; want 0", n, err)
	}
}
