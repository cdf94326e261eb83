package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/redis/go-redis/v9"
)

var (
	_ autorefresh.TokenStore = (*Store)(nil)
	_ autorefresh.Locker     = (*Store)(nil)
)

// Defaults used by New when no Option overrides them.
const (
	// DefaultLease is how long the lock stays valid without renewal.
	DefaultLease = 10 * time.Second
	// DefaultMinRetry is the first wait of Lock while the lock is taken.
	DefaultMinRetry = 5 * time.Millisecond
	// DefaultMaxRetry is the longest wait of Lock between two attempts.
	DefaultMaxRetry = 50 * time.Millisecond
)

// Store is an autorefresh.TokenStore that keeps one token pair in Redis, and
// an autorefresh.Locker whose lock is held in Redis, so that several
// processes or machines can share one session. See the package doc for the
// lock's guarantees and limits.
//
// A Store is safe for concurrent use. Its zero value is not usable: create
// one with New. Several Store values (in one process or many) that name the
// same key share the same tokens and the same lock.
type Store struct {
	client   redis.UniversalClient
	key      string
	lockKey  string
	ttl      time.Duration
	lease    time.Duration
	minRetry time.Duration
	maxRetry time.Duration
}

// An Option configures a Store created by New.
type Option func(*Store)

// WithTTL makes every Save give the stored pair a time to live of d, after
// which Redis deletes it and Load reports autorefresh.ErrNoTokens. Set it to
// the refresh token's lifetime (the provider's idle session timeout) so that a
// pair that can no longer be refreshed does not linger. Each Save starts the
// TTL anew. If d is zero or negative, or WithTTL is not given, the pair never
// expires.
func WithTTL(d time.Duration) Option {
	return func(s *Store) { s.ttl = max(d, 0) }
}

// WithLockKey sets the Redis key that holds the lock. The default is the
// token key followed by ":lock". An empty name is ignored.
func WithLockKey(name string) Option {
	return func(s *Store) {
		if name != "" {
			s.lockKey = name
		}
	}
}

// WithLease sets how long the lock stays valid without renewal. While the
// lock is held, a goroutine renews the lease every third of it, so the lease
// only bounds how long a holder that stopped (crashed, was partitioned from
// Redis, or stalled in a long GC or VM pause) keeps others waiting. It must
// be longer than the worst pause of a holder between two renewals; see the
// package doc. Values below one millisecond are ignored. The default is
// DefaultLease.
func WithLease(d time.Duration) Option {
	return func(s *Store) {
		if d >= time.Millisecond {
			s.lease = d
		}
	}
}

// WithRetryInterval sets how often Lock asks Redis again while another holder
// has the lock: first after about minInterval, then doubling each time up to
// maxInterval, with random jitter. Non-positive values are ignored, and
// maxInterval is raised to minInterval if it is smaller. The defaults are
// DefaultMinRetry and DefaultMaxRetry.
func WithRetryInterval(minInterval, maxInterval time.Duration) Option {
	return func(s *Store) {
		if minInterval > 0 {
			s.minRetry = minInterval
		}
		if maxInterval > 0 {
			s.maxRetry = maxInterval
		}
		s.maxRetry = max(s.maxRetry, s.minRetry)
	}
}

// New returns a Store that keeps its token pair as JSON under key, using
// client, which may be a *redis.Client, a *redis.ClusterClient, a failover
// (Sentinel) client or a *redis.Ring. The store does not own client: closing
// it is the caller's job.
func New(client redis.UniversalClient, key string, opts ...Option) *Store {
	s := &Store{
		client:   client,
		key:      key,
		lockKey:  key + ":lock",
		lease:    DefaultLease,
		minRetry: DefaultMinRetry,
		maxRetry: DefaultMaxRetry,
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Key returns the Redis key that holds the token pair.
func (s *Store) Key() string { return s.key }

// LockKey returns the Redis key that holds the lock.
func (s *Store) LockKey() string { return s.lockKey }

// Load returns the stored pair, or autorefresh.ErrNoTokens when the key does
// not exist (never saved, cleared, or expired by its TTL). A value that is
// not a JSON token pair, or holds neither an access nor a refresh token (a
// pair with only one of them is valid), is an error.
func (s *Store) Load(ctx context.Context) (autorefresh.Tokens, error) {
	b, err := s.client.Get(ctx, s.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return autorefresh.Tokens{}, autorefresh.ErrNoTokens
	}
	if err != nil {
		return autorefresh.Tokens{}, fmt.Errorf("autorefresh: redisstore: load %q: %w", s.key, err)
	}
	var t autorefresh.Tokens
	// The decoder's error is left out: it can quote bytes of the value. A
	// value without tokens ("null", "{}", other JSON) is not an empty
	// store: Save never writes one, as Clear deletes the key.
	if err := json.Unmarshal(b, &t); err != nil || t.IsZero() {
		return autorefresh.Tokens{}, fmt.Errorf("autorefresh: redisstore: load %q: %w", s.key, errCorrupt)
	}
	return t, nil
}

// errCorrupt is wrapped by Load when the stored value is not a token pair,
// or holds neither an access nor a refresh token.
var errCorrupt = errors.New("stored value is not a JSON token pair")

// Save stores t under the store's key, replacing what was there, with the
// TTL set by WithTTL if any. Tokens with neither an access nor a refresh
// token make a value that Load reports as corrupt; use Clear to empty the
// store.
func (s *Store) Save(ctx context.Context, t autorefresh.Tokens) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("autorefresh: redisstore: encode tokens: %w", err)
	}
	if err := s.client.Set(ctx, s.key, b, s.ttl).Err(); err != nil {
		return fmt.Errorf("autorefresh: redisstore: save %q: %w", s.key, err)
	}
	return nil
}

// Clear deletes the stored pair. Clearing an empty store is not an error.
func (s *Store) Clear(ctx context.Context) error {
	if err := s.client.Del(ctx, s.key).Err(); err != nil {
		return fmt.Errorf("autorefresh: redisstore: clear %q: %w", s.key, err)
	}
	return nil
}
