package autorefresh

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
)

// Lock implements Locker. It blocks until this caller holds the lock of the
// token file or ctx is done, and returns ctx.Err() in the latter case.
// Calling the returned unlock function more than once is harmless.
//
// On Linux, macOS and the BSDs the lock is an advisory flock(2) on the file
// "<path>.lock" beside the token file (created with mode 0600 and never
// removed, since removing a lock file races with its next user). It excludes
// other processes that lock the same file, and other FileStore values in
// this process whatever path they use to reach it. Waiters poll for the
// lock with a short backoff. Locks held by a process that dies are released
// by the system. On network file systems flock may be local to one machine.
//
// On other systems (Windows, Plan 9, Solaris, AIX, ...) Lock only excludes
// FileStore values in the same process that use the same path; processes
// sharing a token file there are not coordinated, and rotating refresh
// tokens may then be used twice.
//
// Within one process Lock also serializes callers through an in-process
// lock keyed by the absolute path, so goroutines wait without polling.
func (s *FileStore) Lock(ctx context.Context) (unlock func(), err error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lockPath := s.path + ".lock"
	releaseLocal, err := lockLocal(ctx, lockPath)
	if err != nil {
		return nil, err
	}
	releaseFile, err := lockFile(ctx, lockPath)
	if err != nil {
		releaseLocal()
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, fileError("lock", lockPath, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			releaseFile()
			releaseLocal()
		})
	}, nil
}

// localLocks holds the in-process locks of Lock, one per lock file, for as
// long as someone holds or waits for them.
var localLocks struct {
	mu sync.Mutex // guards m
	m  map[string]*localLock
}

type localLock struct {
	held chan struct{} // holds one value while locked
	refs int           // holders and waiters; guarded by localLocks.mu
}

// lockLocal takes the in-process lock for path, waiting until it is free or
// ctx is done.
func lockLocal(ctx context.Context, path string) (release func(), err error) {
	key, err := filepath.Abs(path)
	if err != nil {
		key = path
	}
	localLocks.mu.Lock()
	if localLocks.m == nil {
		localLocks.m = make(map[string]*localLock)
	}
	l := localLocks.m[key]
	if l == nil {
		l = &localLock{held: make(chan struct{}, 1)}
		localLocks.m[key] = l
	}
	l.refs++
	localLocks.mu.Unlock()

	done := func() {
		localLocks.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(localLocks.m, key)
		}
		localLocks.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
