package autorefresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var _ TokenStore = (*FileStore)(nil)
var _ Locker = (*FileStore)(nil)

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
		{"unicode and quotes", Tokens{AccessToken: `a"\<>&é`, RefreshToken: "r\n\t"}, time.Time{}},
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

func TestFileStoreFormat(t *testing.T) {
	path := tokenPath(t)
	s := NewFileStore(path)
	exp := time.Date(2031, 5, 4, 10, 20, 30, 0, time.UTC)
	access := testJWT(t, exp)
	if err := s.Save(context.Background(), Tokens{AccessToken: access, RefreshToken: "refresh-xyz"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("file is not JSON: %v", err)
	}
	for key, want := range map[string]string{
		"accessToken":  access,
		"refreshToken": "refresh-xyz",
		"expiry":       "2031-05-04T10:20:30Z",
	} {
		if got, _ := m[key].(string); got != want {
			t.Errorf("field %q = %q; want %q", key, got, want)
		}
	}
	// Readable by a person: one field per line, indented, ending in a newline.
	text := string(data)
	for _, want := range []string{"{\n  \"accessToken\": ", ",\n  \"refreshToken\": \"refresh-xyz\",\n", "\n  \"expiry\": \"2031-05-04T10:20:30Z\"\n}\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("file does not contain %q:\n%s", want, text)
		}
	}
}

func TestFileStorePermissions(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		cannotRun(t, "no Unix permission bits on %s", runtime.GOOS)
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

func TestFileStoreCorrupt(t *testing.T) {
	valid, err := encodeTokenFile(Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh, Expiry: time.Unix(2e9, 0)})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"empty":            "",
		"blank":            " \n\t\n",
		"null":             "null",
		"array":            `["` + secretAccess + `"]`,
		"string":           `"` + secretAccess + `"`,
		"garbage":          secretAccess + secretRefresh,
		"trailing data":    string(valid) + secretRefresh,
		"wrong type":       `{"accessToken": 12345, "refreshToken": "` + secretRefresh + `"}`,
		"bad expiry":       `{"accessToken": "` + secretAccess + `", "expiry": "` + secretRefresh + `"}`,
		"bad string":       `{"accessToken": "` + secretAccess + `\q"}`,
		"unquoted":         `{"accessToken": ` + secretAccess + `}`,
		"binary":           "\x00\x01\x02" + secretAccess,
		"too large":        "{" + strings.Repeat(" ", maxTokenFileSize) + "}",
		"too large secret": `{"accessToken": "` + strings.Repeat(secretAccess, maxTokenFileSize/len(secretAccess)) + `"}`,
		// JSON objects without a token are some other file, not an empty
		// store.
		"empty object":      "{}",
		"other JSON object": `{"theme": "dark"}`,
		"empty tokens":      `{"accessToken": "", "refreshToken": ""}`,
		"only expiry":       `{"expiry": "2031-05-04T10:20:30Z"}`,
		"null tokens":       `{"accessToken": null, "refreshToken": null}`,
	}
	// Every truncation of a valid file. Only the final newline may go.
	for n := range len(valid) - 1 {
		tests[fmt.Sprintf("truncated to %d bytes", n)] = string(valid[:n])
	}
	dir := t.TempDir()
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "tokens.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := NewFileStore(path).Load(context.Background())
			if !errors.Is(err, ErrCorruptFile) {
				t.Fatalf("Load = %v, %v; want an error wrapping ErrCorruptFile", got, err)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path {
				t.Errorf("error %#v is not a *FileError for %s", err, path)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the path %s", msg, path)
			}
			if !strings.HasPrefix(msg, "autorefresh: ") {
				t.Errorf("error %q does not start with the package name", msg)
			}
			for _, s := range []string{"SECRET", "ACCESS", "REFRESH", "d9f8a7", "6b5c4d"} {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains part of a token value", msg)
				}
			}
		})
	}
}

// TestFileStoreUnsafe checks that symbolic links and other non-regular files
// are refused by Load, Save and Clear, and left as they are.
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
		s := NewFileStore(path)
		if _, err := s.Load(ctx); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("Load(%s) error = %v; want ErrUnsafeFile", path, err)
		}
		if err := s.Save(ctx, Tokens{AccessToken: "new-a", RefreshToken: "new-r"}); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("Save(%s) error = %v; want ErrUnsafeFile", path, err)
		}
		if err := s.Clear(ctx); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("Clear(%s) error = %v; want ErrUnsafeFile", path, err)
		}
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

	// A symbolic link at the lock file's place is refused too.
	if crossProcessLock {
		path := filepath.Join(dir, "locked.json")
		if err := os.Symlink(target, path+".lock"); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFileStore(path).Lock(ctx); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("Lock with a linked lock file: error = %v; want ErrUnsafeFile", err)
		}
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
			leftover, err := encodeTokenFile(Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh})
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
			var gone []string
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
			kept := []string{path + ".lock"}
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
			kept = append(kept, sub)

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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 10 || !done.Load(); n++ {
				got, err := stores[r%2].Load(ctx)
				loads.Add(1)
				if err != nil {
					fail(fmt.Errorf("Load: %w", err))
					return
				}
				a, aok := strings.CutPrefix(got.AccessToken, "a-")
				r, rok := strings.CutPrefix(got.RefreshToken, "r-")
				if !aok || !rok || a != r || !strings.HasSuffix(a, pad) {
					fail(errors.New("Load returned a pair that was never saved"))
					return
				}
			}
		}()
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

func FuzzDecodeTokenFile(f *testing.F) {
	valid, _ := encodeTokenFile(Tokens{AccessToken: "a", RefreshToken: "r", Expiry: time.Unix(2e9, 0)})
	for _, seed := range []string{
		string(valid), "", "{}", "null", "[]", `{"accessToken": 1}`, `{"expiry": "x"}`,
		`{"theme":"dark"}`, `{"accessToken":"","refreshToken":""}`, `{"refreshToken":"r"}`,
		string(valid[:len(valid)/2]), `{"accessToken":"a","refreshToken":"r","extra":[1,{}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeTokenFile(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptFile) {
				t.Fatalf("error %v does not wrap ErrCorruptFile", err)
			}
			return
		}
		if got.IsZero() {
			t.Fatalf("decoded a file without tokens without an error")
		}
		enc, err := encodeTokenFile(got)
		if err != nil {
			return // an expiry that JSON cannot hold
		}
		again, err := decodeTokenFile(enc)
		if err != nil {
			t.Fatalf("cannot decode what was encoded: %v", err)
		}
		if again.AccessToken != got.AccessToken || again.RefreshToken != got.RefreshToken || !again.ExpiresAt().Equal(got.ExpiresAt()) {
			t.Fatalf("re-encoding changed the tokens")
		}
	})
}
