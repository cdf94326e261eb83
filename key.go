package autorefresh

import (
	"bytes"
	"crypto"
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
)

// maxKeyFileSize bounds the key files that LoadKey reads. A PEM RSA key of
// 8192 bits is about 6 KiB.
const maxKeyFileSize = 64 << 10

var (
	// ErrUnsupportedKey is wrapped by the errors for a key that cannot sign
	// here: one that is not ECDSA P-256 or P-384, RSA of at least 2048 bits
	// or Ed25519, one asked for an algorithm it cannot make (an ECDSA P-256
	// key makes ES256 only; RSA makes RS256 and PS256), a key file that
	// holds another kind of key or an encrypted one, and, for SaveKey, a
	// key whose private half cannot be exported (one held in an HSM, a KMS
	// or a TPM).
	ErrUnsupportedKey = errors.New("autorefresh: unsupported key")

	// ErrCorruptKeyFile is wrapped by the errors of LoadKey for a file that
	// is not a PEM private key: empty, truncated, too large, another kind
	// of PEM block, or a PKCS #8 structure that does not parse.
	ErrCorruptKeyFile = errors.New("autorefresh: key file is corrupt")
)

// GenerateKey returns a new ECDSA P-256 key, the key that DPoP proofs are
// signed with by default (ES256).
//
// A DPoP-bound refresh token works only with the key it was bound to: keep
// the key as long as the tokens, for example with SaveKey or
// LoadOrCreateKey beside the token file of a FileStore.
func GenerateKey() (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("autorefresh: generating a key: %w", err)
	}
	return key, nil
}

// LoadKey reads a private key from the PEM file at path: one "PRIVATE KEY"
// block (PKCS #8, as SaveKey and "openssl genpkey" write it) holding an
// ECDSA P-256 or P-384, RSA (at least 2048 bits) or Ed25519 key. Text around
// the block is ignored. The key returned is an *ecdsa.PrivateKey, an
// *rsa.PrivateKey or an ed25519.PrivateKey.
//
// Like FileStore, LoadKey refuses a file that is a symbolic link or not a
// regular file and, on Linux, macOS and the BSDs, one that group or others
// may write (its key could have been planted; "chmod 600" fixes it); it
// takes the read permission of group and others away from a file that
// grants it. Such errors wrap ErrUnsafeFile.
//
// Errors are *FileError values with Op "load key" that name the path and
// never hold key material. A missing file gives an error wrapping
// fs.ErrNotExist; one that is not a PEM private key, ErrCorruptKeyFile; a
// key of another kind, an encrypted key or a PEM block in another format
// ("EC PRIVATE KEY", "RSA PRIVATE KEY"; "openssl pkcs8 -topk8 -nocrypt"
// converts them), ErrUnsupportedKey.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, fileError("load key", path, err)
	}
	defer clear(data)
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fileError("load key", path, err)
	}
	return key, nil
}

// readKeyFile reads the key file at path with the checks of readTokenFile.
func readKeyFile(path string) ([]byte, error) {
	data, err := readPrivateFile(path, maxKeyFileSize)
	if errors.Is(err, errFileTooLarge) {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorruptKeyFile, maxKeyFileSize)
	}
	return data, err
}

