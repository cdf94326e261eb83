package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// maxTokenFileSize bounds the token files that FileStore reads.
const maxTokenFileSize = 1 << 20

var (
	// ErrCorruptFile is wrapped by the errors of FileStore.Load for a token
	// file that is empty, truncated, too large, not the JSON that FileStore
	// writes, or a JSON object that holds neither an access nor a refresh
	// token.
	ErrCorruptFile = fmt.Errorf("%w: token file is corrupt", ErrCorruptRecord)

	// ErrUnsafeFile is wrapped by the errors of FileStore for a token file
	// that it refuses to use: a symbolic link, something other than a
	// regular file, or (on Linux, macOS and the BSDs) a file that other
	// users may access.
	ErrUnsafeFile = errors.New("autorefresh: token file is unsafe")
)

// FileError reports a failed FileStore operation and the path of the token
// file. It never holds token values.
type FileError struct {
	Op   string // "load", "save", "clear" or "lock"
	Path string // the token file, or its lock file for Op "lock"
	Err  error  // for example ErrNoTokens, ErrCorruptFile, ErrUnsafeFile or an fs error
}

// Error describes e without token values.
func (e *FileError) Error() string {
	return "autorefresh: " + e.Op + " " + e.Path + ": " + strings.TrimPrefix(e.Err.Error(), "autorefresh: ")
}

// Unwrap returns e.Err.
func (e *FileError) Unwrap() error { return e.Err }

// fileError wraps err in a *FileError, dropping a *fs.PathError for path
// itself so that the path is not named twice.
func fileError(op, path string, err error) error {
	if pe, ok := err.(*fs.PathError); ok && pe.Path == path {
		err = pe.Err
	}
	return &FileError{Op: op, Path: path, Err: err}
}

// FileStore is a TokenStore that keeps tokens in a file, so that they survive
// restarts and can be shared by several processes. Create one with
// NewFileStore; the zero value has no path and is not usable.
//
// The file is indented JSON that a person can read:
//
//	{
//	  "accessToken": "eyJhbGciOi...",
//	  "refreshToken": "8xLOxBtZp8...",
//	  "expiry": "2026-05-04T10:20:30Z"
//	}
//
// Save writes a temporary file in the same directory with mode 0600, syncs
// it, renames it over the token file and syncs the directory, so readers and
// a crash see either the old file or the new one, never a torn one. A crash
// can leave a temporary file named ".<name>.tmp*" behind; it is never read,
// and Clear removes it with the token file, since it may hold tokens.
// Missing parent directories are created with mode 0700.
//
// FileStore refuses a token file that is a symbolic link or not a regular
// file: Load, Save and Clear return an error wrapping ErrUnsafeFile, so a
// link planted at the path can neither feed it tokens nor receive them. On
// Linux, macOS and the BSDs, Load also refuses a file that group or others
// may write (its tokens could have been planted; "chmod 600" fixes it), and
// takes the read permission of group and others away from a file that
// grants it. Save always writes a fresh file with mode 0600. Errors name the
// path and never hold token values.
//
// FileStore implements Locker; see Lock. It is safe for concurrent use by
// multiple goroutines, and several FileStore values and processes may share
// one file.
type FileStore struct {
	path string
}

// NewFileStore returns a FileStore that keeps tokens in the file at path. A
// relative path is resolved against the working directory at each call.
// Nothing is read or written until the first call.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path}
}

// tokenFile is the JSON form of a token file. It is kept apart from Tokens so
// that the format on disk does not change with that type.
type tokenFile struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Load returns the tokens in the file. It returns an error wrapping
// ErrNoTokens when the file does not exist, ErrCorruptFile when it cannot be
// parsed or holds neither an access nor a refresh token (a file with only
// one of them is valid), and ErrUnsafeFile when it is refused; every error
// is a *FileError naming the path.
//
// When the file holds an expiry, the returned Tokens has Expiry set even if
// the saved one left it to the JWT "exp" claim (see Save).
func (s *FileStore) Load(ctx context.Context) (Tokens, error) {
	data, err := readTokenFile(s.path)
	if err != nil {
		return Tokens{}, fileError("load", s.path, err)
	}
	t, err := decodeTokenFile(data)
	if err != nil {
		return Tokens{}, fileError("load", s.path, err)
	}
	return t, nil
}

func readTokenFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoTokens
	}
	if err != nil {
		return nil, err
	}
	if err := checkFileType(fi); err != nil {
		return nil, err
	}
	// openNoFollow and the checks on the open file close the gap between
	// Lstat and open.
	f, err := openNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoTokens // removed since Lstat
	}
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
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTokenFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorruptFile, maxTokenFileSize)
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

// decodeTokenFile parses a token file. Its errors wrap ErrCorruptFile and
// never quote the file's content, which would leak tokens.
func decodeTokenFile(data []byte) (Tokens, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Tokens{}, fmt.Errorf("%w: file is empty", ErrCorruptFile)
	}
	if trimmed[0] != '{' {
		return Tokens{}, fmt.Errorf("%w: not a JSON object", ErrCorruptFile)
	}
	var tf tokenFile
	if err := json.Unmarshal(data, &tf); err != nil {
		var (
			syntax  *json.SyntaxError
			typeErr *json.UnmarshalTypeError
		)
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.As(err, &syntax) && syntax.Offset >= int64(len(data)):
			return Tokens{}, fmt.Errorf("%w: truncated JSON", ErrCorruptFile)
		case errors.As(err, &syntax):
			return Tokens{}, fmt.Errorf("%w: invalid JSON at byte %d", ErrCorruptFile, syntax.Offset)
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return Tokens{}, fmt.Errorf("%w: field %q has the wrong type", ErrCorruptFile, typeErr.Field)
		default:
			// For example an expiry that is not an RFC 3339 time. The
			// message of err may quote the file, so it is not kept.
			return Tokens{}, fmt.Errorf("%w: invalid field value", ErrCorruptFile)
		}
	}
	t := Tokens{AccessToken: tf.AccessToken, RefreshToken: tf.RefreshToken, Expiry: tf.Expiry}
	if t.IsZero() {
		// Some other JSON file ("{}", settings, ...), not an empty store:
		// FileStore never writes one, as Clear removes the file.
		return Tokens{}, fmt.Errorf("%w: holds no accessToken or refreshToken", ErrCorruptFile)
	}
	return t, nil
}

// encodeTokenFile returns the content of a token file holding t. The expiry
// is recorded as t.ExpiresAt reports it, so that a person reading the file
// sees it even when it comes from the JWT.
func encodeTokenFile(t Tokens) ([]byte, error) {
	tf := tokenFile{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken}
	if exp := t.ExpiresAt(); !exp.IsZero() {
		tf.Expiry = exp.UTC()
	}
	data, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return nil, err // only for an expiry outside years 0-9999
	}
	return append(data, '\n'), nil
}

// Save writes t to the file atomically with mode 0600, creating missing
// parent directories with mode 0700. It refuses to replace a symbolic link or
// anything but a regular file.
//
// Save does not stop early when ctx is done: the tokens it is given may be
// the only copy of a rotated refresh token, and dropping them would end the
// session.
//
// Tokens with neither an access nor a refresh token make a file that Load
// reports as corrupt; use Clear to empty the store.
func (s *FileStore) Save(ctx context.Context, t Tokens) error {
	if err := writeTokenFile(s.path, t); err != nil {
		return fileError("save", s.path, err)
	}
	return nil
}

func writeTokenFile(path string, t Tokens) (err error) {
	data, err := encodeTokenFile(t)
	if err != nil {
		return err
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil {
		if err := checkFileType(fi); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// Clear removes the file. It is not an error when the file does not exist.
// Clear refuses to remove a symbolic link or anything but a regular file,
// since that would leave the tokens it points to in place. The lock file
// (see Lock) is left in place.
//
// Clear also removes the temporary files that an interrupted Save left
// beside the token file, since they may hold tokens: the regular files in
// its directory named ".<name>.tmp" followed by the digits os.CreateTemp
// adds. Symbolic links and other files are left alone. A Save that is under
// way meanwhile in another process may then fail.
func (s *FileStore) Clear(ctx context.Context) error {
	fi, err := os.Lstat(s.path)
	if err == nil {
		err = checkFileType(fi)
	}
	if err == nil {
		err = os.Remove(s.path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileError("clear", s.path, err)
	}
	if err := removeTempFiles(s.path); err != nil {
		return fileError("clear", s.path, err)
	}
	return nil
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
