package redisstore_test

import (
	"context"
	crand "crypto/rand"
	"os"
	"strings"
	"testing"

	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// redisAddr returns the address of the test Redis (see TestMain). When
// there is none it skips the test, or fails it when CI is "true".
func redisAddr(t testing.TB) string {
	t.Helper()
	if testRedis.problem != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Redis: %s; CI=true: the Redis tests must run", testRedis.problem)
		}
		testRedis.skipped.Store(true)
		t.Skipf("no Redis: %s", testRedis.problem)
	}
	return testRedis.addr
}

// newClient returns a client of its own (own connection pool) to the test
// Redis, closed when the test ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// uniqueKey returns a key prefix no other test or run uses, and deletes the
// keys under it when the test ends.
func uniqueKey(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	name := strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
	key := "autorefresh-test:" + name + ":" + crand.Text()
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, key+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return key
}

// setup returns a client and a store under a unique key.
func setup(t testing.TB, opts ...redisstore.Option) (*redis.Client, *redisstore.Store) {
	t.Helper()
	c := newClient(t)
	return c, redisstore.New(c, uniqueKey(t, c), opts...)
}
