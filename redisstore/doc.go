// Package redisstore keeps an autorefresh token pair in Redis and coordinates
// its refresh across processes and machines with a Redis lock.
//
// Run it when one session (one refresh token) is shared by several replicas
// of a service. A provider that rotates refresh tokens accepts each one once:
// if two replicas refresh with the same token, the second is rejected and
// many providers then revoke the whole session. With a Store as the
// Transport's Store, a replica that must refresh takes the lock, reads the
// pair again, and uses it if another replica already refreshed; only
// otherwise does it call the refresh endpoint, and it saves the new pair
// before unlocking.
//
//	rdb := redis.NewClient(&redis.Options{
//		Addr:                  "redis:6379",
//		ContextTimeoutEnabled: true, // honour the Transport's deadlines
//	})
//	store := redisstore.New(rdb, "myapp:tokens",
//		redisstore.WithTTL(30*24*time.Hour)) // the refresh token's lifetime
//	client := &http.Client{Transport: &autorefresh.Transport{
//		Store:     store,
//		Refresher: refresher,
//	}}
//
// Every replica uses the same key. The pair is stored as JSON under it; the
// lock lives under the key followed by ":lock".
//
// # Stored values
//
// The key holds one of two JSON values, written on one line:
//
//	{"accessToken":"eyJhbGciOi...","refreshToken":"8xLOxBtZp8...","tokenType":"Bearer","expiry":"2026-05-04T10:20:30Z","version":7}
//	{"version":8,"cleared":true}
//
// The first is a record: the token pair ("accessToken" and "refreshToken"
// always, one of them may be ""; "tokenType" only when the token endpoint
// gave one; "expiry", RFC 3339, only when known) and its version. The second
// is a tombstone, which Clear writes in place of the record. Members other
// than these are ignored.
//
// The version counts the changes: every save and every clear writes the
// stored version plus one (a missing key has version 0). A Lua script reads
// the stored value and writes the new one in one step, so concurrent saves
// from any number of replicas each get a version of their own, and each
// write leaves a value that differs from the one it replaced (see Fencing).
// The version of a value is its "version" member written as a decimal
// integer from 0 to 2^53-1 (the scripts' numbers are doubles). A record written by an older release has none, and counts and
// loads as version 0. Anything else counts as version 0 too, and Load
// reports such a value, like any value that is not a record or a tombstone,
// with an error wrapping autorefresh.ErrCorruptRecord.
//
// A tombstone and a missing key both hold no tokens (Load's error wraps
// autorefresh.ErrNoTokens), but they mean different things:
//
//   - A tombstone is a logout: Transport.Logout on any replica, or a refresh
//     token that the server rejected. Every replica that reads it ends its
//     session.
//   - A missing key means the pair was lost, not ended: it was never saved,
//     or Redis dropped it (FLUSHALL or FLUSHDB, eviction under an allkeys-*
//     maxmemory policy, a restart or failover without persistence, the
//     expiry of WithTTL, a DEL by hand). Load's error then also wraps
//     autorefresh.ErrTokensLost, and a Transport that still holds a pair saves
//     it again and goes on, instead of logging every replica out.
//
// So deleting the key does not log the replicas out. To end the session for
// all of them, call Logout (Store.Clear), or write a tombstone whose version
// is above the stored one. A tombstone gets the TTL of WithTTL, like a
// record, and no expiry without it: it must live as long as the pair it
// replaced could still be refreshed, because a replica that holds that pair
// in memory would take a missing key for lost data and save the pair again.
// With WithTTL set to the refresh token's lifetime, the pair can no longer be
// refreshed when its tombstone expires.
//
// # Deadlines
//
// go-redis ignores the deadlines of contexts unless
// redis.Options.ContextTimeoutEnabled is true (the same field exists in
// redis.UniversalOptions, redis.ClusterOptions, redis.FailoverOptions and
// redis.RingOptions): without it, a command to a Redis that hangs waits for
// the client's ReadTimeout and WriteTimeout (5 seconds by default), retried
// up to MaxRetries times, whatever the deadline of the request or refresh
// that runs it. Set ContextTimeoutEnabled to true. With it, Load, Clear and
// Lock return by the deadline of their context, and the unlock function
// returned by Lock by the deadline of Lock's context; clean-up that must
// outlive it (deleting a lock that a failed command may have taken, or a
// release that Redis has not confirmed) runs in the background, and ends
// within a bounded time: each of its commands times out within the lease,
// and within 5 seconds.
//
// Save is the exception: it does not end with its context, but gives the
// write the time set by WithSaveTimeout (10 seconds by default), or until the
// context's deadline if that is later. The pair it saves may be the only copy
// of a refresh token that the server just rotated:
// if a write held back near the end of a refresh (a failover, CLIENT PAUSE
// WRITE) were given up at the refresh's deadline, Redis would keep the spent
// pair and the next replica would use it.
//
// # Fencing
//
// A holder whose lease ran out while it stalled (a GC or VM pause, a
// partition from Redis) is not told: it goes on as if it held the lock. So
// the writes made under the lock are fenced. From a successful Lock until its
// unlock, a Store value remembers the value the key held when it first read
// it under the lock (Load), and then the value of each of its own writes.
// Save and Clear are then conditional: one script compares the stored value,
// byte for byte (by its SHA-1 digest), with the remembered one, and writes
// only if they are the same. Otherwise it writes nothing, and the error
// wraps autorefresh.ErrLockLost: only another writer can have changed the
// key, that is another replica that took the lock after this holder's lease
// ran out, or someone who wrote without the lock. Every later Save and Clear
// under the same lock is then refused too, without asking Redis; the next
// Lock starts afresh. The Transport then uses what the store holds.
//
//   - A lease that ran out while nobody else wrote refuses nothing: the key
//     still holds what the holder read, so its write overwrites nothing newer,
//     and refusing it would throw away a pair that a refresh just rotated. If
//     another replica took the lock meanwhile but has not written yet, the
//     late write goes through, and it is that replica's write that is
//     refused; it then uses the pair that was saved.
//   - A missing key holds nothing to protect (its pair was lost, see above):
//     a write over it goes through.
//   - Only the first Load under the lock counts. A later Load that finds
//     another writer's value does not make that value the holder's, so a late
//     holder cannot read its way past the fence.
//   - A write whose outcome is unknown (its reply was lost, or the client
//     gave up waiting) leaves the holder accepting both the value before it
//     and the value it would have made, so that saving again is not taken
//     for a lost lock.
//   - A Save or Clear under the lock before any Load is unconditional (and
//     fences the writes after it), and so are all the writes of a Store value
//     that does not hold the lock: an application that saves a pair by
//     itself is not fenced.
//
// A Store value is one holder: it cannot tell its goroutines apart, so while
// it holds the lock, the Save and Clear of all of them are fenced together.
// Give each replica its own Store value; two Store values on the same key
// are two holders even in one process. Comparing the whole value and not
// only its version also catches a key that was lost and written again up to
// the same version.
//
// # What the lock guarantees, and what it does not
//
// The lock is the single-instance Redis lock described in the Redis
// documentation on distributed locks: SET key owner NX PX lease with a random
// owner value, released by a script that deletes the key only if it still
// holds that value, so no holder can release another's lock. The lease is
// renewed by a goroutine while the lock is held, and ends by itself if the
// holder dies, so a crashed replica blocks the others for at most one lease.
//
// With a single Redis primary that stays up, at most one holder has the lock
// at a time, as long as no holder pauses (a stop-the-world stall, a VM
// freeze, a network partition from Redis) for longer than its lease between
// two renewals. If one does, its lease runs out, another replica takes the
// lock, and both may believe they hold it: the stalled one is not told, and
// may still use the refresh token it read before.
//
// Redis replication is asynchronous. If the primary fails over to a replica
// before the lock key reached it, the lock is lost and a second replica can
// take it while the first still holds it. The pair itself can be lost the
// same way: a refresh saved just before a failover may be rolled back to the
// previous, already-used refresh token. Redis Cluster has the same limits
// for each shard. This package does not implement Redlock across several
// independent primaries.
//
// The lock carries no fencing token for the refresh endpoint: the server
// cannot reject a late holder's refresh. It is an efficiency lock that keeps
// replicas from spending the single-use refresh token twice in the normal
// case, not a correctness guarantee under every failure. The store itself is
// fenced (see Fencing): a late holder cannot overwrite or clear the pair that
// another replica saved meanwhile. When the lock fails, the cost is what it
// would have been without it: a refresh-token reuse, and with some providers
// the end of the session (autorefresh.ErrSessionExpired), after which the
// application logs in again.
//
// Token values are never put in errors, and a Store prints as its keys in
// every fmt verb and in slog, never with the client (whose options may hold
// a password). Errors begin with "autorefresh: redisstore:", name the
// operation and the key, and wrap the autorefresh sentinel, the Redis
// client's or the context's error.
package redisstore
