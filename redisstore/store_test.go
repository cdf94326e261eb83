package redisstore_test

import (
	"context"
	"errors"
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

func TestLoadEmpty(t *testing.T) {
	_, s := setup(t)
	got, err := s.Load(context.Background())
	if !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Fatalf("Load of empty store: err = %v; want ErrNoTokens", err)
	}
	if !got.IsZero() {
		t.Errorf("Load of empty store = %v; want zero Tokens", got)
	}
}

func TestClear(t *testing.T) {
	c, s := setup(t)
	ctx := context.Background()
	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear of empty store: %v", err)
	}
	if err := s.Save(ctx, autorefresh.Tokens{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("Load after Clear: err = %v; want ErrNoTokens", err)
	}
	if n := c.Exists(ctx, s.Key()).Val(); n != 0 {
		t.Errorf("EXISTS after Clear = %d; want 0", n)
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
			if errors.Is(err, autorefresh.ErrNoTokens) {
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
		if !errors.Is(err, redisstore.ErrCorrupt) {
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
