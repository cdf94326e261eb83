package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

var (
	// ErrCorruptFile is wrapped by the errors of FileStore.Load for a token
	// file that is empty, truncated, too large, not the JSON that FileStore
	// writes, or a JSON object that holds neither an access nor a refresh
	// token. It wraps ErrCorruptRecord.
	ErrCorruptFile = fmt.Errorf("%w: token file is corrupt", ErrCorruptRecord)

	// ErrUnsafeFile is wrapped by the errors of FileStore for a token file
	// that it refuses to use: a symbolic link, something other than a
	// regular file, or (on Linux, macOS and the BSDs) a file that other
	// users may access.
	ErrUnsafeFile = errors.New("autorefresh: token file is unsafe")
)

// errNoPath is returned by every method of a FileStore that has no path.
var errNoPath = errors.New("autorefresh: FileStore has no path; create it with NewFileStore")

// FileError reports a failed operation on a file and its path: a token file
// of a FileStore, or a key file of LoadKey, SaveKey and LoadOrCreateKey. It
// never holds token values or key material.
type FileError struct {
	Op   string // "load", "save", "clear" or "lock" (FileStore); "load key" or "save key"
	Path string // the token file (its lock file for Op "lock") or the key file
	Err  error  // for example ErrNoTokens, ErrCorruptFile, ErrUnsafeFile, ErrCorruptKeyFile or an fs error
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
// NewFileStore; the zero value has no path, and its methods return an error
// saying so.
//
// The file is indented JSON that a person can read:
//
//	{
//	  "accessToken": "eyJhbGciOi...",
//	  "refreshToken": "8xLOxBtZp8...",
//	  "tokenType": "Bearer",
//	  "expiry": "2026-05-04T10:20:30Z",
//	  "version": 7
//	}
//
// "accessToken" and "refreshToken" are always written (one may be ""),
// "tokenType" only when the token endpoint gave one, and "expiry" (RFC 3339,
// UTC) when the expiry is known, from Tokens.Expiry or the access token's JWT
// "exp" claim. "version" counts the saves: every successful save writes the
// version of the file it replaces plus one, starting from 1. The version of a
// file is its "version" member, a decimal integer from 0 to 2^53-1, even when
// the rest of the file is corrupt. A file without a valid one has version 0:
// a file of an older release, which loads as before, and a file that is not
// a JSON object at all. Other members are ignored. Files are at most 1 MiB
// (1,048,576 bytes). There is no
// record of an empty store: Clear removes the file, and a missing file is
// an empty store at version 0. Deleting the file is therefore a logout, for
// every process that shares it, and FileStore never reports ErrTokensLost.
//
// Save writes a temporary file in the same directory with mode 0600, syncs
// it, renames it over the token file and syncs the directory, so readers and
// a crash see either the old file or the new one, never a torn one. A crash
// can leave a temporary file named ".<name>.tmp*" behind; it is never read,
// and Clear removes it with the token file, since it may hold tokens.
// Missing parent directories are created with mode 0700.
//
// FileStore refuses a token file that is a symbolic link or not a regular
// file: its methods return an error wrapping ErrUnsafeFile, so a link
// planted at the path can neither feed it tokens nor receive them. On Linux,
// macOS and the BSDs, Load also refuses a file that group or others may
// write (its tokens could have been planted; "chmod 600" fixes it), and
// takes the read permission of group and others away from a file that
// grants it. Save always writes a fresh file with mode 0600. Errors name the
// path and never hold token values.
//
// FileStore implements Locker (see Lock): the Transport holds the lock
// while it reads the file, refreshes and saves, so the version that Save
// increments rises by one per save across processes. Without the lock a
// Save never leaves a torn or mixed file, but two saves may write the same
// version.
//
// FileStore is safe for concurrent use by multiple goroutines, and several
// FileStore values and processes may share one file. It prints as its path
// in every fmt verb and in slog.
type FileStore struct {
	path string
}

// NewFileStore returns a FileStore that keeps tokens in the file at path. A
// relative path is resolved against the working directory at each call.
// Nothing is read or written until the first call. With an empty path every
// method returns an error.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path}
}

