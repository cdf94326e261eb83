package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileStoreFormat checks the documented format of the token file, byte
// for byte.
func TestFileStoreFormat(t *testing.T) {
	ctx := context.Background()
	exp := time.Date(2031, 5, 4, 10, 20, 30, 0, time.UTC)
	jwtAccess := testJWT(t, exp)
	tests := []struct {
		name  string
		saves []Tokens
		want  string
	}{
		{
			name: "all fields, second save",
			saves: []Tokens{
				{AccessToken: "a0", RefreshToken: "r0"},
				{AccessToken: "access-xyz", RefreshToken: "refresh-xyz", TokenType: "DPoP", Expiry: exp.In(time.FixedZone("X", 3600))},
			},
			want: `{
  "accessToken": "access-xyz",
  "refreshToken": "refresh-xyz",
  "tokenType": "DPoP",
  "expiry": "2031-05-04T10:20:30Z",
  "version": 2
}
`,
		},
		{
			name:  "no token type, no expiry",
			saves: []Tokens{{AccessToken: "access-xyz", RefreshToken: ""}},
			want: `{
  "accessToken": "access-xyz",
  "refreshToken": "",
  "version": 1
}
`,
		},
		{
			name:  "expiry from the JWT",
			saves: []Tokens{{AccessToken: jwtAccess, RefreshToken: "refresh-xyz", TokenType: "Bearer"}},
			want: `{
  "accessToken": "` + jwtAccess + `",
  "refreshToken": "refresh-xyz",
  "tokenType": "Bearer",
  "expiry": "2031-05-04T10:20:30Z",
  "version": 1
}
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tokenPath(t)
			s := NewFileStore(path)
			for _, tok := range tt.saves {
				if err := s.Save(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Errorf("file =\n%s\nwant\n%s", data, tt.want)
			}
			got, v, err := s.loadVersion()
			last := tt.saves[len(tt.saves)-1]
			if err != nil || got.TokenType != last.TokenType || v != uint64(len(tt.saves)) {
				t.Errorf("Load = token type %q, version %d, %v; want %q, %d, nil", got.TokenType, v, err, last.TokenType, len(tt.saves))
			}
		})
	}
}

func TestFileStoreCorrupt(t *testing.T) {
	valid, err := encodeTokenFile(Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh, TokenType: "Bearer", Expiry: time.Unix(2e9, 0)}, 12)
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
		"version only":      `{"version": 3}`,
		// A version must be a decimal integer from 0 to 2^53-1.
		"version string":      `{"accessToken": "a", "version": "3"}`,
		"version null":        `{"accessToken": "a", "version": null}`,
		"version negative":    `{"accessToken": "a", "version": -1}`,
		"version negative 0":  `{"accessToken": "a", "version": -0}`,
		"version fraction":    `{"accessToken": "a", "version": 1.5}`,
		"version point zero":  `{"accessToken": "a", "version": 3.0}`,
		"version exponent":    `{"accessToken": "a", "version": 3e0}`,
		"version 2^53":        `{"accessToken": "a", "version": 9007199254740992}`,
		"version 2^64":        `{"accessToken": "a", "version": 18446744073709551616}`,
		"version object":      `{"accessToken": "a", "version": {}}`,
		"token type a number": `{"accessToken": "a", "tokenType": 1}`,
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

// TestFileStoreCorruptVersion checks the version of a corrupt file, and that
// a save replaces the file at the next version: a process that holds good
// tokens can overwrite a corrupt file, and versions keep rising.
func TestFileStoreCorruptVersion(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		content string
		version uint64
	}{
		{"not JSON", "garbage", 0},
		{"truncated", `{"accessToken": "a", "version": 7`, 0},
		{"no tokens", `{"version": 7}`, 7},
		{"wrong token type", `{"accessToken": 42, "version": 7}`, 7},
		{"bad expiry", `{"accessToken": "a", "expiry": "soon", "version": 7}`, 7},
		{"bad version", `{"accessToken": "a", "version": "7"}`, 0},
		{"version 2^53-1", `{"version": 9007199254740991}`, maxVersion},
		{"other member case", `{"Version": 7}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tokenPath(t)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s := NewFileStore(path)
			_, v, err := s.loadVersion()
			if !errors.Is(err, ErrCorruptFile) || v != tt.version {
				t.Fatalf("Load = version %d, %v; want %d, ErrCorruptFile", v, err, tt.version)
			}
			err = s.Save(ctx, Tokens{AccessToken: "a"})
			if v == maxVersion {
				if err == nil {
					t.Error("Save past the largest version succeeded; want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, got, err := s.loadVersion(); err != nil || got != v+1 {
				t.Errorf("Load after Save = version %d, %v; want %d, nil", got, err, v+1)
			}
		})
	}
}

// TestFileStoreSizeLimit checks that Save and Load apply one limit to the
// file, and that a Save over it leaves the old file and no temporary file.
func TestFileStoreSizeLimit(t *testing.T) {
	ctx := context.Background()
	old := Tokens{AccessToken: "old-a", RefreshToken: "old-r"}
	// base is the size of a file at version 2 whose access token is "".
	base, err := encodeTokenFile(Tokens{RefreshToken: secretRefresh}, 2)
	if err != nil {
		t.Fatal(err)
	}
	fits := strings.Repeat("a", maxTokenFileSize-len(base))
	tests := []struct {
		name    string
		access  string
		tooLong bool
	}{
		{"exactly the limit", fits, false},
		{"one byte over", fits + "a", true},
		// JSON escapes "<" as "\u003c": 200 KiB of them make 1.2 MB.
		{"escaping grows it", strings.Repeat("<", 200<<10), true},
		{"far over", strings.Repeat("a", 2*maxTokenFileSize), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tokenPath(t)
			s := NewFileStore(path)
			if err := s.Save(ctx, old); err != nil {
				t.Fatal(err)
			}
			big := Tokens{AccessToken: tt.access, RefreshToken: secretRefresh}
			if tt.tooLong {
				checkSaveTooLarge(t, s, big)
				return
			}
			if err := s.Save(ctx, big); err != nil {
				t.Fatalf("Save of a file of exactly %d bytes: %v", maxTokenFileSize, err)
			}
			if fi, _ := os.Stat(path); fi.Size() != maxTokenFileSize {
				t.Errorf("file size = %d; want %d", fi.Size(), maxTokenFileSize)
			}
			if got, err := s.Load(ctx); err != nil || got.AccessToken != tt.access {
				t.Errorf("Load of a file of %d bytes: %v; want the saved tokens", maxTokenFileSize, err)
			}
		})
	}
}

// checkSaveTooLarge checks that Save of big fails with
// ErrRecordTooLarge and leave the token file and its directory as they were.
func checkSaveTooLarge(t *testing.T, s *FileStore, big Tokens) {
	t.Helper()
	ctx := context.Background()
	before := fileContent(t, s.path)
	err := s.Save(ctx, big)
	var fe *FileError
	if !errors.Is(err, ErrRecordTooLarge) || !errors.As(err, &fe) || fe.Op != "save" || fe.Path != s.path {
		t.Fatalf("Save of a too large record: %v; want a *FileError for save wrapping ErrRecordTooLarge", err)
	}
	if strings.Contains(err.Error(), "REFRESH") {
		t.Errorf("error %q shows a token value", err)
	}
	if fileContent(t, s.path) != before {
		t.Errorf("the file changed after the refused save")
	}
	if entries, _ := os.ReadDir(filepath.Dir(s.path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries; want only the token file", len(entries))
	}
}

func FuzzDecodeTokenFile(f *testing.F) {
	valid, _ := encodeTokenFile(Tokens{AccessToken: "a", RefreshToken: "r", TokenType: "Bearer", Expiry: time.Unix(2e9, 0)}, 3)
	for _, seed := range []string{
		string(valid), "", "{}", "null", "[]", `{"accessToken": 1}`, `{"expiry": "x"}`,
		`{"theme":"dark"}`, `{"accessToken":"","refreshToken":""}`, `{"refreshToken":"r"}`,
		string(valid[:len(valid)/2]), `{"accessToken":"a","refreshToken":"r","extra":[1,{}]}`,
		`{"accessToken":"a","version":0}`, `{"accessToken":"a","version":9007199254740991}`,
		`{"accessToken":"a","version":9007199254740992}`, `{"accessToken":"a","version":-1}`,
		`{"accessToken":"a","version":1.0}`, `{"accessToken":"a","version":"1"}`, `{"version":5}`,
		`{"accessToken":"a","tokenType":"DPoP"}`, `{"accessToken":"a","version":1,"version":2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, v, err := decodeTokenFile(data)
		if v > maxVersion {
			t.Fatalf("version %d is larger than %d", v, uint64(maxVersion))
		}
		if err != nil {
			if !errors.Is(err, ErrCorruptFile) {
				t.Fatalf("error %v does not wrap ErrCorruptFile", err)
			}
			return
		}
		if got.IsZero() {
			t.Fatalf("decoded a file without tokens without an error")
		}
		enc, err := encodeTokenFile(got, v)
		if err != nil {
			return // an expiry that JSON cannot hold, or too large
		}
		again, av, err := decodeTokenFile(enc)
		if err != nil {
			t.Fatalf("cannot decode what was encoded: %v", err)
		}
		if again.AccessToken != got.AccessToken || again.RefreshToken != got.RefreshToken ||
			again.TokenType != got.TokenType || !again.ExpiresAt().Equal(got.ExpiresAt()) || av != v {
			t.Fatalf("re-encoding changed the record")
		}
	})
}

// TestFileStoreKeepsEveryTokenItAccepts: SetTokens accepts any token that is
// a valid header value, bytes 0x80 to 0xff included (obs-text, RFC 9110
// section 5.5; a token taken from a response header, or a Latin-1 config,
// has them). FileStore's Save encodes it with encoding/json, which replaces
// bytes that are not UTF-8 by U+FFFD without an error: the file holds
// another token than the one saved. After a restart the process sends and
// refreshes with the mangled pair, and the session is gone; within the
// process, the next refresh takes the mangled pair for another holder's
// and adopts it. Save must store what it is given or refuse it, and the
// Transport must refuse at the door what its stores cannot keep.
func TestFileStoreKeepsEveryTokenItAccepts(t *testing.T) {
	ctx := context.Background()
	tok := Tokens{AccessToken: "acc\xe9ss-token", RefreshToken: "refresh-\xff-token"}
	path := filepath.Join(t.TempDir(), "tokens.json")
	tr := &Transport{Store: NewFileStore(path)}
	if err := tr.SetTokens(ctx, tok); err != nil {
		return // refused at the door: fine
	}
	got, err := NewFileStore(path).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken {
		t.Errorf("SetTokens accepted %q / %q, and the file gives back %q / %q; want the same tokens, or SetTokens to refuse them",
			tok.AccessToken, tok.RefreshToken, got.AccessToken, got.RefreshToken)
	}
}
