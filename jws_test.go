package autorefresh

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys returns a key of each supported kind, made once per test binary
// (RSA keys are slow to generate).
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	p256, err1 := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, err2 := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, err3 := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, err4 := ed25519.GenerateKey(rand.Reader)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{"P-256": p256, "P-384": p384, "RSA-2048": rsaKey, "Ed25519": edKey}
})

// testKey returns the test key of kind name.
func testKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	k, ok := testKeys()[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return k
}

// hsmSigner hides the type of the key it wraps, as a key held in an HSM, a
// KMS or a TPM does: only Public and Sign are there.
type hsmSigner struct{ crypto.Signer }

// fakeSigner is a crypto.Signer with a given public key and signature.
type fakeSigner struct {
	pub crypto.PublicKey
	sig []byte
	err error
}

func (f fakeSigner) Public() crypto.PublicKey { return f.pub }
func (f fakeSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return f.sig, f.err
}

// algCases are the key and algorithm pairs that sign.
var algCases = []struct {
	key, alg, want string // want: the algorithm used
}{
	{"P-256", "", algES256},
	{"P-256", algES256, algES256},
	{"P-384", "", algES384},
	{"P-384", algES384, algES384},
	{"RSA-2048", "", algRS256},
	{"RSA-2048", algRS256, algRS256},
	{"RSA-2048", algPS256, algPS256},
	{"Ed25519", "", algEdDSA},
	{"Ed25519", algEdDSA, algEdDSA},
}

func TestJWSSignsEveryAlgorithm(t *testing.T) {
	for _, tc := range algCases {
		for _, hsm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%s/hsm=%t", tc.key, tc.alg, hsm), func(t *testing.T) {
				key := testKey(t, tc.key)
				if hsm {
					key = hsmSigner{key}
				}
				s, err := newJWSSigner(key, tc.alg)
				if err != nil {
					t.Fatalf("newJWSSigner: %v", err)
				}
				if s.alg != tc.want {
					t.Errorf("alg = %s; want %s", s.alg, tc.want)
				}
				header := []byte(`{"alg":"` + s.alg + `"}`)
				tok, err := s.sign(header, []byte(`{"sub":"me","n":1}`))
				if err != nil {
					t.Fatalf("sign: %v", err)
				}
				verifyJWS(t, tok, key.Public(), tc.want)
			})
		}
	}
}

// verifyJWS checks the signature of the compact JWS tok twice: with jwt/v5
// and with the crypto packages, following RFC 7515 and RFC 7518 directly.
func verifyJWS(t *testing.T, tok string, pub crypto.PublicKey, alg string) {
	t.Helper()
	_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{alg}), jwt.WithoutClaimsValidation())
	if err != nil {
		t.Errorf("jwt/v5 refuses the %s JWS: %v", alg, err)
	}
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		t.Fatalf("JWS %q has no signature", tok)
	}
	input := []byte(tok[:i])
	sig, err := base64.RawURLEncoding.Strict().DecodeString(tok[i+1:])
	if err != nil {
		t.Fatalf("signature is not base64url: %v", err)
	}
	if !verifySignature(pub, alg, input, sig) {
		t.Errorf("the %s signature does not verify", alg)
	}
}

// verifySignature verifies a raw JWS signature of input.
func verifySignature(pub crypto.PublicKey, alg string, input, sig []byte) bool {
	d256 := sha256.Sum256(input)
	switch alg {
	case algES256, algES384:
		k := pub.(*ecdsa.PublicKey)
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if alg == algES384 {
			d := sha512.Sum384(input)
			return ecdsa.Verify(k, d[:], r, s)
		}
		return ecdsa.Verify(k, d256[:], r, s)
	case algRS256:
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d256[:], sig) == nil
	case algPS256:
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, d256[:], sig, opts) == nil
	case algEdDSA:
		return ed25519.Verify(pub.(ed25519.PublicKey), input, sig)
	}
	return false
}

