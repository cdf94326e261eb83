package autorefresh

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The JWS algorithms (RFC 7518 section 3.1, RFC 8037 section 3.1) that
// jwsSigner makes.
const (
	algES256 = "ES256" // ECDSA P-256 with SHA-256
	algES384 = "ES384" // ECDSA P-384 with SHA-384
	algRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	algPS256 = "PS256" // RSASSA-PSS with SHA-256, salt as long as the hash
	algEdDSA = "EdDSA" // Ed25519
)

// minRSABits is the smallest RSA modulus accepted (RFC 7518 section 3.3).
const minRSABits = 2048

// b64 is the base64url encoding without padding that JWS uses.
var b64 = base64.RawURLEncoding

// jwsSigner signs compact JWS (RFC 7515) with a crypto.Signer, so that keys
// held in an HSM, a KMS or a TPM work as well as keys in memory. It is
// immutable, and safe for concurrent use when its key is.
//
// A jwsSigner never prints its key: fmt and slog show the algorithm only.
type jwsSigner struct {
	key  crypto.Signer
	alg  string
	opts crypto.SignerOpts // the hash, or PSS options; crypto.Hash(0) for EdDSA

	// hash is the digest signed, or 0 for EdDSA, which signs the signing
	// input itself.
	hash crypto.Hash

	// size is the length of the raw JWS signature: r||s for ECDSA, the
	// modulus length for RSA, 64 for Ed25519.
	size int
}

// jwsAlgs holds the supported algorithms: the digest each signs (0 for
// EdDSA, which signs the message), and the default algorithm of the keys
// that can make it (see defaultAlg).
var jwsAlgs = map[string]struct {
	hash   crypto.Hash
	keyAlg string
}{
	algES256: {crypto.SHA256, algES256},
	algES384: {crypto.SHA384, algES384},
	algRS256: {crypto.SHA256, algRS256},
	algPS256: {crypto.SHA256, algRS256},
	algEdDSA: {0, algEdDSA},
}

// newJWSSigner returns a jwsSigner for key with algorithm alg, or the
// default algorithm of the key when alg is empty: ES256 for an ECDSA P-256
// key, ES384 for P-384, RS256 for RSA (PS256 when asked) and EdDSA for
// Ed25519. An unsupported key, or an algorithm the key cannot make, gives an
// error wrapping ErrUnsupportedKey.
func newJWSSigner(key crypto.Signer, alg string) (*jwsSigner, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no key", ErrUnsupportedKey)
	}
	pub := key.Public()
	def, err := defaultAlg(pub)
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = def
	}
	params, ok := jwsAlgs[alg]
	if !ok {
		return nil, fmt.Errorf("%w: algorithm %q is not one of ES256, ES384, RS256, PS256 and EdDSA", ErrUnsupportedKey, alg)
	}
	if params.keyAlg != def {
		return nil, fmt.Errorf("%w: %s cannot sign %s (it signs %s)", ErrUnsupportedKey, keyDescription(pub), alg, def)
	}
	s := &jwsSigner{key: key, alg: alg, hash: params.hash, opts: params.hash}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		s.size = 2 * ((k.Curve.Params().BitSize + 7) / 8)
	case *rsa.PublicKey:
		s.size = (k.N.BitLen() + 7) / 8
	case ed25519.PublicKey:
		s.size = ed25519.SignatureSize
	}
	if alg == algPS256 {
		s.opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	return s, nil
}

// defaultAlg returns the default JWS algorithm of the public key pub, or an
// error wrapping ErrUnsupportedKey for a key that no supported algorithm
// uses.
func defaultAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algES256, nil
		case elliptic.P384():
			return algES384, nil
		}
	case *rsa.PublicKey:
		if k.N != nil && k.N.BitLen() >= minRSABits && k.E > 1 {
			return algRS256, nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return algEdDSA, nil
		}
	}
	return "", fmt.Errorf("%w: %s (want ECDSA P-256 or P-384, RSA of at least %d bits, or Ed25519)",
		ErrUnsupportedKey, keyDescription(pub), minRSABits)
}

