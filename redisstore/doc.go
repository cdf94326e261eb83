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
// # Deadlines
//
// go-redis ignores the deadlines of contexts unless
// redis.Options.ContextTimeoutEnabled is true (the same field exists in
// redis.UniversalOptions, redis.ClusterOptions, redis.FailoverOptions and
// redis.RingOptions): without it, a command to a Redis that hangs waits for
// the client's ReadTimeout and WriteTimeout (5 seconds by default), retried
// up to MaxRetries times, whatever the deadline of the request or refresh
// that runs it. Set ContextTimeoutEnabled to true. With it, Load, Save,
// Clear and Lock return by the deadline of their context, and the unlock
// function returned by Lock by the deadline of Lock's context; clean-up that
// must outlive it (deleting a lock that a failed command may have taken, or
// a release that Redis has not confirmed) runs in the background, and ends
// within a bounded time: each of its commands times out within the lease,
// and within 5 seconds.
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
// The lock carries no fencing token: the refresh endpoint cannot reject a
// late holder. It is an efficiency lock that keeps replicas from spending
// the single-use refresh token twice in the normal case, not a correctness
// guarantee under every failure. When it fails, the cost is what it would
// have been without it: a refresh-token reuse, and with some providers the
// end of the session (autorefresh.ErrSessionExpired), after which the
// application logs in again.
//
// Token values are never put in errors. Errors begin with
// "autorefresh: redisstore:" and wrap the Redis client's or the context's
// error.
package redisstore
