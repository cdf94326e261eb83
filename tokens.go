package autorefresh

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens is an access token and the refresh token that renews it.
//
// Tokens never print their values: fmt verbs (%v, %+v, %#v, %s), String and
// slog show "[redacted]" in their place. encoding/json does write them, so
// that stores can persist them. Two limits of fmt and slog remain: a Tokens
// held in an unexported struct field is printed field by field (fmt cannot
// call its methods), and slog's JSON handler encodes a struct that holds a
// Tokens with encoding/json. Log Tokens values themselves, not structs that
// contain them.
type Tokens struct {
	// AccessToken is sent with every request; RefreshToken is what the
	// Refresher exchanges for new tokens. One of them may be empty, not
	// both (see IsZero).
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`

	// TokenType is the OAuth 2.0 token type of the access token (RFC 6749
	// section 7.1), such as "Bearer" or "DPoP", as the token endpoint
	// answered it. It is empty for the header protocol of Endpoint. A
	// Transport whose Scheme is not set sends the access token the way its
	// type asks for; see Transport.Scheme.
	TokenType string `json:"tokenType,omitempty"`

	// Expiry is when the access token expires. The zero value means it is
	// read from the access token's JWT "exp" claim when there is one, and
	// is unknown otherwise.
	Expiry time.Time `json:"expiry,omitzero"`
}

// IsZero reports whether t holds neither an access nor a refresh token.
func (t Tokens) IsZero() bool {
	return t.AccessToken == "" && t.RefreshToken == ""
}

// ExpiresAt reports when the access token expires: Expiry when it is set,
// otherwise the "exp" claim of the access token read as a JWT without
// verifying its signature. It returns the zero time when the expiry is
// unknown, for example for an opaque token.
func (t Tokens) ExpiresAt() time.Time {
	if !t.Expiry.IsZero() {
		return t.Expiry
	}
	exp, _ := jwtTimes(t.AccessToken)
	return exp
}

// maxJWTLen bounds the tokens that are parsed as JWTs. A longer string is
// treated as opaque.
const maxJWTLen = 64 << 10

// jwtTimes returns the "exp" and "iat" claims of a JWT without verifying it.
// Either is zero when it is missing, out of range, or token is not a JWT.
// Fractional seconds are kept to the millisecond (jwt/v5's own claim types
// round them down to whole seconds).
func jwtTimes(token string) (exp, iat time.Time) {
	if token == "" || len(token) > maxJWTLen {
		return time.Time{}, time.Time{}
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwtParser.ParseUnverified(token, claims); err != nil {
		return time.Time{}, time.Time{}
	}
	return numericDate(claims["exp"]), numericDate(claims["iat"])
}

var jwtParser = jwt.NewParser(jwt.WithJSONNumber())

// maxNumericDate is the start of the year 10000, past which a NumericDate
// is taken as garbage.
const maxNumericDate = 253402300800

// numericDate converts a JSON NumericDate (RFC 7519 section 2) to a time.
func numericDate(v any) time.Time {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}
	}
	f, err := n.Float64()
	if err != nil || !(f >= 0 && f < maxNumericDate) {
		return time.Time{}
	}
	return time.UnixMilli(int64(math.Round(f * 1000))).UTC()
}

// String returns a description of t in which the token values are redacted.
func (t Tokens) String() string {
	exp := "unknown"
	if !t.Expiry.IsZero() {
		exp = t.Expiry.Format(time.RFC3339)
	}
	return "autorefresh.Tokens{AccessToken:" + redact(t.AccessToken) +
		", RefreshToken:" + redact(t.RefreshToken) + ", Expiry:" + exp + "}"
}

// GoString is like String: the token values are redacted.
func (t Tokens) GoString() string { return t.String() }

// Format implements fmt.Formatter so that every verb prints t with its token
// values redacted.
func (t Tokens) Format(f fmt.State, verb rune) {
	fmt.Fprint(f, t.String())
}

// LogValue implements slog.LogValuer: the token values are redacted.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("accessToken", redact(t.AccessToken)),
		slog.String("refreshToken", redact(t.RefreshToken)),
		slog.Time("expiry", t.Expiry),
	)
}

// same reports whether t and u are the same pair: the same tokens, token
// type and expiry. The expiry compared is ExpiresAt's, so that a pair whose
// expiry a store filled in from the JWT (as FileStore does) is the pair
// that was saved without it.
func (t Tokens) same(u Tokens) bool {
	if t.AccessToken != u.AccessToken || t.RefreshToken != u.RefreshToken || t.TokenType != u.TokenType {
		return false
	}
	return t.Expiry.Equal(u.Expiry) || t.ExpiresAt().Equal(u.ExpiresAt())
}

// validate reports, wrapping ErrInvalidToken, a token or token type that
// cannot be sent as an HTTP header value: one holding a control character
// (CR, LF, NUL, DEL, ...) or starting or ending with a space. Tokens are
// checked where they enter (SetTokens, Login, refresh answers, the store),
// so that a bad one never reaches a request, where net/http would refuse
// every request and the refresh itself.
func (t Tokens) validate() error {
	for _, f := range [...]struct{ name, v string }{
		{"access token", t.AccessToken}, {"refresh token", t.RefreshToken}, {"token type", t.TokenType},
	} {
		if !validHeaderValue(f.v) {
			return fmt.Errorf("%w: the %s holds a control character or a leading or trailing space", ErrInvalidToken, f.name)
		}
		if !utf8.ValidString(f.v) {
			// JSON, which the stores write, cannot keep it as it is.
			return fmt.Errorf("%w: the %s is not valid UTF-8", ErrInvalidToken, f.name)
		}
	}
	return nil
}

// validateFresh checks the tokens of a refresh answer: an access token, and
// values that can be sent.
func (t Tokens) validateFresh() error {
	if t.AccessToken == "" {
		return errNoAccessToken
	}
	if err := t.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedResponse, err)
	}
	return nil
}

func validHeaderValue(v string) bool {
	if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
