package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

const (
	secretAccess  = "secret-access-token-value"
	secretRefresh = "secret-refresh-token-value"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	for i, want := range []autorefresh.Tokens{
		{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)},
		{AccessToken: "a2", RefreshToken: "r2"},
	} {
		if err := s.Save(ctx, want); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("Load %d: %v", i, err)
		}
		if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || !got.Expiry.Equal(want.Expiry) {
			t.Errorf("Load %d = %+v (access %q refresh %q); want access %q refresh %q expiry %v",
				i, got, got.AccessToken, got.RefreshToken, want.AccessToken, want.RefreshToken, want.Expiry)
		}
	}
}

func TestSharedBetweenClients(t *testing.T) {
	c1, s1 := setup(t)
	s2 := redisstore.New(newClient(t), s1.Key())
	ctx := context.Background()
	if err := s1.Save(ctx, autorefresh.Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != "a" || got.RefreshToken != "r" {
		t.Errorf("Load from second client = %q/%q; want a/r", got.AccessToken, got.RefreshToken)
	}
	if n := c1.Exists(ctx, s1.Key()).Val(); n != 1 {
		t.Errorf("EXISTS %s = %d; want 1", s1.Key(), n)
	}
}

// TestLoadEmpty checks that a key that was never written loads as lost
// tokens, which are also no tokens.
func TestLoadEmpty(t *testing.T) {
	_, s := setup(t)
	got, err := s.Load(context.Background())
	if !errors.Is(err, autorefresh.ErrTokensLost) || !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Fatalf("Load of a missing key: err = %v; want ErrTokensLost and ErrNoTokens", err)
	}
	if !got.IsZero() {
		t.Errorf("Load of a missing key = %v; want zero Tokens", got)
	}
}

// TestClear checks that Clear leaves a tombstone one version above what it
// replaced, which loads as no tokens but not as lost tokens, and that a
// second Clear leaves it as it is.
func TestClear(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear of a missing key: %v", err)
	}
	if got := c.Get(ctx, s.Key()).Val(); got != `{"version":1,"cleared":true}` {
		t.Errorf("value after Clear of a missing key = %s; want the tombstone at version 1", got)
	}
	if err := s.Save(ctx, autorefresh.Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Clear(ctx); err != nil {
			t.Fatalf("Clear #%d: %v", i+1, err)
		}
		if got := c.Get(ctx, s.Key()).Val(); got != `{"version":3,"cleared":true}` {
			t.Errorf("value after Clear #%d = %s; want the tombstone at version 3", i+1, got)
		}
		_, err := s.Load(ctx)
		if !errors.Is(err, autorefresh.ErrNoTokens) || errors.Is(err, autorefresh.ErrTokensLost) {
			t.Errorf("Load after Clear #%d: %v; want ErrNoTokens and not ErrTokensLost", i+1, err)
		}
	}
}

