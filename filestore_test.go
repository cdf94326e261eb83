package autorefresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	_ Locker = (*FileStore)(nil)
)

// tokenPath returns a token file path in a fresh temporary directory.
func tokenPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "tokens.json")
}

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	exp := time.Date(2031, 5, 4, 10, 20, 30, 0, time.UTC)
	jwtTok := testJWT(t, exp)
	tests := []struct {
		name       string
		save       Tokens
		wantExpiry time.Time
	}{
		{"opaque without expiry", Tokens{AccessToken: "access-1", RefreshToken: "refresh-1"}, time.Time{}},
		{"explicit expiry", Tokens{AccessToken: "access-2", RefreshToken: "refresh-2", Expiry: exp.Add(time.Nanosecond)}, exp.Add(time.Nanosecond)},
		{"expiry from JWT", Tokens{AccessToken: jwtTok, RefreshToken: "refresh-3"}, exp},
		{"local time zone", Tokens{AccessToken: "a", RefreshToken: "r", Expiry: exp.In(time.FixedZone("X", 3600))}, exp},
		{"no refresh token", Tokens{AccessToken: "a"}, time.Time{}},
		{"no access token", Tokens{RefreshToken: "r"}, time.Time{}},
		{"unicode and quotes", Tokens{AccessToken: `a"\<>&é`, RefreshToken: "r/+=~ x"}, time.Time{}},
		{"token type", Tokens{AccessToken: "a", RefreshToken: "r", TokenType: "DPoP"}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewFileStore(tokenPath(t))
			if err := s.Save(ctx, tt.save); err != nil {
				t.Fatalf("Save: %v", err)
			}
			got, err := s.Load(ctx)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got.AccessToken != tt.save.AccessToken || got.RefreshToken != tt.save.RefreshToken {
				t.Errorf("Load returned other token values than were saved")
			}
			if got.TokenType != tt.save.TokenType {
				t.Errorf("TokenType = %q; want %q", got.TokenType, tt.save.TokenType)
			}
			if !got.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Expiry = %v; want %v", got.Expiry, tt.wantExpiry)
			}
			if !got.ExpiresAt().Equal(tt.save.ExpiresAt()) {
				t.Errorf("ExpiresAt() = %v; want %v", got.ExpiresAt(), tt.save.ExpiresAt())
			}
		})
	}
}

func TestFileStoreOverwrite(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(tokenPath(t))
	for i := range 3 {
		want := Tokens{AccessToken: fmt.Sprint("a", i), RefreshToken: fmt.Sprint("r", i)}
		if err := s.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
			t.Errorf("Load after save %d returned other token values", i)
		}
	}
}

func TestFileStorePermissions(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		cannotRun(t, "no Unix permission bits")
	}
	ctx := context.Background()
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "tokens.json")
	s := NewFileStore(path)
	if err := s.Save(ctx, Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	checkMode := func(p string, want fs.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %#o; want %#o", p, got, want)
		}
	}
	checkMode(path, 0o600)
	checkMode(filepath.Join(root, "a"), 0o700)
	checkMode(filepath.Join(root, "a", "b"), 0o700)

	// Save replaces a file with wider permissions by a private one.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, Tokens{AccessToken: "a2", RefreshToken: "r2"}); err != nil {
		t.Fatal(err)
	}
	checkMode(path, 0o600)

	unlock, err := s.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	checkMode(path+".lock", 0o600)
}

func TestFileStoreNoTokens(t *testing.T) {
	for _, path := range []string{
		tokenPath(t),
		filepath.Join(t.TempDir(), "missing", "dir", "tokens.json"),
	} {
		_, err := NewFileStore(path).Load(context.Background())
		if !errors.Is(err, ErrNoTokens) {
			t.Errorf("Load of missing %s: error = %v; want ErrNoTokens", path, err)
		}
		var fe *FileError
		if !errors.As(err, &fe) || fe.Path != path || fe.Op != "load" {
			t.Errorf("Load of missing %s: error = %#v; want a *FileError for op load on the path", path, err)
		}
	}
}

const (
	secretAccess  = "SECRET-ACCESS-d9f8a7"
	secretRefresh = "SECRET-REFRESH-6b5c4d"
)