// parseKeyPEM parses the content of a key file. Its errors never quote the
// content.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%w: file is empty", ErrCorruptKeyFile)
		}
		return nil, fmt.Errorf("%w: no PEM block", ErrCorruptKeyFile)
	}
	defer clear(block.Bytes)
	switch block.Type {
	case "PRIVATE KEY":
	case "EC PRIVATE KEY", "RSA PRIVATE KEY":
		return nil, fmt.Errorf(`%w: PEM block %q is not PKCS #8 "PRIVATE KEY" (openssl pkcs8 -topk8 -nocrypt converts it)`, ErrUnsupportedKey, block.Type)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: the key is encrypted", ErrUnsupportedKey)
	default:
		return nil, fmt.Errorf(`%w: PEM block %q is not a "PRIVATE KEY"`, ErrCorruptKeyFile, pemTypeName(block.Type))
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The x509 error is not kept: it describes the structure of the
		// key material.
		return nil, fmt.Errorf("%w: not a valid PKCS #8 private key", ErrCorruptKeyFile)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: a key of type %T cannot sign", ErrUnsupportedKey, key)
	}
	if _, err := defaultAlg(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// pemTypeName returns the type of a PEM block for an error message,
// shortened if someone put a long text there.
func pemTypeName(t string) string {
	if len(t) > 40 {
		return t[:40] + "..."
	}
	return t
}

// SaveKey writes key to the file at path as a PEM "PRIVATE KEY" block
// (PKCS #8) that LoadKey reads. It writes a temporary file in the same
// directory with mode 0600, syncs it, renames it over path and syncs the
// directory, so that a crash leaves the old file or the new one, never a
// torn one; missing parent directories are created with mode 0700. Like
// FileStore it refuses to replace a symbolic link or anything but a regular
// file (ErrUnsafeFile).
//
// key must be an *ecdsa.PrivateKey (P-256 or P-384), an *rsa.PrivateKey (at
// least 2048 bits) or an ed25519.PrivateKey; other keys, such as those held
// in an HSM, give an error wrapping ErrUnsupportedKey. Errors are
// *FileError values with Op "save key" that name the path and never hold
// key material.
//
// A DPoP-bound refresh token works only with the key it was bound to, so
// keep the key file beside the token file: losing it, or replacing it
// while tokens are stored, ends the session at the next refresh.
func SaveKey(path string, key crypto.Signer) error {
	data, err := encodeKeyPEM(key)
	if err != nil {
		return fileError("save key", path, err)
	}
	defer clear(data)
	if err := writeKeyFile(path, data, true); err != nil {
		return fileError("save key", path, err)
	}
	return nil
}

// encodeKeyPEM returns the PEM PKCS #8 encoding of key.
func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no key", ErrUnsupportedKey)
	}
	if _, err := defaultAlg(key.Public()); err != nil {
		return nil, err
	}
	var k any
	switch key := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		k = key
	case *ed25519.PrivateKey:
		k = *key
	default:
		return nil, fmt.Errorf("%w: a key of type %T cannot be exported", ErrUnsupportedKey, key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: the key cannot be encoded", ErrUnsupportedKey)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeKeyFile writes data to path atomically with mode 0600, through a
// temporary file in the same directory. With replace it renames the
// temporary file over path; without, it gives path the file only if path
// does not exist yet, and otherwise returns an error wrapping fs.ErrExist.
func writeKeyFile(path string, data []byte, replace bool) (err error) {
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
		if !replace {
			return fs.ErrExist
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
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = linkNew(tmp, path)
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// linkNew gives the file tmp the name path if path does not exist, and
// removes the name tmp. A hard link fails if path exists, so two processes
// creating a key at once cannot overwrite each other's; where the file
// system has no hard links, a rename after a check has to do.
func linkNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		return os.Remove(tmp)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, lerr := os.Lstat(path); !errors.Is(lerr, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadOrCreateKey returns the key in the file at path (see LoadKey). When
// the file does not exist, it generates a key (see GenerateKey), saves it
// there (see SaveKey) and returns it. Two processes doing this at once end
// up with the same key: a file created meanwhile is never replaced, but
// loaded. Any other error of LoadKey, such as a corrupt or unsafe file, is
// returned as it is: the file is never overwritten.
//
// Keep the key file beside the token file (for example "tokens.json" and
// "dpop-key.pem" in one directory): a DPoP-bound refresh token works only
// with its key, so a key lost or replaced while tokens are stored ends the
// session at the next refresh.
func LoadOrCreateKey(path string) (crypto.Signer, error) {
	key, err := LoadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = GenerateKey()
	if err != nil {
		return nil, err
	}
	data, err := encodeKeyPEM(key)
	if err != nil {
		return nil, fileError("save key", path, err)
	}
	defer clear(data)
	err = writeKeyFile(path, data, false)
	if errors.Is(err, fs.ErrExist) {
		return LoadKey(path) // created by someone else meanwhile
	}
	if err != nil {
		return nil, fileError("save key", path, err)
	}
	return key, nil
}