// TestJWSEd25519Vector signs the example of RFC 8037 appendix A.4: Ed25519
// is deterministic, so the signature is known.
func TestJWSEd25519Vector(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	key := ed25519.NewKeyFromSeed(seed)
	s, err := newJWSSigner(key, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.sign([]byte(`{"alg":"EdDSA"}`), []byte("Example of Ed25519 signing"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." +
		"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	if got != want {
		t.Errorf("JWS = %s; want %s", got, want)
	}
}

func TestJWSRefusesKeysAndAlgorithms(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024 := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 1023), E: 65537}
	tests := []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"no key", nil, ""},
		{"P-521", p521, ""},
		{"P-521 as ES256", p521, algES256},
		{"RSA 1024", fakeSigner{pub: rsa1024}, ""},
		{"RSA without modulus", fakeSigner{pub: &rsa.PublicKey{E: 65537}}, ""},
		{"short Ed25519", fakeSigner{pub: ed25519.PublicKey{1, 2, 3}}, ""},
		{"X25519", fakeSigner{pub: x25519.PublicKey()}, ""},
		{"no public key", fakeSigner{}, ""},
		{"ECDSA without curve", fakeSigner{pub: &ecdsa.PublicKey{}}, ""},
		{"P-256 as ES384", testKey(t, "P-256"), algES384},
		{"P-256 as RS256", testKey(t, "P-256"), algRS256},
		{"P-384 as ES256", testKey(t, "P-384"), algES256},
		{"RSA as ES256", testKey(t, "RSA-2048"), algES256},
		{"RSA as EdDSA", testKey(t, "RSA-2048"), algEdDSA},
		{"Ed25519 as ES256", testKey(t, "Ed25519"), algES256},
		{"Ed25519 as PS256", testKey(t, "Ed25519"), algPS256},
		{"HS256", testKey(t, "P-256"), "HS256"},
		{"none", testKey(t, "P-256"), "none"},
		{"lower case", testKey(t, "P-256"), "es256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newJWSSigner(tt.key, tt.alg)
			if !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("newJWSSigner error = %v; want ErrUnsupportedKey", err)
			}
			if !strings.HasPrefix(err.Error(), "autorefresh: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}
}

