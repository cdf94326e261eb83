package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// linkedPath returns path reached through a symbolic link to its directory,
// so that it names the same file by another absolute path. The in-process
// lock, keyed by path, then does not apply and only the file lock excludes.
func linkedPath(t *testing.T, path string) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(filepath.Dir(path), link); err != nil {
		cannotRun(t, "cannot create symbolic links: %v", err)
	}
	return filepath.Join(link, filepath.Base(path))
}

// TestFileStoreLockExcludes runs read-modify-write cycles of a counter in
// the token file under Lock from many goroutines through several FileStore
// values, and checks that holders never overlap and no update is lost.
func TestFileStoreLockExcludes(t *testing.T) {
	path := tokenPath(t)
	paths := map[string]string{"same path": path}
	if crossProcessLock {
		paths["other path to the same file"] = linkedPath(t, path)
	}
	for name, other := range paths {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			stores := []*FileStore{NewFileStore(path), NewFileStore(other)}
			if err := stores[0].Save(ctx, Tokens{AccessToken: "0"}); err != nil {
				t.Fatal(err)
			}
			const goroutines, rounds = 8, 10
			var (
				inside, maxInside atomic.Int32
				wg                sync.WaitGroup
			)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := stores[g%2]
					for range rounds {
						unlock, err := s.Lock(ctx)
						if err != nil {
							t.Error(err)
							return
						}
						n := inside.Add(1)
						if n > maxInside.Load() {
							maxInside.Store(n)
						}
						tok, err := s.Load(ctx)
						if err == nil {
							var v int
							fmt.Sscan(tok.AccessToken, &v)
							runtime.Gosched()
							err = s.Save(ctx, Tokens{AccessToken: fmt.Sprint(v + 1)})
						}
						inside.Add(-1)
						unlock()
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if got := maxInside.Load(); got != 1 {
				t.Errorf("at most %d holders at once; want 1", got)
			}
			tok, err := stores[1].Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(goroutines * rounds); tok.AccessToken != want {
				t.Errorf("counter = %s; want %s (updates were lost)", tok.AccessToken, want)
			}
		})
	}
}

// lockWaitCanceled starts s.Lock, cancels its context and reports the error
// Lock returned. It fails the test if Lock took the lock.
func lockWaitCanceled(t *testing.T, s *FileStore) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		unlock, err := s.Lock(ctx)
		if err == nil {
			unlock()
		}
		errc <- err
	}()
	cancel()
	err := <-errc
	if err == nil {
		t.Errorf("Lock took a lock that is held")
	}
	return err
}

func TestFileStoreLockContext(t *testing.T) {
	path := tokenPath(t)
	holder := NewFileStore(path)
	waiters := []*FileStore{holder, NewFileStore(path)}
	if crossProcessLock {
		waiters = append(waiters, NewFileStore(linkedPath(t, path)))
	}

	if _, err := holder.Lock(canceledContext()); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a canceled context: error = %v; want context.Canceled", err)
	}
	unlock, err := holder.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range waiters {
		for range 10 {
			if err := lockWaitCanceled(t, w); !errors.Is(err, context.Canceled) {
				t.Errorf("waiter %d: error = %v; want context.Canceled", i, err)
			}
		}
	}
	unlock()
	for i, w := range waiters {
		unlock, err := w.Lock(context.Background())
		if err != nil {
			t.Fatalf("waiter %d: Lock after release: %v", i, err)
		}
		unlock()
	}
}

func canceledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestFileStoreUnlockTwice checks that a second call of an unlock function
// does not release a lock that someone else took in between.
func TestFileStoreUnlockTwice(t *testing.T) {
	path := tokenPath(t)
	a, b, c := NewFileStore(path), NewFileStore(path), NewFileStore(path)
	if crossProcessLock {
		c = NewFileStore(linkedPath(t, path))
	}
	for range 10 {
		unlockA, err := a.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		unlockA()
		unlockB, err := b.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		unlockA()
		if err := lockWaitCanceled(t, c); !errors.Is(err, context.Canceled) {
			t.Errorf("Lock after a double unlock: error = %v; want context.Canceled", err)
		}
		unlockB()
		unlockB()
	}
}

// TestFileStoreLockNoLeak checks that waits that end by cancellation leave
// no open file and no in-process lock behind.
func TestFileStoreLockNoLeak(t *testing.T) {
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			cannotRun(t, "cannot count open files: %v", err)
		}
		return len(entries)
	}
	path := tokenPath(t)
	s := NewFileStore(path)
	before := fds()
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		lockWaitCanceled(t, NewFileStore(path))
	}
	unlock()
	for range 50 {
		unlock, err := s.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		unlock()
	}
	if after := fds(); after != before {
		t.Errorf("open files = %d after the locks; want %d as before", after, before)
	}
	localLocks.mu.Lock()
	n := len(localLocks.m)
	localLocks.mu.Unlock()
	if n != 0 {
		t.Errorf("%d in-process locks left; want 0", n)
	}
}