// keyDescription names the type and size of the public key pub, never its
// value.
func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == nil || k.Curve.Params() == nil {
			return "an ECDSA key on an unknown curve"
		}
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		if k.N == nil {
			return "an RSA key without modulus"
		}
		return "a " + strconv.Itoa(k.N.BitLen()) + "-bit RSA key"
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "a malformed Ed25519 key"
		}
		return "an Ed25519 key"
	case nil:
		return "a key without public key"
	}
	return fmt.Sprintf("a key of type %T", pub)
}

// Format prints s without its key, for every verb.
func (s jwsSigner) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "jwsSigner(%s)", s.alg)
}

// appendSignature signs signingInput (the ASCII "header.payload" of a
// compact JWS) and appends the base64url signature to dst. signingInput may
// share dst's memory: it is read before anything is appended. The digest
// signed is kept in dst's spare capacity, so that a caller reusing dst
// makes the signature without allocating more than the key's Sign does.
func (s *jwsSigner) appendSignature(dst, signingInput []byte) ([]byte, error) {
	n := len(dst)
	msg := signingInput // EdDSA signs the message itself
	switch s.hash {
	case crypto.SHA256:
		d := sha256.Sum256(signingInput)
		dst = append(dst, d[:]...)
		msg = dst[n:]
	case crypto.SHA384:
		d := sha512.Sum384(signingInput)
		dst = append(dst, d[:]...)
		msg = dst[n:]
	}
	sig, err := s.key.Sign(rand.Reader, msg, s.opts)
	dst = dst[:n]
	if err != nil {
		return dst, fmt.Errorf("autorefresh: %s signing failed: %w", s.alg, err)
	}
	var raw [2 * 48]byte // r||s of ES256 and ES384
	switch {
	case s.alg == algES256 || s.alg == algES384:
		if !ecdsaDERToRaw(raw[:s.size], sig) {
			return dst, fmt.Errorf("autorefresh: the key's signer returned a malformed %s signature", s.alg)
		}
		sig = raw[:s.size]
	case len(sig) < s.size && s.alg != algEdDSA:
		// An RSA signer that dropped leading zero bytes: JWS wants the
		// full modulus length.
		sig = append(make([]byte, s.size-len(sig), s.size), sig...)
	case len(sig) != s.size:
		return dst, fmt.Errorf("autorefresh: the key's signer returned a %d-byte %s signature; want %d bytes", len(sig), s.alg, s.size)
	}
	return b64.AppendEncode(dst, sig), nil
}

