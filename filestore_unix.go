//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// crossProcessLock reports whether Lock excludes other processes.
const crossProcessLock = true

// openNoFollow opens path for reading, failing if it is a symbolic link.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%w: it is a symbolic link", ErrUnsafeFile)
	}
	return f, err
}

// checkPrivate makes sure that only the owner can use the token file f:
// it refuses a file that group or others may write (its tokens could have
// been planted) and takes away the read permission of group and others.
func checkPrivate(f *os.File, fi fs.FileInfo) error {
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 {
		return fmt.Errorf("%w: mode %#o lets other users write it (want 0600; run chmod 600 on it)", ErrUnsafeFile, perm)
	}
	if perm&0o044 != 0 {
		if err := f.Chmod(perm &^ 0o077); err != nil {
			return fmt.Errorf("%w: mode %#o lets other users read it, and it could not be changed to 0600: %w", ErrUnsafeFile, perm, err)
		}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Backoff of the waits for a busy flock.
const (
	minLockBackoff = 500 * time.Microsecond
	maxLockBackoff = 20 * time.Millisecond
)

// lockFile takes an exclusive flock on path, creating it with mode 0600 when
// missing, and polls with a growing, jittered backoff until it is free or
// ctx is done. The lock is released, and the file closed, by release.
func lockFile(ctx context.Context, path string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%w: lock file is a symbolic link", ErrUnsafeFile)
	}
	if err != nil {
		return nil, err
	}
	release = func() {
		flock(f, syscall.LOCK_UN)
		f.Close()
	}
	var timer *time.Timer
	backoff := minLockBackoff
	for {
		err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if timer != nil {
				timer.Stop()
			}
			return release, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		d := backoff/2 + rand.N(backoff/2+1)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-timer.C:
		}
		backoff = min(2*backoff, maxLockBackoff)
	}
}

// flock calls flock(2) on f, retrying when interrupted by a signal.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if ferr != nil {
		return os.NewSyscallError("flock", ferr)
	}
	return nil
}