// checkUnsafe checks that every method but Lock refuses the token file of s
// with ErrUnsafeFile.
func checkUnsafe(t *testing.T, s *FileStore) {
	t.Helper()
	ctx := context.Background()
	pair := Tokens{AccessToken: "new-a", RefreshToken: "new-r"}
	errs := map[string]error{
		"Save":  s.Save(ctx, pair),
		"Clear": s.Clear(ctx),
	}
	_, errs["Load"] = s.Load(ctx)
	for op, err := range errs {
		if !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("%s(%s) error = %v; want ErrUnsafeFile", op, s.path, err)
		}
	}
}

// TestFileStoreUnsafe checks that symbolic links and other non-regular files
// are refused by every method, and left as they are.
func TestFileStoreUnsafe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere.json")
	targetStore := NewFileStore(target)
	if err := targetStore.Save(ctx, Tokens{AccessToken: "target-a", RefreshToken: "target-r"}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tokens.json")
	if err := os.Symlink(target, link); err != nil {
		cannotRun(t, "cannot create symbolic links: %v", err)
	}
	notRegular := filepath.Join(dir, "adir")
	if err := os.Mkdir(notRegular, 0o700); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{link, notRegular} {
		checkUnsafe(t, NewFileStore(path))
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced or removed (Lstat: %v, %v)", fi, err)
	}
	got, err := targetStore.Load(ctx)
	if err != nil || got.AccessToken != "target-a" {
		t.Errorf("the link target changed: Load = %v, %v", got, err)
	}
	if entries, _ := os.ReadDir(notRegular); len(entries) != 0 {
		t.Errorf("Save wrote into the directory at the token path: %v", entries)
	}
}

// TestFileStoreUnsafeLockFile checks that Lock refuses a symbolic link at
// the lock file's place.
func TestFileStoreUnsafeLockFile(t *testing.T) {
	if !crossProcessLock {
		cannotRun(t, "no lock file on %s", runtime.GOOS)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "locked.json")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path+".lock"); err != nil {
		cannotRun(t, "cannot create symbolic links: %v", err)
	}
	if _, err := NewFileStore(path).Lock(context.Background()); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("Lock with a linked lock file: error = %v; want ErrUnsafeFile", err)
	}
}

// TestFileStoreOpenPermissions checks that Load refuses a token file that
// other users may write, and makes one that they may read private.
func TestFileStoreOpenPermissions(t *testing.T) {
	if !crossProcessLock {
		cannotRun(t, "permissions are not checked on %s", runtime.GOOS)
	}
	ctx := context.Background()
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o666, 0o620} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			path := tokenPath(t)
			s := NewFileStore(path)
			if err := s.Save(ctx, Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load(ctx)
			if mode&0o022 == 0 {
				if err != nil {
					t.Fatalf("Load of a file with mode %#o: %v", mode, err)
				}
				if fi, _ := os.Stat(path); fi.Mode().Perm() != mode&0o700 {
					t.Errorf("mode after Load = %#o; want %#o", fi.Mode().Perm(), mode&0o700)
				}
				return
			}
			if !errors.Is(err, ErrUnsafeFile) {
				t.Fatalf("Load of a file with mode %#o: error = %v; want ErrUnsafeFile", mode, err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("%#o", mode)) || strings.Contains(msg, "SECRET") {
				t.Errorf("error %q should name the path and the mode, and no token", msg)
			}
		})
	}
	// Narrower permissions are fine.
	path := tokenPath(t)
	s := NewFileStore(path)
	if err := s.Save(ctx, Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err != nil {
		t.Errorf("Load of a file with mode 0400: %v", err)
	}
}

