package autorefresh

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// keyPath returns a key file path in a fresh temporary directory.
func keyPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "dpop-key.pem")
}

// unixPermissions reports whether this system has the permission checks of
// FileStore.
func unixPermissions() bool {
	return runtime.GOOS != "windows" && runtime.GOOS != "plan9"
}

type equaler interface{ Equal(crypto.PrivateKey) bool }

func TestKeyFileRoundTrip(t *testing.T) {
	ed := testKey(t, "Ed25519").(ed25519.PrivateKey)
	keys := map[string]crypto.Signer{"*ed25519.PrivateKey": &ed}
	for name, k := range testKeys() {
		keys[name] = k
	}
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "new", "dir", "dpop-key.pem")
			if err := SaveKey(path, key); err != nil {
				t.Fatalf("SaveKey: %v", err)
			}
			got, err := LoadKey(path)
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			want := key
			if p, ok := key.(*ed25519.PrivateKey); ok {
				want = *p // LoadKey returns the value
			}
			if !got.(equaler).Equal(want) {
				t.Errorf("LoadKey returned another key than was saved")
			}
			if _, err := newJWSSigner(got, ""); err != nil {
				t.Errorf("the loaded key does not sign: %v", err)
			}
			checkKeyFile(t, path)
			if unixPermissions() {
				if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("new parent directory has mode %v (%v); want 0700", fi.Mode().Perm(), err)
				}
			}
			// A second save replaces the file.
			other, err := GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			if err := SaveKey(path, other); err != nil {
				t.Fatalf("SaveKey over a key: %v", err)
			}
			if got, err := LoadKey(path); err != nil || !got.(equaler).Equal(other) {
				t.Errorf("LoadKey after a second SaveKey = another key (%v); want the second", err)
			}
			checkKeyFile(t, path)
		})
	}
}

// checkKeyFile checks that the key file at path is a PEM PKCS #8 file with
// mode 0600, alone in its directory (no temporary file left).
func checkKeyFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if unixPermissions() && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v; want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v; want only the key file", names)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
		t.Errorf("key file is not one PEM PRIVATE KEY block")
	} else if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("key file is not PKCS #8: %v", err)
	}
}

func TestGenerateKey(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("GenerateKey returned %s; want an ECDSA P-256 key", keyDescription(key.Public()))
	}
}

func TestLoadKeyMissing(t *testing.T) {
	for _, path := range []string{keyPath(t), filepath.Join(t.TempDir(), "no", "such", "dir", "key.pem")} {
		_, err := LoadKey(path)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadKey of a missing file: error = %v; want fs.ErrNotExist", err)
		}
		checkFileError(t, err, "load key", path)
	}
}

// checkFileError checks that err is a *FileError for op and path, whose
// text names the path once.
func checkFileError(t *testing.T, err error, op, path string) {
	t.Helper()
	var fe *FileError
	if !errors.As(err, &fe) || fe.Op != op || fe.Path != path {
		t.Fatalf("error %v is not a *FileError for %s %s", err, op, path)
	}
	if n := strings.Count(err.Error(), path); n != 1 {
		t.Errorf("error %q names the path %d times; want once", err, n)
	}
}

func TestKeyFileRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.pem")
	if err := SaveKey(target, testKey(t, "P-256")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(target)
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(target, link); err != nil {
		cannotRun(t, "no symbolic links here: %v", err)
	}
	if _, err := LoadKey(link); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("LoadKey through a link: error = %v; want ErrUnsafeFile", err)
	}
	if err := SaveKey(link, testKey(t, "P-384")); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("SaveKey onto a link: error = %v; want ErrUnsafeFile", err)
	}
	if _, err := LoadOrCreateKey(link); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("LoadOrCreateKey through a link: error = %v; want ErrUnsafeFile", err)
	}
	if after, _ := os.ReadFile(target); string(after) != string(before) {
		t.Errorf("the link's target was changed")
	}

	// A dangling link must not be written through either.
	dangling := filepath.Join(dir, "dangling.pem")
	planted := filepath.Join(dir, "planted.pem")
	if err := os.Symlink(planted, dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(dangling); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("LoadOrCreateKey through a dangling link: error = %v; want ErrUnsafeFile", err)
	}
	if err := SaveKey(dangling, testKey(t, "P-256")); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("SaveKey onto a dangling link: error = %v; want ErrUnsafeFile", err)
	}
	if _, err := os.Lstat(planted); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key was written through a dangling link")
	}
}

func TestLoadKeyRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKey(dir); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("LoadKey of a directory: error = %v; want ErrUnsafeFile", err)
	}
	if err := SaveKey(dir, testKey(t, "P-256")); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("SaveKey onto a directory: error = %v; want ErrUnsafeFile", err)
	}
}

func TestLoadKeyPermissions(t *testing.T) {
	if !unixPermissions() {
		cannotRun(t, "permission bits are not checked here")
	}
	tests := []struct {
		mode     fs.FileMode
		refused  bool
		wantMode fs.FileMode
	}{
		{0o600, false, 0o600},
		{0o400, false, 0o400},
		{0o640, false, 0o600},
		{0o644, false, 0o600},
		{0o620, true, 0o620},
		{0o602, true, 0o602},
		{0o666, true, 0o666},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%#o", tt.mode), func(t *testing.T) {
			path := keyPath(t)
			if err := SaveKey(path, testKey(t, "P-256")); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKey(path)
			if tt.refused != errors.Is(err, ErrUnsafeFile) || !tt.refused && err != nil {
				t.Errorf("LoadKey of a file with mode %#o: error = %v; want refused=%t", tt.mode, err, tt.refused)
			}
			if _, err := LoadOrCreateKey(path); tt.refused != errors.Is(err, ErrUnsafeFile) {
				t.Errorf("LoadOrCreateKey of a file with mode %#o: error = %v; want refused=%t", tt.mode, err, tt.refused)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tt.wantMode {
				t.Errorf("mode after LoadKey = %v (%v); want %#o", fi.Mode().Perm(), err, tt.wantMode)
			}
		})
	}
}

// pemFile encodes a PEM block.
func pemFile(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadKeyRefusesContent(t *testing.T) {
	p256 := testKey(t, "P-256").(*ecdsa.PrivateKey)
	valid := pemFile("PRIVATE KEY", pkcs8(t, p256))
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte
		want    error
	}{
		{"empty", nil, ErrCorruptKeyFile},
		{"white space", []byte("\n \n"), ErrCorruptKeyFile},
		{"not PEM", []byte("this is not a key"), ErrCorruptKeyFile},
		{"truncated PEM", valid[:len(valid)/2], ErrCorruptKeyFile},
		{"truncated DER", pemFile("PRIVATE KEY", pkcs8(t, p256)[:40]), ErrCorruptKeyFile},
		{"certificate", pemFile("CERTIFICATE", []byte{1, 2, 3}), ErrCorruptKeyFile},
		{"public key", pemFile("PUBLIC KEY", []byte{1, 2, 3}), ErrCorruptKeyFile},
		{"too large", append(valid, make([]byte, maxKeyFileSize)...), ErrCorruptKeyFile},
		{"SEC 1", pemFile("EC PRIVATE KEY", sec1), ErrUnsupportedKey},
		{"PKCS #1", pemFile("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), ErrUnsupportedKey},
		{"encrypted", pemFile("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), ErrUnsupportedKey},
		{"P-521", pemFile("PRIVATE KEY", pkcs8(t, p521)), ErrUnsupportedKey},
		{"P-224", pemFile("PRIVATE KEY", pkcs8(t, p224)), ErrUnsupportedKey},
		{"RSA 1024", pemFile("PRIVATE KEY", pkcs8(t, rsa1024)), ErrUnsupportedKey},
		{"X25519", pemFile("PRIVATE KEY", pkcs8(t, x25519)), ErrUnsupportedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keyPath(t)
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKey(path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadKey error = %v; want %v", err, tt.want)
			}
			checkFileError(t, err, "load key", path)
			checkNoContent(t, err.Error(), tt.content)
			// LoadOrCreateKey returns the error and leaves the file alone.
			if _, err := LoadOrCreateKey(path); !errors.Is(err, tt.want) {
				t.Errorf("LoadOrCreateKey error = %v; want %v", err, tt.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(tt.content) {
				t.Errorf("LoadOrCreateKey changed a file it could not read")
			}
		})
	}
}

// checkNoContent fails if text quotes any 16 bytes of a line of the key
// file content, other than its PEM "-----BEGIN" and "-----END" lines.
func checkNoContent(t *testing.T, text string, content []byte) {
	t.Helper()
	for _, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "-----") {
			continue
		}
		for i := 0; i+16 <= len(line); i++ {
			if chunk := line[i : i+16]; strings.Contains(text, chunk) {
				t.Fatalf("%q quotes the key file (%q)", text, chunk)
			}
		}
	}
}

func TestSaveKeyRefusesKeys(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"nil", nil},
		{"HSM", hsmSigner{testKey(t, "P-256")}},
		{"P-521", p521},
		{"no public key", fakeSigner{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keyPath(t)
			err := SaveKey(path, tt.key)
			if !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("SaveKey error = %v; want ErrUnsupportedKey", err)
			}
			checkFileError(t, err, "save key", path)
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
				t.Errorf("SaveKey of an unsupported key left %d files", len(entries))
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "dpop-key.pem")
	first, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey of a missing file: %v", err)
	}
	if k, ok := first.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("created %s; want an ECDSA P-256 key", keyDescription(first.Public()))
	}
	checkKeyFile(t, path)
	second, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !second.(equaler).Equal(first) {
		t.Errorf("a second LoadOrCreateKey returned another key")
	}
	// An existing key of another kind is kept.
	if err := SaveKey(path, testKey(t, "Ed25519")); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadOrCreateKey(path); err != nil || !got.(equaler).Equal(testKey(t, "Ed25519")) {
		t.Errorf("LoadOrCreateKey of an Ed25519 key file = %v; want that key", err)
	}
}