// check returns errNoPath for a FileStore without a path.
func (s *FileStore) check() error {
	if s == nil || s.path == "" {
		return errNoPath
	}
	return nil
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
	t, _, err := s.loadVersion()
	return t, err
}

// loadVersion is Load that also returns the version of the file (see
// FileStore): 0 for a missing file. With an error for a corrupt file, it
// returns the version that Save increments: the file's "version" member
// when it has a valid one, else 0.
func (s *FileStore) loadVersion() (Tokens, uint64, error) {
	if err := s.check(); err != nil {
		return Tokens{}, 0, err
	}
	t, v, err := loadTokenFile(s.path)
	if err != nil {
		return Tokens{}, v, fileError("load", s.path, err)
	}
	return t, v, nil
}

// loadTokenFile reads and decodes the token file at path.
func loadTokenFile(path string) (Tokens, uint64, error) {
	data, err := readTokenFile(path)
	if err != nil {
		return Tokens{}, 0, err
	}
	return decodeTokenFile(data)
}

// fileVersion returns the version of the token file at path, which a save
// increments: 0 for a missing file, and the version loadVersion reports for
// a corrupt one. A file refused for
// its permissions (others may write it) has version 0, as nothing in it can
// be trusted; a save replaces it with a private one. A symbolic link or a
// file that is not regular is an error.
func fileVersion(path string) (uint64, error) {
	if fi, err := os.Lstat(path); err == nil {
		if err := checkFileType(fi); err != nil {
			return 0, err
		}
	}
	_, v, err := loadTokenFile(path)
	if err != nil && !errors.Is(err, ErrNoTokens) && !errors.Is(err, ErrCorruptFile) && !errors.Is(err, ErrUnsafeFile) {
		return 0, err
	}
	return v, nil
}

// Save writes t to the file atomically with mode 0600, at the version of the
// file it replaces plus one, creating missing parent directories with mode
// 0700. It refuses to replace a symbolic link or anything but a regular
// file.
//
// If the file would be larger than 1 MiB (the limit of Load), Save returns an
// error wrapping ErrRecordTooLarge and leaves the file as it was. Save reads
// the version of the file it replaces first; if it cannot read that file
// (permission denied, an I/O error), it writes nothing and returns the
// error.
//
// Save does not stop early when ctx is done: the tokens it is given may be
// the only copy of a rotated refresh token, and dropping them would end the
// session.
//
// Tokens with neither an access nor a refresh token make a file that Load
// reports as corrupt; use Clear to empty the store.
func (s *FileStore) Save(ctx context.Context, t Tokens) error {
	if err := s.check(); err != nil {
		return err
	}
	v, err := fileVersion(s.path)
	if err == nil {
		_, err = writeTokenFile(s.path, t, v)
	}
	if err != nil {
		return fileError("save", s.path, err)
	}
	return nil
}

// Clear removes the file. It is not an error when the file does not exist.
// Clear refuses to remove a symbolic link or anything but a regular file,
// since that would leave the tokens it points to in place. The lock file
// (see Lock) is left in place. The empty store has version 0.
//
// Clear also removes the temporary files that an interrupted Save left
// beside the token file, since they may hold tokens: the regular files in
// its directory named ".<name>.tmp" followed by the digits os.CreateTemp
// adds. Symbolic links and other files are left alone. A Save that is under
// way meanwhile in another process may then fail.
func (s *FileStore) Clear(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := removeTokenFile(s.path); err != nil {
		return fileError("clear", s.path, err)
	}
	return nil
}

// String describes s by its path.
func (s *FileStore) String() string {
	switch {
	case s == nil:
		return "autorefresh.FileStore(nil)"
	case s.path == "":
		return "autorefresh.FileStore{no path}"
	}
	return "autorefresh.FileStore{" + strconv.Quote(s.path) + "}"
}

// GoString is like String.
func (s *FileStore) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb prints s as String does.
func (s *FileStore) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer: s is logged as String describes it.
func (s *FileStore) LogValue() slog.Value { return slog.StringValue(s.String()) }
