package autorefreshtest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKey is a key pair that signs client assertions and DPoP proofs in
// the tests, with the standard library and golang-jwt only.
type testKey struct {
	alg     string
	method  jwt.SigningMethod
	private crypto.Signer
}

// rsaKey is generated once: RSA key generation is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newKey returns a new key for alg: ES256, ES384, ES512, RS256, PS256 or
// EdDSA. All RSA keys are the same key.
func newKey(t *testing.T, alg string) *testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "PS256":
		priv = rsaKey()
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key for alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{alg: alg, method: jwt.GetSigningMethod(alg), private: priv}
}

// public returns the public key.
func (k *testKey) public() crypto.PublicKey { return k.private.Public() }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk returns the public JWK of k, and its RFC 7638 thumbprint computed
// from the members in lexicographic order.
func (k *testKey) jwk() (map[string]any, string) {
	var m map[string]any
	var canonical string
	switch pub := k.public().(type) {
	case *ecdsa.PublicKey:
		point, _ := pub.Bytes() // 0x04 || x || y
		size := (len(point) - 1) / 2
		x, y := b64(point[1:1+size]), b64(point[1+size:])
		crv := pub.Curve.Params().Name
		m = map[string]any{"kty": "EC", "crv": crv, "x": x, "y": y}
		canonical = `{"crv":"` + crv + `","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	case *rsa.PublicKey:
		n, e := b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
		m = map[string]any{"kty": "RSA", "n": n, "e": e}
		canonical = `{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`
	case ed25519.PublicKey:
		x := b64(pub)
		m = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": x}
		canonical = `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	}
	sum := sha256.Sum256([]byte(canonical))
	return m, b64(sum[:])
}

// thumbprint returns the RFC 7638 thumbprint of k.
func (k *testKey) thumbprint() string {
	_, t := k.jwk()
	return t
}

// sign returns a JWT of claims with header fields added to alg (and typ
// "JWT"), signed with k. A header value of nil deletes the field.
func (k *testKey) sign(t *testing.T, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.method, claims)
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	s, err := tok.SignedString(k.private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// proofOpts change a DPoP proof from the valid one that proof makes.
type proofOpts struct {
	header map[string]any // fields to set (nil values delete)
	claims jwt.MapClaims  // claims to set (nil values delete)
}

// proof returns a valid DPoP proof by k for method and htu, with nonce and
// ath when not empty, then applies o.
func (k *testKey) proof(t *testing.T, method, htu, nonce, accessToken string, o proofOpts) string {
	t.Helper()
	jwk, _ := k.jwk()
	header := map[string]any{"typ": "dpop+jwt", "jwk": jwk}
	claims := jwt.MapClaims{"jti": rand.Text(), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = b64(sum[:])
	}
	for name, v := range o.header {
		header[name] = v
	}
	for name, v := range o.claims {
		if v == nil {
			delete(claims, name)
		} else {
			claims[name] = v
		}
	}
	return k.sign(t, header, claims)
}