func TestFileStoreClear(t *testing.T) {
	ctx := context.Background()
	path := tokenPath(t)
	s := NewFileStore(path)
	if err := s.Clear(ctx); err != nil {
		t.Errorf("Clear of a missing file: %v", err)
	}
	if err := NewFileStore(filepath.Join(t.TempDir(), "no", "dir", "t.json")).Clear(ctx); err != nil {
		t.Errorf("Clear in a missing directory: %v", err)
	}
	if err := s.Save(ctx, Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Clear(ctx); err != nil {
			t.Errorf("Clear #%d: %v", i+1, err)
		}
		if _, err := s.Load(ctx); !errors.Is(err, ErrNoTokens) {
			t.Errorf("Load after Clear #%d: error = %v; want ErrNoTokens", i+1, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("file after Clear #%d: Lstat error = %v; want ErrNotExist", i+1, err)
		}
	}
}

// makeTempFiles makes, beside the token file at path, files named as Save
// names its temporary files (gone) and files, links and directories that are
// not (kept), all holding tokens.
func makeTempFiles(t *testing.T, path string) (gone, kept []string) {
	t.Helper()
	dir := filepath.Dir(path)
	leftover, err := encodeTokenFile(Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh}, 1)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, leftover, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Temporary files as Save names them.
	for range 3 {
		f, err := os.CreateTemp(dir, ".tokens.json.tmp*")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(leftover)
		f.Close()
		gone = append(gone, f.Name())
	}
	gone = append(gone, write(".tokens.json.tmp0"), write(".tokens.json.tmp4294967295"))

	// Files that are not this store's temporary files.
	for _, name := range []string{
		".tokens.json.tmp",       // no random part
		".tokens.json.tmpx",      // not what CreateTemp makes
		".tokens.json.tmp1.tmp2", // a temporary file of "tokens.json.tmp1"
		".tokens.json.tmp.tmp3",  // a temporary file of "tokens.json.tmp"
		"tokens.json.tmp5",       // no leading dot
		".other.json.tmp6",       // another store's
		".tokens.json.tmp7.lock", // not a temporary file
		"x.tokens.json.tmp8",     // other prefix
		".tokens.jsonx.tmp9",     // other name
		".Tokens.json.tmp10",     // other case
	} {
		kept = append(kept, write(name))
	}
	target := filepath.Join(t.TempDir(), "target.json")
	if err := os.WriteFile(target, leftover, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".tokens.json.tmp11")
	if err := os.Symlink(target, link); err == nil {
		kept = append(kept, link, target)
	}
	sub := filepath.Join(dir, ".tokens.json.tmp12")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	return gone, append(kept, sub)
}

// TestFileStoreClearTempFiles checks that Clear removes the temporary files
// that a crash during Save leaves beside the token file, since they hold
// tokens, and leaves every other file alone.
func TestFileStoreClearTempFiles(t *testing.T) {
	for _, withFile := range []bool{true, false} {
		t.Run(fmt.Sprintf("token file exists %v", withFile), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "tokens.json")
			s := NewFileStore(path)
			if withFile {
				if err := s.Save(ctx, Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
					t.Fatal(err)
				}
			}
			unlock, err := s.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			unlock()
			gone, kept := makeTempFiles(t, path)
			kept = append(kept, path+".lock")
			if err := s.Clear(ctx); err != nil {
				t.Fatalf("Clear: %v", err)
			}
			for _, p := range append(gone, path) {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s after Clear: Lstat error = %v; want ErrNotExist", filepath.Base(p), err)
				}
			}
			for _, p := range kept {
				if _, err := os.Lstat(p); err != nil {
					t.Errorf("%s after Clear: %v; want it left in place", filepath.Base(p), err)
				}
			}
		})
	}
}

// TestFileStoreClearConcurrent runs Clear from many goroutines over many
// leftover temporary files: files that another Clear removed meanwhile are
// not an error.
func TestFileStoreClearConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	s := NewFileStore(path)
	for round := range 5 {
		if err := s.Save(ctx, Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
			t.Fatal(err)
		}
		for range 40 {
			f, err := os.CreateTemp(dir, ".tokens.json.tmp*")
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		const goroutines = 8
		var wg sync.WaitGroup
		errc := make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() { errc <- NewFileStore(path).Clear(ctx) })
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Errorf("round %d: Clear: %v", round, err)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("round %d: directory holds %d entries after Clear; want 0", round, len(entries))
		}
	}
}

