package interop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/golang-jwt/jwt/v5"
)

// publicJWK returns the JWK (RFC 7517) of a P-256 public key.
func publicJWK(pub *ecdsa.PublicKey, kid string) map[string]string {
	k, err := pub.ECDH()
	if err != nil {
		panic(err) // a P-256 key always converts
	}
	b := k.Bytes() // 0x04 || X || Y
	enc := base64.RawURLEncoding.EncodeToString
	jwk := map[string]string{"kty": "EC", "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	if kid != "" {
		jwk["kid"] = kid
	}
	return jwk
}

// clientAssertion returns a private_key_jwt client assertion (RFC 7523
// section 2.2) of the client "pkjwt" for audience aud, signed with
// pkjwtKey, valid for a minute, with a new jti.
func clientAssertion(t *testing.T, aud string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer:    "pkjwt",
		Subject:   "pkjwt",
		Audience:  jwt.ClaimStrings{aud},
		ID:        rand.Text(),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	})
	tok.Header["kid"] = "pkjwt-1"
	s, err := tok.SignedString(pkjwtKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dpopKey is a DPoP key (RFC 9449) with the nonces that servers gave it,
// by origin. It is safe for concurrent use.
type dpopKey struct {
	key *ecdsa.PrivateKey
	jwk map[string]string

	mu     sync.Mutex        // guards nonces
	nonces map[string]string // origin -> last DPoP-Nonce
}

func newDPoPKey(t *testing.T) *dpopKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{key: key, jwk: publicJWK(&key.PublicKey, ""), nonces: map[string]string{}}
}

// newLibraryKey returns a new DPoP key made by the library
// (autorefresh.GenerateKey), and the test's own view of it (see dpopKeyOf).
func newLibraryKey(t *testing.T) (crypto.Signer, *dpopKey) {
	t.Helper()
	key, err := autorefresh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key, dpopKeyOf(t, key)
}

// dpopKeyOf returns a dpopKey for key, a P-256 key that the library made or
// loaded (GenerateKey, LoadOrCreateKey): the test's proofs, made with
// jwt/v5 (for the code exchange of login and the plain-HTTP checks), are
// then of the very key that the library signs its proofs with.
func dpopKeyOf(t *testing.T, key crypto.Signer) *dpopKey {
	t.Helper()
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key is a %T; want an ECDSA P-256 key", key)
	}
	return &dpopKey{key: k, jwk: publicJWK(&k.PublicKey, ""), nonces: map[string]string{}}
}

// thumbprint returns the JWK SHA-256 thumbprint (RFC 7638) of the key: the
// jkt that bound tokens carry.
func (k *dpopKey) thumbprint() string {
	canonical := `{"crv":"P-256","kty":"EC","x":"` + k.jwk["x"] + `","y":"` + k.jwk["y"] + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proof returns a DPoP proof (RFC 9449 section 4.2) for a request: htu
// without query and fragment, a new jti, ath when accessToken is set,
// nonce when not empty.
func (k *dpopKey) proof(t *testing.T, method, target, accessToken, nonce string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery, u.Fragment = "", ""
	claims := jwt.MapClaims{"jti": rand.Text(), "htm": method, "htu": u.String(), "iat": time.Now().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = k.jwk
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *dpopKey) nonce(origin string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nonces[origin]
}

// setNonce keeps nonce for origin, unless it is empty.
func (k *dpopKey) setNonce(origin, nonce string) {
	if nonce == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nonces[origin] = nonce
}
