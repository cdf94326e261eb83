package autorefreshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
)

// This file parses the public JWKs of DPoP proofs (RFC 7517, RFC 7518
// section 6) and computes their RFC 7638 thumbprints.

// jwkPrivate are the JWK members that hold private or symmetric key
// material (RFC 7518 section 6).
var jwkPrivate = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// maxRSABits bounds the RSA keys accepted in a jwk.
const maxRSABits = 8192

// parseJWK parses the public key of a DPoP proof and returns it with its
// RFC 7638 thumbprint. It accepts EC keys on P-256, P-384 and P-521, RSA
// keys of 2048 to 8192 bits and Ed25519 keys, and refuses a JWK that holds
// private members.
func parseJWK(raw json.RawMessage) (crypto.PublicKey, string, error) {
	var members map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &members) != nil {
		return nil, "", errors.New("missing or not a JSON object")
	}
	for _, m := range jwkPrivate {
		if _, ok := members[m]; ok {
			return nil, "", errors.New("holds private key members")
		}
	}
	var k struct{ Kty, Crv, X, Y, N, E string }
	if json.Unmarshal(raw, &k) != nil {
		return nil, "", errors.New("members are not strings")
	}
	switch k.Kty {
	case "EC":
		return parseECJWK(k.Crv, k.X, k.Y)
	case "RSA":
		return parseRSAJWK(k.N, k.E)
	case "OKP":
		x, err := decodeB64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, "", errors.New("only Ed25519 OKP keys are supported")
		}
		return ed25519.PublicKey(x), thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"` + k.X + `"}`), nil
	}
	return nil, "", errors.New("kty must be EC, RSA or OKP")
}

// parseRSAJWK parses the members of an RSA JWK.
func parseRSAJWK(ns, es string) (crypto.PublicKey, string, error) {
	n, errN := decodeB64(ns)
	e, errE := decodeB64(es)
	if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
		return nil, "", errors.New("n or e is not base64url")
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if key.N.BitLen() < 2048 || key.N.BitLen() > maxRSABits || key.E < 3 || key.E%2 == 0 {
		return nil, "", errors.New("the RSA key must have 2048 to 8192 bits and an odd exponent")
	}
	return key, thumbprint(`{"e":"` + es + `","kty":"RSA","n":"` + ns + `"}`), nil
}

// parseECJWK parses the members of an EC JWK.
func parseECJWK(crv, xs, ys string) (crypto.PublicKey, string, error) {
	curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
	curve := curves[crv]
	if curve == nil {
		return nil, "", errors.New("crv must be P-256, P-384 or P-521")
	}
	size := (curve.Params().BitSize + 7) / 8
	x, errX := decodeB64(xs)
	y, errY := decodeB64(ys)
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, "", errors.New("x or y is not a base64url coordinate of the curve's size")
	}
	key, err := ecdsa.ParseUncompressedPublicKey(curve, slices.Concat([]byte{4}, x, y))
	if err != nil {
		return nil, "", errors.New("the point is not on the curve")
	}
	return key, thumbprint(`{"crv":"` + crv + `","kty":"EC","x":"` + xs + `","y":"` + ys + `"}`), nil
}

// decodeB64 decodes unpadded base64url, refusing any other character
// (including the line breaks that package base64 skips) and non-canonical
// trailing bits.
func decodeB64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(unreserved(c) && c != '.' && c != '~') {
			return nil, errors.New("not base64url")
		}
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// thumbprint returns the base64url SHA-256 of a JWK's canonical JSON: its
// RFC 7638 thumbprint, the jkt of RFC 9449.
func thumbprint(canonical string) string {
	h := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
