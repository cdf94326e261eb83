//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package autorefresh

import (
	"context"
	"io/fs"
	"os"
)

// crossProcessLock reports whether Lock excludes other processes. Here it
// does not: Lock takes only the in-process lock.
const crossProcessLock = false

// openNoFollow opens path for reading. Without O_NOFOLLOW the Lstat done
// before it is the only check that path is not a symbolic link.
func openNoFollow(path string) (*os.File, error) {
	return os.Open(path)
}

// checkPrivate accepts any permissions: outside Unix the permission bits do
// not describe who may read the file.
func checkPrivate(*os.File, fs.FileInfo) error { return nil }

// syncDir does nothing: directories cannot be synced portably here.
func syncDir(string) error { return nil }

// lockFile takes no file lock: there is no flock in the syscall package
// here, so FileStore.Lock only excludes callers in the same process.
func lockFile(context.Context, string) (release func(), err error) {
	return func() {}, nil
}
