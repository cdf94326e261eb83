package autorefresh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// maxTokenFileSize bounds the token files that FileStore writes and reads,
// trailing newline included.
const maxTokenFileSize = 1 << 20

// maxVersion is the largest record version. JSON readers that hold numbers
// as doubles (JavaScript, jq, Redis's Lua) read every version up to it
// exactly.
const maxVersion = 1<<53 - 1

// errVersionOverflow is returned by a save that would need a version past
// maxVersion: about 285,000 years of a save every millisecond.
var errVersionOverflow = errors.New("autorefresh: record version is at its maximum")

// tokenFields are the token members of a token file.
type tokenFields struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	TokenType    string    `json:"tokenType,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// tokenFile is the JSON form of a token file. It is kept apart from Tokens so
// that the format on disk does not change with that type.
type tokenFile struct {
	tokenFields
	Version uint64 `json:"version"`
}

// encodeTokenFile returns the content of a token file holding t at version.
// The expiry is recorded as t.ExpiresAt reports it, so that a person reading
// the file sees it even when it comes from the JWT. The error wraps
// ErrRecordTooLarge when the content would be larger than Load accepts, and
// ErrInvalidToken for a token Load would refuse.
func encodeTokenFile(t Tokens, version uint64) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	tf := tokenFile{
		tokenFields: tokenFields{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType},
		Version:     version,
	}
	if exp := t.ExpiresAt(); !exp.IsZero() {
		tf.Expiry = exp.UTC()
	}
	data, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return nil, err // only for an expiry outside years 0-9999
	}
	data = append(data, '\n')
	if len(data) > maxTokenFileSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, at most %d allowed", ErrRecordTooLarge, len(data), maxTokenFileSize)
	}
	return data, nil
}

// decodeTokenFile parses a token file and returns its tokens and version.
// Its errors wrap ErrCorruptFile and never quote the file's content, which
// would leak tokens. With an error, the version is still that of the file
// (see fileVersion), so that a conditional save can replace a corrupt file.
func decodeTokenFile(data []byte) (Tokens, uint64, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Tokens{}, 0, fmt.Errorf("%w: file is empty", ErrCorruptFile)
	}
	if trimmed[0] != '{' {
		return Tokens{}, 0, fmt.Errorf("%w: not a JSON object", ErrCorruptFile)
	}
	// The members are read by their exact names, as the other readers of
	// the format (Redis's Lua for the Redis store) do.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return Tokens{}, 0, jsonError(err, len(data))
	}
	version, err := parseVersion(members["version"])
	if err != nil {
		return Tokens{}, 0, err
	}
	var tf tokenFields
	if err := json.Unmarshal(data, &tf); err != nil {
		return Tokens{}, version, jsonError(err, len(data))
	}
	t := Tokens(tf)
	if t.IsZero() {
		// Some other JSON file ("{}", settings, ...), not an empty store:
		// FileStore never writes one, as Clear removes the file.
		return Tokens{}, version, fmt.Errorf("%w: holds no accessToken or refreshToken", ErrCorruptFile)
	}
	if err := t.validate(); err != nil {
		return Tokens{}, version, fmt.Errorf("%w: %w", ErrCorruptFile, err)
	}
	return t, version, nil
}

// parseVersion reads the "version" member of a record: absent (a record of an
// older release) it is 0; otherwise it must be a decimal integer from 0 to
// maxVersion, written without fraction or exponent.
func parseVersion(raw json.RawMessage) (uint64, error) {
	if raw == nil {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || v > maxVersion {
		return 0, fmt.Errorf("%w: field \"version\" is not an integer from 0 to %d", ErrCorruptFile, uint64(maxVersion))
	}
	return v, nil
}

// jsonError describes an error of encoding/json for a file of n bytes
// without quoting the file.
func jsonError(err error, n int) error {
	return fmt.Errorf("%w: %s", ErrCorruptFile, describeJSONError(err, n))
}