// checkSavedPair loads s and checks that it holds a pair that
// TestFileStoreConcurrentSaveLoad saved.
func checkSavedPair(ctx context.Context, s *FileStore, pad string) error {
	got, err := s.Load(ctx)
	if err != nil {
		return fmt.Errorf("Load: %w", err)
	}
	a, aok := strings.CutPrefix(got.AccessToken, "a-")
	r, rok := strings.CutPrefix(got.RefreshToken, "r-")
	if !aok || !rok || a != r || !strings.HasSuffix(a, pad) {
		return errors.New("Load returned a pair that was never saved")
	}
	return nil
}

// TestFileStoreConcurrentSaveLoad saves and loads from many goroutines
// through two FileStore values and checks that every Load sees one complete
// saved pair, never a torn or empty file, and that no temporary file is
// left.
func TestFileStoreConcurrentSaveLoad(t *testing.T) {
	ctx := context.Background()
	path := tokenPath(t)
	stores := []*FileStore{NewFileStore(path), NewFileStore(path)}
	// Large values make a torn write likely to be seen if writes were not
	// atomic.
	pad := strings.Repeat("x", 16<<10)
	pair := func(w, i int) Tokens {
		id := fmt.Sprintf("%d-%d-", w, i)
		return Tokens{AccessToken: "a-" + id + pad, RefreshToken: "r-" + id + pad}
	}
	if err := stores[0].Save(ctx, pair(0, 0)); err != nil {
		t.Fatal(err)
	}
	const writers, saves, readers = 4, 10, 4
	var (
		wg      sync.WaitGroup
		done    atomic.Bool
		loads   atomic.Int64
		wwg     sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	fail := func(err error) { errOnce.Do(func() { failure = err }) }
	for w := range writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := range saves {
				if err := stores[w%2].Save(ctx, pair(w, i)); err != nil {
					fail(fmt.Errorf("Save: %w", err))
				}
			}
		}()
	}
	for r := range readers {
		wg.Go(func() {
			for n := 0; n < 10 || !done.Load(); n++ {
				loads.Add(1)
				if err := checkSavedPair(ctx, stores[r%2], pad); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wwg.Wait()
	done.Store(true)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "tokens.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v; want only tokens.json", names)
	}
	t.Logf("%d saves, %d loads", writers*saves, loads.Load())
}

// fileContent returns the content of the file at path, or "" when it does
// not exist.
func fileContent(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(data)
}

// checkVersion checks that s holds the access token access (none when "")
// at version want. An empty FileStore must not report ErrTokensLost.
func checkVersion(t *testing.T, s *FileStore, want uint64, access string) {
	t.Helper()
	got, v, err := s.loadVersion()
	switch {
	case access != "" && (err != nil || got.AccessToken != access):
		t.Fatalf("Load = %q, %v; want %q", got.AccessToken, err, access)
	case access == "" && (!errors.Is(err, ErrNoTokens) || errors.Is(err, ErrTokensLost)):
		t.Fatalf("Load of an empty store: %v; want ErrNoTokens and not ErrTokensLost", err)
	case v != want:
		t.Fatalf("version = %d; want %d", v, want)
	}
}

// TestFileStoreVersions walks a FileStore through saves and clears, and
// checks the version in the file after each: every save writes the version
// it replaces plus one, and an empty store is version 0.
func TestFileStoreVersions(t *testing.T) {
	ctx := context.Background()
	path := tokenPath(t)
	s := NewFileStore(path)
	checkVersion(t, s, 0, "")
	for _, step := range []struct {
		name    string
		change  func() error
		version uint64
		access  string
	}{
		{"Clear of a missing file", func() error { return s.Clear(ctx) }, 0, ""},
		{"Save", func() error { return s.Save(ctx, Tokens{AccessToken: "a1"}) }, 1, "a1"},
		{"Save again", func() error { return s.Save(ctx, Tokens{AccessToken: "a2"}) }, 2, "a2"},
		{"Save through another FileStore", func() error { return NewFileStore(path).Save(ctx, Tokens{AccessToken: "a3"}) }, 3, "a3"},
		{"Clear", func() error { return s.Clear(ctx) }, 0, ""},
		{"Save after a clear", func() error { return s.Save(ctx, Tokens{AccessToken: "a4"}) }, 1, "a4"},
	} {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		checkVersion(t, s, step.version, step.access)
	}
}

// TestFileStoreUnversionedFile checks that files written before records had
// a version load as version 0, and that every change takes them from there.
func TestFileStoreUnversionedFile(t *testing.T) {
	ctx := context.Background()
	const old = `{
  "accessToken": "old-access",
  "refreshToken": "old-refresh",
  "expiry": "2031-05-04T10:20:30Z"
}
`
	changes := map[string]func(s *FileStore) error{
		"Save":  func(s *FileStore) error { return s.Save(ctx, Tokens{AccessToken: "new"}) },
		"Clear": func(s *FileStore) error { return s.Clear(ctx) },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			path := tokenPath(t)
			if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
			s := NewFileStore(path)
			got, v, err := s.loadVersion()
			if err != nil || v != 0 || got.AccessToken != "old-access" || got.RefreshToken != "old-refresh" ||
				!got.Expiry.Equal(time.Date(2031, 5, 4, 10, 20, 30, 0, time.UTC)) {
				t.Fatalf("Load of an old file = %v, version %d, %v; want its tokens at version 0", got, v, err)
			}
			if err := change(s); err != nil {
				t.Fatal(err)
			}
			_, v, err = s.loadVersion()
			switch {
			case strings.HasPrefix(name, "Clear"):
				if !errors.Is(err, ErrNoTokens) || v != 0 {
					t.Errorf("Load after %s = version %d, %v; want 0, ErrNoTokens", name, v, err)
				}
			case err != nil || v != 1:
				t.Errorf("Load after %s = version %d, %v; want 1, nil", name, v, err)
			}
		})
	}
}

