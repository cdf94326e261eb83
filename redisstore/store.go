package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// DefaultSaveTimeout is the least time that Save gives a write,
	// whatever its context.
	DefaultSaveTimeout = 10 * time.Second
)

// Store is an autorefresh.TokenStore that keeps one token pair in Redis,
// and an autorefresh.Locker whose lock is held in Redis, so that several
// processes or machines can share one session. See the package doc for the
// stored values, for the fencing of the writes made under the lock, and for
// the lock's guarantees and limits.
//
// A Store is safe for concurrent use. Its zero value is not usable (its
// methods return an error): create one with New. Several Store values (in
// one process or many) that name the same key share the same tokens and the
// same lock; each Store value is one holder of the lock, whichever of its
// goroutines called Lock. A Store prints as its keys in every fmt verb and in
// slog, never with its client, whose options may hold a Redis password.
type Store struct {
	client      redis.UniversalClient
	key         string
	lockKey     string
	ttl         time.Duration
	lease       time.Duration
	minRetry    time.Duration
	maxRetry    time.Duration
	saveTimeout time.Duration

	mu   sync.Mutex // guards held
	held *fence     // the fence of the lock this Store value holds, or nil
}

// An Option configures a Store created by New.
type Option func(*Store)

// WithTTL makes every save give the stored pair a time to live of d, after
// which Redis deletes it and Load reports autorefresh.ErrTokensLost. Set it
// to the refresh token's lifetime (the provider's idle session timeout) so
// that a pair that can no longer be refreshed does not linger. Each save
// starts the TTL anew. Clear gives its tombstone the same TTL: the pair it
// replaced cannot be refreshed after that either. If d is zero or negative,
// or WithTTL is not given, pairs and tombstones never expire.
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

// WithSaveTimeout sets the least time that Save gives a write to Redis,
// whatever the deadline or cancellation of its context: the pair it saves
// may be the only copy of a freshly rotated refresh token. A context whose deadline is later gives them until then.
// Non-positive values are ignored. The default is DefaultSaveTimeout.
func WithSaveTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.saveTimeout = d
		}
	}
}