// sign returns the compact JWS of the JSON header and payload.
func (s *jwsSigner) sign(header, payload []byte) (string, error) {
	b := make([]byte, 0, b64.EncodedLen(len(header))+1+b64.EncodedLen(len(payload))+1+max(b64.EncodedLen(s.size), sha512.Size384))
	b = b64.AppendEncode(b, header)
	b = append(b, '.')
	b = b64.AppendEncode(b, payload)
	b, err := s.appendSignature(append(b, '.'), b)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ecdsaDERToRaw writes the ASN.1 DER ECDSA signature der, a SEQUENCE of the
// INTEGERs r and s, to out as JWS wants it (RFC 7518 section 3.4): r and s
// as big-endian unsigned integers, each left-padded with zeros to half of
// out. It reports whether der was a well-formed DER signature whose r and s
// are positive and fit.
func ecdsaDERToRaw(out, der []byte) bool {
	seq, rest, ok := derElement(der, 0x30)
	if !ok || len(rest) != 0 {
		return false
	}
	r, seq, ok := derElement(seq, 0x02)
	if !ok {
		return false
	}
	s, seq, ok := derElement(seq, 0x02)
	if !ok || len(seq) != 0 {
		return false
	}
	half := len(out) / 2
	return putDERUint(out[:half], r) && putDERUint(out[half:], s)
}

// derElement splits off the DER element with tag at the start of b and
// returns its content. Lengths must be in their shortest form; no ECDSA
// signature of the supported curves needs more than one length byte.
func derElement(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, b := int(b[1]), b[2:]
	if n >= 0x80 {
		if n != 0x81 || len(b) == 0 || b[0] < 0x80 {
			return nil, nil, false
		}
		n, b = int(b[0]), b[1:]
	}
	if len(b) < n {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// putDERUint writes the content v of a DER INTEGER, which must be minimally
// encoded and positive, right-aligned in out. It reports whether v was such
// an integer and fit.
func putDERUint(out, v []byte) bool {
	switch {
	case len(v) == 0 || v[0]&0x80 != 0: // empty or negative
		return false
	case v[0] == 0 && len(v) == 1: // zero
		return false
	case v[0] == 0 && v[1]&0x80 == 0: // not minimal
		return false
	case v[0] == 0:
		v = v[1:]
	}
	if len(v) > len(out) {
		return false
	}
	n := copy(out[len(out)-len(v):], v)
	clear(out[:len(out)-n])
	return true
}

// appendJWK appends the public JWK (RFC 7517) of pub to dst, in the
// canonical form of RFC 7638 section 3: only the required public members
// (RFC 7518 section 6, RFC 8037 section 2), in lexicographic order, without
// white space. The result serves both as the "jwk" header parameter and as
// the input of the thumbprint.
func appendJWK(dst []byte, pub crypto.PublicKey) ([]byte, error) {
	if _, err := defaultAlg(pub); err != nil {
		return dst, err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || x || y
		if err != nil || len(point) == 0 || point[0] != 4 {
			return dst, fmt.Errorf("%w: %s with an invalid point", ErrUnsupportedKey, keyDescription(pub))
		}
		n := (len(point) - 1) / 2
		dst = append(dst, `{"crv":"`...)
		dst = append(dst, k.Curve.Params().Name...)
		dst = append(dst, `","kty":"EC","x":"`...)
		dst = b64.AppendEncode(dst, point[1:1+n])
		dst = append(dst, `","y":"`...)
		dst = b64.AppendEncode(dst, point[1+n:])
	case *rsa.PublicKey:
		e := big32(uint64(k.E))
		dst = append(dst, `{"e":"`...)
		dst = b64.AppendEncode(dst, e)
		dst = append(dst, `","kty":"RSA","n":"`...)
		dst = b64.AppendEncode(dst, k.N.Bytes())
	case ed25519.PublicKey:
		dst = append(dst, `{"crv":"Ed25519","kty":"OKP","x":"`...)
		dst = b64.AppendEncode(dst, k)
	}
	return append(dst, `"}`...), nil
}

// big32 returns v as a big-endian unsigned integer without leading zero
// bytes, as JWK writes an RSA exponent.
func big32(v uint64) []byte {
	var b [8]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte(v)
		v >>= 8
	}
	return b[i:]
}

// jwkThumbprint returns the JWK thumbprint of pub (RFC 7638): the base64url
// SHA-256 digest of its canonical public JWK.
func jwkThumbprint(pub crypto.PublicKey) (string, error) {
	jwk, err := appendJWK(nil, pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(jwk)
	return b64.EncodeToString(sum[:]), nil
}

// appendJSONString appends the content of a JSON string holding s to dst,
// without the surrounding quotes: quotes, backslashes and control
// characters are escaped, and each byte of invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, `\ufffd`...)
		}
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

// jsonSafe reports whether b can stand in a JSON string as it is.
func jsonSafe(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// appendJTI appends a new JWT ID to dst: 128 random bits, base64url
// encoded, which no other JWT will repeat.
func appendJTI(dst []byte) []byte {
	var id [16]byte
	rand.Read(id[:])
	return b64.AppendEncode(dst, id[:])
}
