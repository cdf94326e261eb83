package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/autorefresh/autorefresh"
	"github.com/redis/go-redis/v9"
)

// This file holds the fencing of the writes made under the lock (see
// "Fencing" in the package doc): what a Store value knows of the stored
// value while it holds the lock, and how Save and Clear use it.

// A fence is what the holder of one acquisition of the lock knows of the
// stored value. Each successful Lock makes one; its unlock drops it.
type fence struct {
	// writing serializes the writes made under the lock, so that known
	// follows them in the order Redis applied them. It is held across the
	// script on purpose: two writes of one holder racing each other would
	// otherwise take each other's value for another writer's. (A
	// Transport makes them one at a time anyway.)
	writing sync.Mutex

	mu sync.Mutex // guards known and lost
	// known holds the digests of the values the key may hold as far as
	// this holder knows, each with its version: the value it read first
	// or wrote last under the lock, and, after writes whose outcome is
	// unknown, the values they would have made of it. nil: nothing read or
	// written yet under the lock.
	known map[string]uint64
	// lost is set when a write under the lock found a value that is not
	// known: every later write under it is refused.
	lost bool
}

// missingDigest stands for a missing key in fence.known. The scripts let a
// fenced write replace a missing key whatever the holder knew.
const missingDigest = ""

// maxKnown bounds fence.known, which grows while writes under one lock end
// with unknown outcomes. Past it, a value that such a write did leave may be
// taken for another writer's, and the next write refused as if the lock
// were lost.
const maxKnown = 16

// digest returns the digest of a stored value that the scripts compare:
// its SHA-1 in lowercase hex, as Redis's redis.sha1hex computes it. It is
// an identity, not a protection.
func digest(value []byte) string {
	sum := sha1.Sum(value)
	return hex.EncodeToString(sum[:])
}

// observe records a value read under the lock, with its version, unless the
// fence knows the stored value already: a later read that finds another
// writer's value must not make it this holder's. f may be nil (no lock
// held).
func (f *fence) observe(d string, version uint64) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.known == nil && !f.lost {
		f.known = map[string]uint64{d: version}
	}
}

// condition returns the arguments with which the scripts test the stored
// value: "0" for an unconditional write when nothing is known yet, or "1"
// followed by the digests of the values the write may replace. It returns
// an error wrapping autorefresh.ErrLockLost once the lock was found lost.
func (f *fence) condition() ([]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost {
		return nil, errLockLostBefore
	}
	if f.known == nil {
		return []any{"0"}, nil
	}
	args := make([]any, 0, 1+len(f.known))
	args = append(args, "1")
	for d := range f.known {
		args = append(args, d)
	}
	return args, nil
}

// wrote records a successful write: the key holds the value with digest d
// at version.
func (f *fence) wrote(d string, version uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known = map[string]uint64{d: version}
}

// lose records that a write under the lock found another writer's value.
func (f *fence) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lost = true
	f.known = nil
}

// unsure records a write whose outcome is unknown (its reply was lost, or
// the client gave up waiting): the key may hold any value it held before,
// or the one the write made of it, which next returns for the version the
// write gave it. Nothing is recorded when nothing was known: the write was
// unconditional, and the holder knows no more after it.
func (f *fence) unsure(next func(version uint64) []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := maps.Clone(f.known)
	for _, v := range before {
		if len(f.known) >= maxKnown || v >= maxVersion {
			break
		}
		f.known[digest(next(v+1))] = v + 1
	}
}

// Errors of a fenced write that was refused.
var errLockLostBefore = fmt.Errorf("%w: an earlier write under this lock found the stored record changed by another writer; nothing was written", autorefresh.ErrLockLost)

// lockLost is the error of a fenced write that found the record at version
// stored, not a value the holder knew.
func lockLost(stored uint64) error {
	return fmt.Errorf("%w: the stored record (version %d) is not the one this holder last read or wrote under the lock, "+
		"so its lease ran out and another holder wrote, or someone wrote without the lock; nothing was written",
		autorefresh.ErrLockLost, stored)
}

// register makes f the fence of the lock that s holds. If another
// acquisition of s is still registered, its lease ran out (the lock is
// exclusive): it is lost.
func (s *Store) register(f *fence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		s.held.lose()
	}
	s.held = f
}

// unregister drops f when the lock it belongs to is released, unless a
// later acquisition replaced it.
func (s *Store) unregister(f *fence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == f {
		s.held = nil
	}
}

// heldFence returns the fence of the lock that s holds, or nil.
func (s *Store) heldFence() *fence {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// change runs script, a change of the stored value (saveScript or
// clearScript), with args followed by the fence's condition when s holds
// the lock. next returns the value the script writes at a version, for a
// write whose outcome is unknown.
func (s *Store) change(ctx context.Context, script *redis.Script, args []any, next func(version uint64) []byte) error {
	f := s.heldFence()
	if f == nil {
		_, _, err := runChange(ctx, s.client, script, s.key, append(args, "0"))
		return err
	}
	f.writing.Lock()
	defer f.writing.Unlock()
	cond, err := f.condition()
	if err != nil {
		return err
	}
	version, d, err := runChange(ctx, s.client, script, s.key, append(args, cond...))
	switch {
	case errors.Is(err, autorefresh.ErrLockLost):
		f.lose()
	case err != nil:
		f.unsure(next)
	default:
		f.wrote(d, version)
	}
	return err
}

// runChange runs script on key and returns the version and the digest of
// the value it left, or an error wrapping autorefresh.ErrLockLost when the
// stored value was not one the condition allows.
func runChange(ctx context.Context, c redis.UniversalClient, script *redis.Script, key string, args []any) (uint64, string, error) {
	reply, err := script.Run(ctx, c, []string{key}, args...).Slice()
	if err != nil {
		return 0, "", err
	}
	ok, version, d, valid := parseReply(reply)
	switch {
	case !valid:
		return 0, "", fmt.Errorf("autorefresh: redisstore: unexpected script reply of %d elements", len(reply))
	case !ok:
		return 0, "", lockLost(version)
	}
	return version, d, nil
}

// parseReply reads the reply of a script: {1, version, digest} after a
// write, {0, stored version} when the condition refused it.
func parseReply(reply []any) (ok bool, version uint64, d string, valid bool) {
	if len(reply) < 2 {
		return false, 0, "", false
	}
	flag, isInt := reply[0].(int64)
	v, vIsInt := reply[1].(int64)
	if !isInt || !vIsInt || v < 0 {
		return false, 0, "", false
	}
	if flag != 1 {
		return false, uint64(v), "", len(reply) == 2
	}
	if len(reply) != 3 {
		return false, 0, "", false
	}
	d, isString := reply[2].(string)
	return true, uint64(v), d, isString
}
