package redisstore_test

import (
	"context"
	crand "crypto/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

// addrEnv names the environment variable that gives the address of the
// redis-server the tests use.
const addrEnv = "AUTOREFRESH_REDIS_ADDR"

const howToRun = `these tests need a real redis-server on loopback:
	apt-get update && apt-get install -y redis-server
	eval "$(bash testdata/redis.sh start)"   # in redisstore/; sets ` + addrEnv + `
	go test -race ./...
	bash testdata/redis.sh stop
or start one yourself (redis-server --port 6390 --save "" --appendonly no --daemonize yes)
and set ` + addrEnv + `=127.0.0.1:6390`

var (
	pingOnce    sync.Once
	pingProblem string // why Redis cannot be used, or ""
)

// redisAddr returns the address of the test Redis. When there is none it
// skips the test, or fails it when CI is "true".
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(addrEnv)
	pingOnce.Do(func() {
		if addr == "" {
			pingProblem = addrEnv + " is not set"
			return
		}
		c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second, MaxRetries: -1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			pingProblem = "no Redis answers at " + addrEnv + "=" + addr + " (" + err.Error() + ")"
		}
	})
	if pingProblem != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; in CI .ci/run must start Redis before the tests; %s", pingProblem, howToRun)
		}
		t.Skipf("%s; %s", pingProblem, howToRun)
	}
	return addr
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