// TestFileStoreSaveWithoutLock runs saves without the lock from many
// goroutines while another loads: the file is never torn or mixed, and its
// version ends between 2 and the number of saves plus one (without the lock
// two saves may write the same version).
func TestFileStoreSaveWithoutLock(t *testing.T) {
	ctx := context.Background()
	path := tokenPath(t)
	stores := []*FileStore{NewFileStore(path), NewFileStore(path)}
	if err := stores[0].Save(ctx, Tokens{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	const writers, saves = 4, 20
	var wg, rwg sync.WaitGroup
	var done atomic.Bool
	for w := range writers {
		wg.Go(func() {
			s := stores[w%2]
			for range saves {
				if err := s.Save(ctx, Tokens{AccessToken: fmt.Sprint("w", w)}); err != nil {
					t.Errorf("Save: %v", err)
					return
				}
			}
		})
	}
	rwg.Go(func() {
		for !done.Load() {
			if _, err := stores[1].Load(ctx); err != nil {
				t.Errorf("Load while saving: %v", err)
				return
			}
		}
	})
	wg.Wait()
	done.Store(true)
	rwg.Wait()
	_, v, err := stores[0].loadVersion()
	if err != nil || v < 2 || v > writers*saves+1 {
		t.Errorf("final version %d, %v; want from 2 to %d", v, err, writers*saves+1)
	}
}

// TestFileStoreZero checks that a FileStore without a path returns an error
// from every method, and creates no file (".lock" in the working directory).
func TestFileStoreZero(t *testing.T) {
	ctx := context.Background()
	t.Chdir(t.TempDir())
	for name, s := range map[string]*FileStore{"zero": {}, "NewFileStore(\"\")": NewFileStore(""), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			errs := map[string]error{
				"Save":  s.Save(ctx, Tokens{AccessToken: "a"}),
				"Clear": s.Clear(ctx),
			}
			_, errs["Load"] = s.Load(ctx)
			unlock, err := s.Lock(ctx)
			if err == nil {
				unlock()
			}
			errs["Lock"] = err
			for op, err := range errs {
				if !errors.Is(err, errNoPath) {
					t.Errorf("%s: error = %v; want errNoPath", op, err)
				}
			}
			if entries, _ := os.ReadDir("."); len(entries) != 0 {
				t.Errorf("the working directory holds %d entries; want none", len(entries))
			}
		})
	}
}