// New returns a Store that keeps its token pair as JSON under key, using
// client, which may be a *redis.Client, a *redis.ClusterClient, a failover
// (Sentinel) client or a *redis.Ring. The store does not own client: closing
// it is the caller's job. With a nil client every method returns an error.
func New(client redis.UniversalClient, key string, opts ...Option) *Store {
	s := &Store{
		client:      client,
		key:         key,
		lockKey:     key + ":lock",
		lease:       DefaultLease,
		minRetry:    DefaultMinRetry,
		maxRetry:    DefaultMaxRetry,
		saveTimeout: DefaultSaveTimeout,
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

// errNoClient is returned by every method of a Store without a client.
var errNoClient = errors.New("autorefresh: redisstore: Store has no Redis client; create it with New")

// check returns errNoClient for a Store without a client.
func (s *Store) check() error {
	if s == nil || s.client == nil {
		return errNoClient
	}
	return nil
}

// Load returns the stored pair. When there is none, its error wraps
// autorefresh.ErrNoTokens, and also autorefresh.ErrTokensLost when the key
// does not exist (see the package doc). A value that is not a record or a
// tombstone, or a record holding neither an access nor a refresh token (a
// pair with only one of them is valid), is an error wrapping
// autorefresh.ErrCorruptRecord.
//
// The first Load after Lock (whatever it found, a corrupt value included)
// is what the Save and Clear made under the lock compare with; see
// "Fencing" in the package doc.
func (s *Store) Load(ctx context.Context) (autorefresh.Tokens, error) {
	if err := s.check(); err != nil {
		return autorefresh.Tokens{}, err
	}
	// Taken before the read: only a read made while the lock is held
	// tells the fence what the key holds under it.
	f := s.heldFence()
	b, err := s.client.Get(ctx, s.key).Bytes()
	if errors.Is(err, redis.Nil) {
		f.observe(missingDigest, 0)
		return autorefresh.Tokens{}, s.wrap("load", autorefresh.ErrTokensLost)
	}
	if err != nil {
		return autorefresh.Tokens{}, s.wrap("load", err)
	}
	t, v, cleared, err := decodeRecord(b)
	if f != nil {
		f.observe(digest(b), v)
	}
	switch {
	case err != nil:
		return autorefresh.Tokens{}, s.wrap("load", err)
	case cleared:
		return autorefresh.Tokens{}, s.wrap("load", errCleared)
	}
	return t, nil
}

// Save stores t under the store's key, replacing what was there, at the
// stored version plus one (1 over a missing key), with the TTL set by
// WithTTL if any. The version is read and written by one script, so
// concurrent saves from any number of replicas each get a version of their
// own. Tokens with neither an access nor a refresh token make a value that
// Load reports as corrupt; use Clear to empty the store.
//
// While this Store value holds its lock and has read or written the key
// under it, Save is fenced: it writes only if the key still holds what this holder last
// read or wrote (or nothing), and otherwise writes nothing and returns an
// error wrapping autorefresh.ErrLockLost. See "Fencing" in the package doc.
//
// Save does not end with ctx: it gives the write the time set by
// WithSaveTimeout, or until ctx's deadline if that is later.
func (s *Store) Save(ctx context.Context, t autorefresh.Tokens) error {
	if err := s.check(); err != nil {
		return err
	}
	prefix, err := recordPrefix(t)
	if err != nil {
		return s.wrap("save", err)
	}
	ctx, cancel := s.saveContext(ctx)
	defer cancel()
	record := func(v uint64) []byte { // what the script writes at version v
		return append(strconv.AppendUint(slices.Clip(prefix), v, 10), '}')
	}
	if err := s.change(ctx, saveScript, []any{prefix, s.ttlMillis()}, record); err != nil {
		return s.wrap("save", err)
	}
	return nil
}

// saveContext returns the context of a save: ctx's values without its
// cancellation, and a deadline that is the later of ctx's and the save
// timeout from now.
func (s *Store) saveContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.saveTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = max(d, time.Until(deadline))
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// Clear ends the session for every replica: it replaces the stored pair by a
// tombstone at the stored version plus one (1 over a missing key), with the
// TTL set by WithTTL if any. A tombstone is left as it is. Clearing an
// empty store is not an error. See the package doc for why the key is not
// deleted.
//
// While this Store value holds its lock and has read or written the key
// under it, Clear is fenced as Save is: it changes nothing when another writer
// changed the key, and returns an error wrapping autorefresh.ErrLockLost.
func (s *Store) Clear(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.change(ctx, clearScript, []any{s.ttlMillis()}, tombstone); err != nil {
		return s.wrap("clear", err)
	}
	return nil
}

// ttlMillis returns the TTL of saved values in milliseconds for the
// scripts, 0 for none. A TTL under a millisecond is rounded up to one.
func (s *Store) ttlMillis() int64 {
	if s.ttl <= 0 {
		return 0
	}
	return max(s.ttl.Milliseconds(), 1)
}

// wrap returns err as the error of the operation op on the store's key.
func (s *Store) wrap(op string, err error) error {
	return &opError{op: op, key: s.key, err: err}
}

// opError is the error of an operation on a key. Its text is
// "autorefresh: redisstore: <op> <quoted key>: <err without its
// "autorefresh: " prefix>".
type opError struct {
	op, key string
	err     error
}

func (e *opError) Error() string {
	return "autorefresh: redisstore: " + e.op + " " + strconv.Quote(e.key) + ": " +
		strings.TrimPrefix(e.err.Error(), "autorefresh: ")
}

func (e *opError) Unwrap() error { return e.err }

// String describes s by its keys. It never shows the client, whose options
// may hold a password.
func (s *Store) String() string {
	if s == nil {
		return "redisstore.Store(nil)"
	}
	return "redisstore.Store{key: " + strconv.Quote(s.key) + ", lockKey: " + strconv.Quote(s.lockKey) + "}"
}

// GoString is like String.
func (s *Store) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb prints s as String does.
func (s *Store) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer: s is logged as String describes it.
func (s *Store) LogValue() slog.Value { return slog.StringValue(s.String()) }