func TestJWSRefusesMalformedSignatures(t *testing.T) {
	p256 := testKey(t, "P-256").Public()
	rsaPub := testKey(t, "RSA-2048").Public()
	edPub := testKey(t, "Ed25519").Public()
	signErr := errors.New("token expired on the HSM")
	tests := []struct {
		name    string
		signer  fakeSigner
		wantErr error
	}{
		{"signer error", fakeSigner{pub: p256, err: signErr}, signErr},
		{"ECDSA not DER", fakeSigner{pub: p256, sig: make([]byte, 64)}, nil},
		{"ECDSA empty", fakeSigner{pub: p256}, nil},
		{"RSA too long", fakeSigner{pub: rsaPub, sig: make([]byte, 257)}, nil},
		{"Ed25519 short", fakeSigner{pub: edPub, sig: make([]byte, 63)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newJWSSigner(tt.signer, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.sign([]byte(`{}`), []byte(`{}`))
			if err == nil {
				t.Fatal("sign succeeded; want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v; want it to wrap %v", err, tt.wantErr)
			}
		})
	}
}

// TestJWSPadsShortRSASignatures: an RSA signer may drop the leading zero
// bytes of a signature; JWS wants it at the modulus length.
func TestJWSPadsShortRSASignatures(t *testing.T) {
	key := testKey(t, "RSA-2048").(*rsa.PrivateKey)
	for i := 0; ; i++ {
		if i == 2000 {
			cannotRun(t, "no RS256 signature with a leading zero byte in 2000 tries")
		}
		payload := []byte(fmt.Sprintf(`{"n":%d}`, i))
		input := b64.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + b64.EncodeToString(payload)
		d := sha256.Sum256([]byte(input))
		sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		if sig[0] != 0 {
			continue
		}
		s, err := newJWSSigner(fakeSigner{pub: key.Public(), sig: bytes.TrimLeft(sig, "\x00")}, "")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.sign([]byte(`{"alg":"RS256"}`), payload)
		if err != nil {
			t.Fatal(err)
		}
		verifyJWS(t, tok, key.Public(), algRS256)
		return
	}
}

// TestJWSECDSAPadding signs until both r and s have had leading zero bytes,
// on P-256 and P-384, and checks that every such signature verifies: r and
// s are left-padded to their fixed size.
func TestJWSECDSAPadding(t *testing.T) {
	for _, name := range []string{"P-256", "P-384"} {
		t.Run(name, func(t *testing.T) {
			key := testKey(t, name).(*ecdsa.PrivateKey)
			s, err := newJWSSigner(key, "")
			if err != nil {
				t.Fatal(err)
			}
			var shortR, shortS int
			for i := 0; i < 50000 && (shortR == 0 || shortS == 0); i++ {
				r, s := signPadded(t, s, i < 20)
				shortR += r
				shortS += s
			}
			if shortR == 0 || shortS == 0 {
				t.Fatalf("short r seen %d times, short s %d times; want both", shortR, shortS)
			}
		})
	}
}

// signPadded makes an ECDSA JWS signature with s and reports whether r and
// s had leading zero bytes. It verifies the signature when it has them, or
// when always is set.
func signPadded(t *testing.T, s *jwsSigner, always bool) (shortR, shortS int) {
	t.Helper()
	input := []byte("eyJhbGciOiJFUzI1NiJ9.e30")
	b, err := s.appendSignature(nil, input)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := b64.DecodeString(string(b))
	if err != nil || len(sig) != s.size {
		t.Fatalf("signature of %d bytes (%v); want %d", len(sig), err, s.size)
	}
	half := s.size / 2
	if sig[0] == 0 {
		shortR = 1
	}
	if sig[half] == 0 {
		shortS = 1
	}
	if (always || shortR+shortS > 0) && !verifySignature(s.key.Public(), s.alg, input, sig) {
		t.Fatalf("signature %x does not verify", sig)
	}
	return shortR, shortS
}

func TestECDSADERToRaw(t *testing.T) {
	tests := []struct {
		name string
		der  string // hex
		want string // hex r||s of 4 bytes each; "" for a refusal
	}{
		{"full", "300c 0204 11223344 0204 55667788", "11223344 55667788"},
		{"short r", "300a 0202 1122 0204 55667788", "00001122 55667788"},
		{"short s", "3009 0204 11223344 0201 05", "11223344 00000005"},
		{"high bit", "300e 0205 0091223344 0205 00f5667788", "91223344 f5667788"},
		{"high bit short", "300a 0203 0080ff 0203 0080ff", "000080ff 000080ff"},
		{"long-form length", "3081 0c 0204 11223344 0204 55667788", ""},
		{"long-form integer", "300d 028104 11223344 0204 55667788", ""},
		{"too long", "300e 0205 1122334455 0205 5566778899", ""},
		{"too long after zero", "300e 0205 0011223344 0204 55667788", ""},
		{"negative r", "300c 0204 91223344 0204 55667788", ""},
		{"zero r", "3009 0201 00 0204 55667788", ""},
		{"non-minimal", "300d 0205 0011223344 0204 55667788", ""},
		{"empty r", "3008 0200 0204 55667788", ""},
		{"trailing data", "300c 0204 11223344 0204 55667788 00", ""},
		{"extra element", "300f 0204 11223344 0204 55667788 020101", ""},
		{"short sequence", "300c 0204 11223344", ""},
		{"missing s", "3006 0204 11223344", ""},
		{"wrong tag", "310c 0204 11223344 0204 55667788", ""},
		{"integer tag", "300c 0304 11223344 0204 55667788", ""},
		{"truncated", "300c 0204 1122", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := hex.DecodeString(strings.ReplaceAll(tt.der, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 8)
			ok := ecdsaDERToRaw(out, der)
			switch {
			case tt.want == "" && ok:
				t.Errorf("accepted %s as %x; want a refusal", tt.der, out)
			case tt.want != "" && !ok:
				t.Errorf("refused %s; want %s", tt.der, tt.want)
			case ok && hex.EncodeToString(out) != strings.ReplaceAll(tt.want, " ", ""):
				t.Errorf("r||s = %x; want %s", out, tt.want)
			}
		})
	}
}

// FuzzECDSADERToRaw checks the DER parser against encoding/asn1: what it
// accepts, asn1 reads as the same r and s, and every signature that asn1
// reads whose r and s fit is accepted.
func FuzzECDSADERToRaw(f *testing.F) {
	key := testKey(f, "P-256").(*ecdsa.PrivateKey)
	for i := 0; i < 4; i++ {
		sig, err := ecdsa.SignASN1(rand.Reader, key, make([]byte, 32))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sig)
	}
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02})
	f.Add([]byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, der []byte) {
		out := make([]byte, 64)
		ok := ecdsaDERToRaw(out, der)
		var sig struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(der, &sig)
		asn1OK := err == nil && len(rest) == 0 && fits(sig.R, 32) && fits(sig.S, 32)
		if ok && (!asn1OK || sig.R.Cmp(new(big.Int).SetBytes(out[:32])) != 0 || sig.S.Cmp(new(big.Int).SetBytes(out[32:])) != 0) {
			t.Fatalf("accepted %x as %x; encoding/asn1 reads r=%v s=%v (%v)", der, out, sig.R, sig.S, err)
		}
		if asn1OK && !ok && bytes.Equal(der, mustMarshal(t, sig)) {
			t.Fatalf("refused %x that encoding/asn1 reads", der)
		}
	})
}

