package autorefreshtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// issuer is the "iss" claim of the access tokens and the realm of the
// WWW-Authenticate challenges.
const issuer = "autorefreshtest"

// numericDate is an RFC 7519 NumericDate with millisecond precision: it is
// written as a JSON number of seconds with a fraction when the time is not a
// whole second, so that sub-second lifetimes survive the round trip. It is
// used instead of jwt.NumericDate so that the global jwt.TimePrecision is
// left alone.
type numericDate struct{ time.Time }

// MarshalJSON writes d as seconds since the Unix epoch, with a millisecond
// fraction when there is one.
func (d numericDate) MarshalJSON() ([]byte, error) {
	ms := d.UnixMilli()
	var b []byte
	if ms < 0 {
		b, ms = append(b, '-'), -ms
	}
	sec, frac := ms/1000, ms%1000
	b = strconv.AppendInt(b, sec, 10)
	if frac != 0 {
		b = append(b, '.')
		b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	}
	return b, nil
}

// UnmarshalJSON reads a JSON number of seconds, rounded to the millisecond.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
		return errors.New("autorefreshtest: bad NumericDate")
	}
	d.Time = time.UnixMilli(int64(math.Round(f * 1000)))
	return nil
}

// claims are the claims of an access token. They implement jwt.Claims.
type claims struct {
	Issuer       string      `json:"iss,omitempty"`
	Subject      string      `json:"sub"`
	Audience     []string    `json:"aud,omitempty"`
	Session      string      `json:"sid"`
	ID           string      `json:"jti"`
	IssuedAt     numericDate `json:"iat"`
	ExpiresAt    numericDate `json:"exp"`
	ClientID     string      `json:"client_id,omitempty"`
	Scope        string      `json:"scope,omitempty"`
	Confirmation *cnf        `json:"cnf,omitempty"`
	Generation   int64       `json:"gen,omitempty"` // see ExpireAccessTokens
}

// cnf is the confirmation claim of a DPoP-bound access token (RFC 9449
// section 6.1).
type cnf struct {
	JKT string `json:"jkt"`
}

// confirmation returns the cnf claim binding a token to the key with
// thumbprint jkt, or nil if jkt is empty.
func confirmation(jkt string) *cnf {
	if jkt == "" {
		return nil
	}
	return &cnf{JKT: jkt}
}

// jkt returns the thumbprint the token of c is bound to, or "".
func (c *claims) jkt() string {
	if c.Confirmation == nil {
		return ""
	}
	return c.Confirmation.JKT
}

func date(d numericDate) *jwt.NumericDate {
	if d.IsZero() {
		return nil
	}
	return &jwt.NumericDate{Time: d.Time}
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return date(c.ExpiresAt), nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return date(c.IssuedAt), nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// randomString returns n random bytes from crypto/rand, base64url encoded.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails, see crypto/rand.Read
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign returns the HS256 JWT of c.
func (s *Server) sign(c *claims) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
	if err != nil {
		panic("autorefreshtest: signing failed: " + err.Error()) // cannot happen with an HMAC key
	}
	return tok
}

// Reasons an access token is refused. Their texts go into
// error_description, so they hold no token values and no quotes.
var (
	errNoToken  = errors.New("no access token")
	errMalToken = errors.New("the access token is malformed or its signature is invalid")
	errExpired  = errors.New("the access token expired")
	errRevoked  = errors.New("the session was revoked")
)

// maxTokenLen bounds the access tokens that are parsed.
const maxTokenLen = 8 << 10

// parse verifies token's HS256 signature and returns its claims. It checks
// the expiry against s.now when checkExpiry is set.
func (s *Server) parse(token string, checkExpiry bool) (*claims, error) {
	if token == "" {
		return nil, errNoToken
	}
	if len(token) > maxTokenLen {
		return nil, errMalToken
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(s.now),
		jwt.WithExpirationRequired(),
	}
	if !checkExpiry {
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.key, nil }, opts...)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errExpired
	case err != nil, c.Session == "", c.Subject == "":
		return nil, errMalToken
	}
	return &c, nil
}

// authenticate returns the user of a valid access token: well signed, not
// expired, and of a session that was not revoked.
func (s *Server) authenticate(token string) (user string, err error) {
	c, err := s.verify(token)
	if err != nil {
		return "", err
	}
	return c.Subject, nil
}

// verify returns the claims of a valid access token: well signed, not
// expired (nor made so by ExpireAccessTokens), not revoked, and of a
// session that was not revoked.
func (s *Server) verify(token string) (*claims, error) {
	c, err := s.parse(token, true)
	if err != nil {
		return nil, err
	}
	if c.Generation < s.tokenGen.Load() {
		return nil, errExpired
	}
	now := s.now()
	s.mu.Lock()
	sess := s.sessions[c.Session]
	live := sess != nil && !sess.revoked && !s.revokedAccess.has(c.ID, now)
	s.mu.Unlock()
	if !live {
		return nil, errRevoked
	}
	return c, nil
}

// TokenInfo describes an access token issued by a Server, as Introspect
// returns it.
type TokenInfo struct {
	// Active reports whether the token is accepted now: not expired (nor
	// made so by ExpireAccessTokens), not revoked, and of a live session.
	Active bool
	// Subject is the user, or the client_id for a client_credentials
	// grant.
	Subject string
	// ClientID is the client the token was issued to, or "" when the
	// request named none.
	ClientID string
	// Scope is the space-separated scope granted by a client_credentials
	// grant.
	Scope string
	// Audience holds the resource (RFC 8707) and audience values of a
	// client_credentials grant, in the order they were asked for.
	Audience []string
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound to
	// (its cnf.jkt claim), or "" for a Bearer token.
	JKT string
	// IssuedAt and Expiry are the token's iat and exp.
	IssuedAt, Expiry time.Time
}

// Introspect describes an access token this server issued, whether or not
// it is still accepted. It reports false for anything else: a malformed or
// forged token, or one signed with another key. It is a Go method for
// tests, not an RFC 7662 endpoint.
func (s *Server) Introspect(accessToken string) (TokenInfo, bool) {
	c, err := s.parse(accessToken, false)
	if err != nil {
		return TokenInfo{}, false
	}
	_, err = s.verify(accessToken)
	return TokenInfo{
		Active:   err == nil,
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Scope:    c.Scope,
		Audience: c.Audience,
		JKT:      c.jkt(),
		IssuedAt: c.IssuedAt.Time,
		Expiry:   c.ExpiresAt.Time,
	}, true
}

// mint fills in the issuer, ID, times and generation of c, which holds the
// subject, session and any other claims, and returns the signed access
// token and its expiry.
func (s *Server) mint(c *claims, now time.Time, ttl time.Duration) (string, time.Time) {
	c.Issuer = issuer
	c.ID = randomString(12)
	c.IssuedAt = numericDate{time.UnixMilli(now.UnixMilli())}
	c.ExpiresAt = numericDate{time.UnixMilli(now.Add(ttl).UnixMilli())}
	c.Generation = s.tokenGen.Load()
	return s.sign(c), c.ExpiresAt.Time
}
