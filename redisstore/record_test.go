package redisstore

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// FuzzDecodeRecord checks that decodeRecord never panics, reports every
// value it refuses as corrupt, and reads back what Save writes of what it
// accepted.
func FuzzDecodeRecord(f *testing.F) {
	for _, seed := range []string{
		`{"accessToken":"a","refreshToken":"r","tokenType":"Bearer","expiry":"2030-01-02T03:04:05Z","version":7}`,
		`{"accessToken":"a","refreshToken":"r","expiry":"2030-01-02T03:04:05Z"}`,
		`{"version":8,"cleared":true}`, `{"cleared":true}`, `{"cleared":false,"accessToken":"a"}`,
		`{"accessToken":"a","version":9007199254740991}`, `{"accessToken":"a","version":9007199254740992}`,
		`{"accessToken":"a","version":-1}`, `{"accessToken":"a","version":1.0}`, `{"version":"1"}`,
		`{"accessToken":"a","version":1,"version":2}`, `{"Version":3,"accessToken":"a"}`,
		`{}`, `null`, `[]`, ``, `{"accessToken":1}`, `{"expiry":"soon","accessToken":"a"}`, `{"accessToken":"a"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, v, cleared, err := decodeRecord(data)
		if v > maxVersion {
			t.Fatalf("version %d is larger than %d", v, uint64(maxVersion))
		}
		if err != nil {
			if !errors.Is(err, autorefresh.ErrCorruptRecord) {
				t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
			}
			return
		}
		if cleared {
			if !got.IsZero() {
				t.Fatalf("a tombstone decoded with tokens")
			}
			return
		}
		if got.IsZero() {
			t.Fatalf("decoded a record without tokens without an error")
		}
		checkReencode(t, got, v)
	})
}

// checkReencode checks that the record that Save writes of t at version v
// decodes to t and v.
func checkReencode(t *testing.T, tok autorefresh.Tokens, v uint64) {
	t.Helper()
	prefix, err := recordPrefix(tok)
	if err != nil {
		return // an expiry that JSON cannot hold
	}
	again, av, cleared, err := decodeRecord(append(prefix, strconv.FormatUint(v, 10)+"}"...))
	if err != nil || cleared || av != v || again.AccessToken != tok.AccessToken || again.RefreshToken != tok.RefreshToken ||
		again.TokenType != tok.TokenType || !again.Expiry.Equal(tok.Expiry) {
		t.Fatalf("re-encoding changed the record (err %v)", err)
	}
}

// TestRecordPrefix checks the record that the save script completes.
func TestRecordPrefix(t *testing.T) {
	b, err := recordPrefix(autorefresh.Tokens{AccessToken: "a", TokenType: "Bearer", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)})
	if want := `{"accessToken":"a","refreshToken":"","tokenType":"Bearer","expiry":"2030-01-02T03:04:05Z","version":`; err != nil || string(b) != want {
		t.Errorf("recordPrefix = %s, %v; want %s", b, err, want)
	}
}