// fits reports whether v is positive and fits in size bytes.
func fits(v *big.Int, size int) bool {
	return v != nil && v.Sign() > 0 && v.BitLen() <= 8*size
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWKMembers(t *testing.T) {
	tests := []struct {
		key         string
		wantMembers []string
		kty, crv    string
	}{
		{"P-256", []string{"crv", "kty", "x", "y"}, "EC", "P-256"},
		{"P-384", []string{"crv", "kty", "x", "y"}, "EC", "P-384"},
		{"RSA-2048", []string{"e", "kty", "n"}, "RSA", ""},
		{"Ed25519", []string{"crv", "kty", "x"}, "OKP", "Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			pub := testKey(t, tt.key).Public()
			jwk, err := appendJWK(nil, pub)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]string
			if err := json.Unmarshal(jwk, &m); err != nil {
				t.Fatalf("JWK %s is not a JSON object of strings: %v", jwk, err)
			}
			if got := slices.Sorted(mapKeys(m)); !slices.Equal(got, tt.wantMembers) {
				t.Errorf("members = %v; want %v", got, tt.wantMembers)
			}
			if m["kty"] != tt.kty || m["crv"] != tt.crv {
				t.Errorf("kty, crv = %q, %q; want %q, %q", m["kty"], m["crv"], tt.kty, tt.crv)
			}
			// Canonical (RFC 7638 section 3.3): sorted, no white space,
			// which is how encoding/json writes a map.
			canonical, _ := json.Marshal(m)
			if !bytes.Equal(jwk, canonical) {
				t.Errorf("JWK = %s; want the canonical %s", jwk, canonical)
			}
			if got := publicKeyFromJWK(t, jwk); !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Errorf("the JWK %s is not the key's public key", jwk)
			}
			th, err := jwkThumbprint(pub)
			sum := sha256.Sum256(jwk)
			if err != nil || th != b64.EncodeToString(sum[:]) {
				t.Errorf("thumbprint = %q, %v; want %q", th, err, b64.EncodeToString(sum[:]))
			}
		})
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// publicKeyFromJWK reads a public JWK as a server does, from RFC 7518
// section 6 and RFC 8037 section 2. Its members must be exactly the public
// ones.
func publicKeyFromJWK(t *testing.T, jwk []byte) crypto.PublicKey {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(jwk, &m); err != nil {
		t.Fatalf("JWK %s: %v", jwk, err)
	}
	dec := func(name string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(m[name])
		if err != nil || len(b) == 0 {
			t.Fatalf("JWK member %q = %q is not base64url", name, m[name])
		}
		return b
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := m[private]; ok {
			t.Fatalf("JWK %s holds the private member %q", jwk, private)
		}
	}
	switch m["kty"] {
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[m["crv"]]
		x, y := dec("x"), dec("y")
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			t.Fatalf("EC coordinates of %d and %d bytes; want %d (RFC 7518 section 6.2.1.2)", len(x), len(y), size)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "RSA":
		n, e := dec("n"), dec("e")
		if n[0] == 0 || e[0] == 0 {
			t.Fatalf("RSA n or e has a leading zero byte (RFC 7518 section 6.3.1)")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	case "OKP":
		if m["crv"] != "Ed25519" {
			t.Fatalf("OKP crv = %q", m["crv"])
		}
		return ed25519.PublicKey(dec("x"))
	}
	t.Fatalf("JWK %s has kty %q", jwk, m["kty"])
	return nil
}

func TestJWKThumbprintVectors(t *testing.T) {
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// RFC 7638 section 3.1.
	rsaN := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rsaPub := &rsa.PublicKey{N: new(big.Int).SetBytes(dec(rsaN)), E: 65537}
	// RFC 9449 figures 1 and 9 (the "dpop_jkt" example).
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4},
		dec("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs"), dec("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA")))
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8037 appendix A.3.
	edPub := ed25519.PublicKey(dec("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))
	tests := []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"RFC 7638 RSA", rsaPub, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"RFC 9449 P-256", ecPub, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
		{"RFC 8037 Ed25519", edPub, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := jwkThumbprint(tt.pub)
			if err != nil || got != tt.want {
				t.Errorf("thumbprint = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestJWKRefusesUnsupportedKeys(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []crypto.PublicKey{nil, p521.Public(), ed25519.PublicKey{1}, "a string"} {
		if _, err := jwkThumbprint(pub); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("jwkThumbprint(%T) error = %v; want ErrUnsupportedKey", pub, err)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x1f\x7f", "é€😀", "\xff\xfe", "a\xc3", "\u2028<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := append([]byte{'"'}, appendJSONString(nil, s)...)
		b = append(b, '"')
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendJSONString(%q) = %s is not a JSON string: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("appendJSONString(%q) reads back as %q; want %q", s, got, wantS)
		}
	})
}

// secretForms returns the forms in which key's private material could
// appear in output: decimal, hex and base64 of its private scalar or seed.
func secretForms(t *testing.T, key crypto.Signer) []string {
	t.Helper()
	var secret []byte
	var forms []string
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		secret = b
		forms = append(forms, new(big.Int).SetBytes(b).String())
	case *rsa.PrivateKey:
		secret = k.D.Bytes()
		forms = append(forms, k.D.String(), k.Primes[0].String())
	case ed25519.PrivateKey:
		secret = k.Seed()
		forms = append(forms, fmt.Sprint([]byte(k.Seed())), fmt.Sprint([]byte(k))[:40])
	}
	return append(forms,
		hex.EncodeToString(secret)[:16],
		base64.StdEncoding.EncodeToString(secret)[:16],
		base64.RawURLEncoding.EncodeToString(secret)[:16],
		fmt.Sprintf("%x", secret)[:16],
		strings.Trim(fmt.Sprint(secret), "[]")[:20])
}

// TestJWSSignerNeverPrintsKeys prints jwsSigners of every key kind.
func TestJWSSignerNeverPrintsKeys(t *testing.T) {
	for name, key := range testKeys() {
		t.Run(name, func(t *testing.T) {
			s, err := newJWSSigner(key, "")
			if err != nil {
				t.Fatal(err)
			}
			checkNeverPrintsKey(t, key, s)
		})
	}
}

// checkNeverPrintsKey prints v, a value of this package that holds key, and
// *v, with every fmt verb, nested in a struct, and through slog, and fails
// if the output holds the private key.
func checkNeverPrintsKey[T any](t *testing.T, key crypto.Signer, v *T) {
	t.Helper()
	holder := struct {
		V *T
		W T
	}{v, *v}
	var out strings.Builder
	for _, x := range []any{v, *v, holder, &holder} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			fmt.Fprintf(&out, verb+"\n", x)
		}
		slog.New(slog.NewTextHandler(&out, nil)).Info("m", "v", x)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("m", "v", x)
	}
	for _, secret := range secretForms(t, key) {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("output holds the private key (%q):\n%s", secret, out.String())
		}
	}
}