// TestLoadOrCreateKeyConcurrent creates the key from many goroutines at
// once: all of them must end up with the one key in the file.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), fmt.Sprint(round), "dpop-key.pem")
		const n = 8
		keys := make([]crypto.Signer, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(path) })
		}
		wg.Wait()
		onDisk, err := LoadKey(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("LoadOrCreateKey %d: %v", i, errs[i])
			}
			if !keys[i].(equaler).Equal(onDisk) {
				t.Fatalf("round %d: LoadOrCreateKey %d returned a key that is not the one in the file", round, i)
			}
		}
		checkKeyFile(t, path)
	}
}

// TestKeyErrorsHoldNoKeyMaterial checks the errors of the key file
// functions for every key kind, and the key types' own output is left to
// the standard library.
func TestKeyErrorsHoldNoKeyMaterial(t *testing.T) {
	for name, key := range testKeys() {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var texts []string
			add := func(err error) {
				if err != nil {
					texts = append(texts, err.Error(), fmt.Sprintf("%+v %#v", err, err))
				}
			}
			add(SaveKey(dir, key)) // a directory is in the way
			path := filepath.Join(dir, "k.pem")
			if err := SaveKey(path, key); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			os.WriteFile(path, data[:len(data)-40], 0o600)
			_, err := LoadKey(path)
			add(err)
			_, err = LoadOrCreateKey(path)
			add(err)
			add(SaveKey(path, hsmSigner{key}))
			if unixPermissions() {
				os.Chmod(path, 0o666)
				_, err = LoadKey(path)
				add(err)
			}
			if len(texts) < 4 {
				t.Fatalf("only %d errors to check", len(texts))
			}
			all := strings.Join(texts, "\n")
			for _, secret := range secretForms(t, key) {
				if strings.Contains(all, secret) {
					t.Fatalf("errors hold the private key (%q):\n%s", secret, all)
				}
			}
			checkNoContent(t, all, data)
		})
	}
}

func FuzzParseKeyPEM(f *testing.F) {
	for _, k := range []string{"P-256", "Ed25519"} {
		f.Add(pemFile("PRIVATE KEY", pkcs8(&testing.T{}, testKey(f, k))))
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseKeyPEM(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptKeyFile) && !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("error %v wraps neither ErrCorruptKeyFile nor ErrUnsupportedKey", err)
			}
			checkNoContent(t, err.Error(), data)
			return
		}
		if _, err := newJWSSigner(key, ""); err != nil {
			t.Fatalf("parsed a key that cannot sign: %v", err)
		}
	})
}