func TestTTL(t *testing.T) {
	ctx := context.Background()
	pair := autorefresh.Tokens{AccessToken: "a", RefreshToken: "r"}

	t.Run("none", func(t *testing.T) {
		c, s := setup(t)
		if err := s.Save(ctx, pair); err != nil {
			t.Fatal(err)
		}
		if got := c.PTTL(ctx, s.Key()).Val(); got != -1 {
			t.Errorf("PTTL without WithTTL = %v; want -1 (no expiry)", got)
		}
	})

	t.Run("set and renewed by Save", func(t *testing.T) {
		const ttl = time.Hour
		c, s := setup(t, redisstore.WithTTL(ttl))
		if err := s.Save(ctx, pair); err != nil {
			t.Fatal(err)
		}
		if got := c.PTTL(ctx, s.Key()).Val(); got <= 0 || got > ttl {
			t.Errorf("PTTL after Save = %v; want in (0, %v]", got, ttl)
		}
		c.PExpire(ctx, s.Key(), time.Minute)
		if err := s.Save(ctx, pair); err != nil {
			t.Fatal(err)
		}
		if got := c.PTTL(ctx, s.Key()).Val(); got <= time.Minute {
			t.Errorf("PTTL after second Save = %v; want more than %v: Save must start the TTL anew", got, time.Minute)
		}
	})

	t.Run("expires", func(t *testing.T) {
		_, s := setup(t, redisstore.WithTTL(20*time.Millisecond))
		if err := s.Save(ctx, pair); err != nil {
			t.Fatal(err)
		}
		// Redis expires the key; wait for it (bounded) instead of
		// asserting when.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := s.Load(ctx)
			if errors.Is(err, autorefresh.ErrTokensLost) {
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatal("pair saved with a 20ms TTL still loads after 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestLoadCorrupt(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	for i, v := range []string{
		secretAccess,
		`{"accessToken": 42, "refreshToken": "` + secretRefresh + `"}`,
		`{"accessToken": "` + secretAccess + `", "refreshToken": ` + secretRefresh + `}`,
		// JSON that holds no token is some other value, not an empty
		// store.
		`null`,
		`{}`,
		`{"x":1}`,
		`{"accessToken": "", "refreshToken": ""}`,
		`{"expiry": "2031-05-04T10:20:30Z"}`,
	} {
		c.Set(ctx, s.Key(), v, 0)
		got, err := s.Load(ctx)
		if !errors.Is(err, autorefresh.ErrCorruptRecord) {
			t.Errorf("Load of corrupt value #%d (%d bytes): got %v, err = %v; want an error wrapping the corrupt error",
				i, len(v), got, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "secret") {
			t.Errorf("Load error %q shows a token value", msg)
		}
	}
}

// TestLoadOneToken checks that a pair with only one of its tokens loads.
func TestLoadOneToken(t *testing.T) {
	_, s := setup(t)
	ctx := context.Background()
	for _, want := range []autorefresh.Tokens{{AccessToken: "a"}, {RefreshToken: "r"}} {
		if err := s.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
			t.Errorf("Load = %q/%q; want %q/%q", got.AccessToken, got.RefreshToken, want.AccessToken, want.RefreshToken)
		}
	}
}

func TestErrorsWrapRedisAndHideTokens(t *testing.T) {
	c, s := setup(t)
	c.Close()
	ctx := context.Background()
	pair := autorefresh.Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh}

	errs := map[string]error{"Save": s.Save(ctx, pair), "Clear": s.Clear(ctx)}
	_, errs["Load"] = s.Load(ctx)
	_, errs["Lock"] = s.Lock(ctx)
	for op, err := range errs {
		if !errors.Is(err, redis.ErrClosed) {
			t.Errorf("%s on a closed client: err = %v; want one wrapping redis.ErrClosed", op, err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "secret") {
			t.Errorf("%s error %q shows a token value", op, msg)
		}
		if !strings.HasPrefix(msg, "autorefresh: redisstore: ") {
			t.Errorf("%s error %q; want prefix %q", op, msg, "autorefresh: redisstore: ")
		}
	}
}

// TestRecordFormat checks the stored value, byte for byte, against the
// format in the package doc.
func TestRecordFormat(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, tt := range []struct {
		save autorefresh.Tokens
		want string
	}{
		{autorefresh.Tokens{AccessToken: "a", RefreshToken: "r", TokenType: "DPoP", Expiry: exp},
			`{"accessToken":"a","refreshToken":"r","tokenType":"DPoP","expiry":"2030-01-02T03:04:05Z","version":1}`},
		{autorefresh.Tokens{AccessToken: "a2"},
			`{"accessToken":"a2","refreshToken":"","version":2}`},
		{autorefresh.Tokens{AccessToken: `"q"\<`, RefreshToken: "r3"},
			`{"accessToken":"\"q\"\\\u003c","refreshToken":"r3","version":3}`},
	} {
		if err := s.Save(ctx, tt.save); err != nil {
			t.Fatal(err)
		}
		if got := c.Get(ctx, s.Key()).Val(); got != tt.want {
			t.Errorf("value after save %d = %s; want %s", i+1, got, tt.want)
		}
		got, err := s.Load(ctx)
		if err != nil || got.AccessToken != tt.save.AccessToken || got.TokenType != tt.save.TokenType || !got.Expiry.Equal(tt.save.Expiry) {
			t.Errorf("Load after save %d = %v, %v; want what was saved", i+1, got, err)
		}
	}
}

// TestStorePrint checks that a Store prints as its keys in every fmt verb
// and in slog, never with its client's options (a Redis password).
func TestStorePrint(t *testing.T) {
	const password = "hunter2-redis-password"
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Username: "app", Password: password})
	defer c.Close()
	s := redisstore.New(c, "app:tokens", redisstore.WithLockKey("app:lock"))
	want := `redisstore.Store{key: "app:tokens", lockKey: "app:lock"}`
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%q) = %s; want %s", verb, got, want)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%+v %#v", struct{ Store *redisstore.Store }{s}, []*redisstore.Store{s})
	slog.New(slog.NewJSONHandler(&out, nil)).Info("m", "store", s)
	slog.New(slog.NewTextHandler(&out, nil)).Info("m", "store", s)
	if got := out.String(); strings.Contains(got, password) || strings.Count(got, "app:lock") != 4 {
		t.Errorf("output %s; want the store's keys four times and no password", got)
	}
	if got := fmt.Sprint((*redisstore.Store)(nil)); got != "redisstore.Store(nil)" {
		t.Errorf("Sprint(nil *Store) = %s; want redisstore.Store(nil)", got)
	}
}

// TestStoreWithoutClient checks that a zero Store, and one made with a nil
// client, return an error from every method instead of panicking.
func TestStoreWithoutClient(t *testing.T) {
	ctx := context.Background()
	for name, s := range map[string]*redisstore.Store{"zero": {}, "New(nil)": redisstore.New(nil, "k"), "nil": nil} {
		errs := map[string]error{
			"Save":  s.Save(ctx, autorefresh.Tokens{AccessToken: "a"}),
			"Clear": s.Clear(ctx),
		}
		_, errs["Load"] = s.Load(ctx)
		_, errs["Lock"] = s.Lock(ctx)
		for op, err := range errs {
			if err == nil || !strings.HasPrefix(err.Error(), "autorefresh: redisstore: ") {
				t.Errorf("%s: %s: error = %v; want one saying the store has no client", name, op, err)
			}
		}
	}
}