// TestFileStorePrint checks that a FileStore prints as its path in every
// fmt verb and in slog.
func TestFileStorePrint(t *testing.T) {
	const path = "dir/tokens.json"
	want := `autorefresh.FileStore{"` + path + `"}`
	s := NewFileStore(path)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%q) = %s; want %s", verb, got, want)
		}
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "store", s)
	if got := buf.String(); !strings.Contains(got, `"store":"autorefresh.FileStore{\"dir/tokens.json\"}"`) {
		t.Errorf("slog JSON = %s; want the store as its path", got)
	}
	for s, want := range map[*FileStore]string{nil: "autorefresh.FileStore(nil)", {}: "autorefresh.FileStore{no path}"} {
		if got := fmt.Sprintf("%+v", s); got != want {
			t.Errorf("Sprintf(%%+v) = %s; want %s", got, want)
		}
	}
}

func TestFileStoreNeverPrintsTokens(t *testing.T) {
	tok := Tokens{AccessToken: "FILESTORE-ACCESS-5be1", RefreshToken: "FILESTORE-REFRESH-0d4e"}
	s := NewFileStore(tokenPath(t))
	if err := s.Save(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkPrinted(t, "*FileStore", s, tok.AccessToken, tok.RefreshToken)
}

func TestFileStoreSaveRefusesWhatLoadRefuses(t *testing.T) {
	tests := []struct {
		name  string
		token string
		// htmlOnly: the token only grows when encoding/json escapes HTML
		// characters; an encoder that does not may save it, if Load then
		// reads it back.
		htmlOnly bool
	}{
		{"600 KiB of <", strings.Repeat("<", 600<<10), true},
		{"200 KiB of <>&", strings.Repeat("<>&", 200<<10/3), true},
		{"600 KiB of U+2028", strings.Repeat("\u2028", 200<<10), false}, // always escaped, 6 bytes each
		{"1.1 MiB", strings.Repeat("a", 1<<20+100<<10), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tokenPath(t)
			s := NewFileStore(path)
			good := Tokens{AccessToken: "good-access", RefreshToken: "good-refresh"}
			if err := s.Save(context.Background(), good); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			big := Tokens{AccessToken: tt.token, RefreshToken: "r"}
			err = s.Save(context.Background(), big)
			if err == nil && tt.htmlOnly {
				if got, err := s.Load(context.Background()); err != nil || got.AccessToken != big.AccessToken {
					t.Errorf("Save of a %d-byte token succeeded, then Load: %v; want ErrRecordTooLarge from Save, or the tokens back", len(tt.token), err)
				}
				return
			}
			if !errors.Is(err, ErrRecordTooLarge) {
				t.Errorf("Save of a %d-byte token: error = %v; want ErrRecordTooLarge", len(tt.token), err)
			}
			if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
				t.Errorf("token file changed by the failed Save (%d bytes before, %d after, %v)", len(before), len(after), err)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

// TestFileStoreSavesOnlyWhatLoadReads saves tokens whose file is about as large as
// Load accepts: whatever Save writes, Load reads back.
func TestFileStoreSavesOnlyWhatLoadReads(t *testing.T) {
	path := tokenPath(t)
	s := NewFileStore(path)
	for n := maxTokenFileSize - 96; n <= maxTokenFileSize; n += 8 {
		tok := Tokens{AccessToken: strings.Repeat("a", n), RefreshToken: "r"}
		err := s.Save(context.Background(), tok)
		if errors.Is(err, ErrRecordTooLarge) {
			continue
		}
		if err != nil {
			t.Fatalf("Save of a %d-byte token: %v", n, err)
		}
		if got, err := s.Load(context.Background()); err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("Load after Save of a %d-byte token: %v; want the saved tokens", n, err)
		}
	}
}

func TestFileStoreLoadRefusesInvalidToken(t *testing.T) {
	for name, bad := range badTokens {
		t.Run(name, func(t *testing.T) {
			path := tokenPath(t)
			data, _ := json.Marshal(map[string]string{"accessToken": bad, "refreshToken": "refresh"})
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewFileStore(path).Load(context.Background()); !errors.Is(err, ErrCorruptFile) {
				t.Errorf("Load of a file whose token holds %s: error = %v; want ErrCorruptFile", name, err)
			}
		})
	}
}
