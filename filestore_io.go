package autorefresh

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// This file reads, writes and removes token files so that a crash never
// leaves a torn file and a planted link or file is never followed.

// readTokenFile returns the content of the token file at path, or an error
// wrapping ErrNoTokens when there is none, ErrUnsafeFile when it is refused
// and ErrCorruptFile when it is larger than maxTokenFileSize.
func readTokenFile(path string) ([]byte, error) {
	data, err := readPrivateFile(path, maxTokenFileSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrNoTokens // none, or removed since it was checked
	case errors.Is(err, errFileTooLarge):
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorruptFile, maxTokenFileSize)
	}
	return data, err
}

// errFileTooLarge is the error of readPrivateFile for a file larger than
// its limit.
var errFileTooLarge = errors.New("autorefresh: file too large")

// readPrivateFile returns the content of the file at path, of at most
// limit bytes, or an error wrapping fs.ErrNotExist when there is none,
// ErrUnsafeFile when it is a link, not a regular file or not private, and
// errFileTooLarge when it holds more than limit bytes. What it read before
// an error is cleared: the file holds secrets.
func readPrivateFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := checkFileType(fi); err != nil {
		return nil, err
	}
	// openNoFollow and the checks on the open file close the gap between
	// Lstat and open.
	f, err := openNoFollow(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkFileType(fi); err != nil {
		return nil, err
	}
	if err := checkPrivate(f, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = errFileTooLarge
	}
	if err != nil {
		clear(data)
		return nil, err
	}
	return data, nil
}

// checkFileType refuses anything but a regular file.
func checkFileType(fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: it is a symbolic link", ErrUnsafeFile)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: it is not a regular file", ErrUnsafeFile)
	}
	return nil
}

// writeTokenFile replaces the file at path by one holding t at version
// prev+1, which it returns.
func writeTokenFile(path string, t Tokens, prev uint64) (version uint64, err error) {
	if prev >= maxVersion {
		return 0, errVersionOverflow
	}
	data, err := encodeTokenFile(t, prev+1)
	if err != nil {
		return 0, err
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if err := checkFileType(fi); err != nil {
			return 0, err
		}
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*") // mode 0600
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return prev + 1, syncDir(dir)
}

// removeTokenFile removes the token file at path, if any, and the temporary
// files left beside it.
func removeTokenFile(path string) error {
	fi, err := os.Lstat(path)
	if err == nil {
		err = checkFileType(fi)
	}
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return removeTempFiles(path)
}

// removeTempFiles removes the temporary files that writeTokenFile made for
// path and did not rename, skipping those that vanish meanwhile. It returns
// the first error after trying them all.
func removeTempFiles(path string) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var first error
	for _, e := range entries {
		if !isTempName(e.Name(), name) || !e.Type().IsRegular() {
			continue
		}
		// os.Remove does not follow a symbolic link put in the file's
		// place since ReadDir: it removes the link.
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// isTempName reports whether file is the name of a temporary file that
// writeTokenFile makes for the token file name: os.CreateTemp replaces the
// "*" of the pattern ".<name>.tmp*" by decimal digits.
func isTempName(file, name string) bool {
	digits, ok := strings.CutPrefix(file, "."+name+".tmp")
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
