package redisstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/redis/go-redis/v9"
)

// This file holds the stored value (see "Stored values" in the package doc)
// and the scripts that change it. The version of a value is read in two
// places, by decodeRecord in Go and by the Lua function stored() in the
// scripts, and both follow the same rule: the "version" member of a JSON
// object, written as a decimal integer from 0 to maxVersion, and 0 for
// anything else.

// maxVersion is the largest version: Lua numbers are doubles, which hold
// every integer up to it exactly.
const maxVersion = 1<<53 - 1

// tokenFields are the token members of a record.
type tokenFields struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	TokenType    string    `json:"tokenType,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// recordPrefix returns the record of t up to its version: the JSON object of
// its token members without the closing brace, followed by `,"version":`.
// The save script appends the version and the brace.
func recordPrefix(t autorefresh.Tokens) ([]byte, error) {
	b, err := json.Marshal(tokenFields(t))
	if err != nil {
		return nil, err // only for an expiry outside years 0-9999
	}
	return append(b[:len(b)-1], `,"version":`...), nil
}

// errCleared is the error of a load of a tombstone.
var errCleared = fmt.Errorf("%w: cleared by a logout", autorefresh.ErrNoTokens)

// decodeRecord parses a stored value and returns its tokens, its version,
// and whether it is a tombstone. Its errors wrap autorefresh.ErrCorruptRecord
// and never quote the value, which would leak tokens. With an error, the
// version is still the one that the scripts count from.
func decodeRecord(b []byte) (t autorefresh.Tokens, version uint64, cleared bool, err error) {
	if trimmed := bytes.TrimSpace(b); len(trimmed) == 0 || trimmed[0] != '{' {
		return t, 0, false, fmt.Errorf("%w: not a JSON object", autorefresh.ErrCorruptRecord)
	}
	// Members are read by their exact names, as the scripts' JSON decoder
	// does (encoding/json matches struct fields ignoring case).
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return t, 0, false, fmt.Errorf("%w: not a JSON object", autorefresh.ErrCorruptRecord)
	}
	version, ok := parseVersion(members["version"])
	if !ok {
		return t, 0, false, fmt.Errorf("%w: \"version\" is not an integer from 0 to %d", autorefresh.ErrCorruptRecord, uint64(maxVersion))
	}
	if string(members["cleared"]) == "true" {
		return t, version, true, nil
	}
	var tf tokenFields
	// The decoder's error is left out: it can quote bytes of the value.
	if err := json.Unmarshal(b, &tf); err != nil {
		return t, version, false, fmt.Errorf("%w: a member has the wrong type or value", autorefresh.ErrCorruptRecord)
	}
	if t = autorefresh.Tokens(tf); t.IsZero() {
		// A value without tokens and not a tombstone ("{}", other JSON)
		// is not an empty store: Save never writes one.
		return autorefresh.Tokens{}, version, false, fmt.Errorf("%w: holds no accessToken or refreshToken", autorefresh.ErrCorruptRecord)
	}
	return t, version, false, nil
}

// parseVersion reads the "version" member of a record: 0 when it is absent
// (a record of an older release), and otherwise valid only as a decimal
// integer from 0 to maxVersion, without fraction or exponent.
func parseVersion(raw json.RawMessage) (uint64, bool) {
	if raw == nil {
		return 0, true
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	return v, err == nil && v <= maxVersion
}

// tombstone returns the tombstone at version, as the clear script writes
// it.
func tombstone(version uint64) []byte {
	return []byte(`{"version":` + strconv.FormatUint(version, 10) + `,"cleared":true}`)
}

// luaStored is the Lua twin of decodeRecord's version rule: stored(raw)
// returns the version of the value raw (false for a missing key) and
// whether it is a tombstone. cjson accepts numbers that JSON does not
// (0x10, 007, 1.0, 1e0), so the version must also appear in raw as the
// plain decimal that encoding/json accepts.
//
// allowed(raw, i) is the fence (see fence.go): ARGV[i] is "0" for an
// unconditional write, or "1" followed by the digests of the values that
// the writer knows; a missing key is always allowed.
const luaStored = `
local MAX = 9007199254740991
local function stored(raw)
	if not raw then return 0, false end
	local ok, rec = pcall(cjson.decode, raw)
	if not ok or type(rec) ~= "table" then return 0, false end
	local v = rec.version
	if type(v) ~= "number" or v < 0 or v > MAX or v ~= math.floor(v)
		or not string.find(raw, '"version"%s*:%s*' .. string.format("%d", v) .. '%s*[,}]') then
		v = 0
	end
	return v, rec.cleared == true
end
local function allowed(raw, i)
	if ARGV[i] ~= "1" or not raw then return true end
	local d = redis.sha1hex(raw)
	for j = i + 1, #ARGV do
		if ARGV[j] == d then return true end
	end
	return false
end
local function set(key, value, ttl)
	if tonumber(ttl) > 0 then
		return redis.call("SET", key, value, "PX", ttl)
	end
	return redis.call("SET", key, value)
end
`

// saveScript stores a record at the stored version plus one, if the fence
// from ARGV[3] on allows it. KEYS[1] is the key, ARGV[1] the recordPrefix,
// ARGV[2] the TTL in milliseconds (0: none). It returns {1, new version,
// digest of the record} or {0, stored version}.
var saveScript = redis.NewScript(luaStored + `
local raw = redis.call("GET", KEYS[1])
local cur = stored(raw)
if not allowed(raw, 3) then return {0, cur} end
if cur >= MAX then return redis.error_reply("autorefresh: record version is at its maximum") end
local v = cur + 1
local value = ARGV[1] .. string.format("%d", v) .. "}"
set(KEYS[1], value, ARGV[2])
return {1, v, redis.sha1hex(value)}
`)

// clearScript replaces the record by a tombstone at the stored version plus
// one, if the fence from ARGV[2] on allows it. A tombstone is left as it
// is. KEYS[1] is the key, ARGV[1] the TTL in milliseconds (0: none). It
// returns {1, version of the tombstone, its digest} or {0, stored version}.
var clearScript = redis.NewScript(luaStored + `
local raw = redis.call("GET", KEYS[1])
local cur, cleared = stored(raw)
if not allowed(raw, 2) then return {0, cur} end
if cleared then return {1, cur, redis.sha1hex(raw)} end
if cur >= MAX then return redis.error_reply("autorefresh: record version is at its maximum") end
local v = cur + 1
local value = '{"version":' .. string.format("%d", v) .. ',"cleared":true}'
set(KEYS[1], value, ARGV[1])
return {1, v, redis.sha1hex(value)}
`)
