package autorefresh

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dpopHeader is the request header that carries a DPoP proof (RFC 9449
// section 4.1), and dpopNonceHeader the response header that carries a
// nonce (section 8), both in the canonical form that http.Header keys use.
const (
	dpopHeader      = "Dpop"
	dpopNonceHeader = "Dpop-Nonce"
)

// errDPoPURL is wrapped by the errors for a request URL that a DPoP proof
// cannot name.
var errDPoPURL = errors.New("autorefresh: DPoP needs an absolute http or https URL")

// dpopProver makes the DPoP proofs (RFC 9449 section 4) of one key. It
// caches what every proof shares, the encoded protected header with "typ",
// "alg" and the public "jwk", so that a proof costs one signature, one
// string and little else.
//
// A dpopProver is immutable and safe for concurrent use when its key is. It
// never prints its key.
type dpopProver struct {
	signer *jwsSigner
	header string // base64url of the protected header, then "."
	now    func() time.Time
}

// newDPoPProver returns a dpopProver for key with algorithm alg, or the
// key's default algorithm when alg is empty (ES256 for a P-256 key; see
// newJWSSigner). Its errors wrap ErrUnsupportedKey.
func newDPoPProver(key crypto.Signer, alg string) (*dpopProver, error) {
	s, err := newJWSSigner(key, alg)
	if err != nil {
		return nil, err
	}
	h := append(make([]byte, 0, 256), `{"typ":"dpop+jwt","alg":"`...)
	h = append(h, s.alg...)
	h = append(h, `","jwk":`...)
	if h, err = appendJWK(h, key.Public()); err != nil {
		return nil, err
	}
	h = append(h, '}')
	return &dpopProver{
		signer: s,
		header: b64.EncodeToString(h) + ".",
		now:    time.Now,
	}, nil
}

// Format prints p without its key, for every verb.
func (p dpopProver) Format(f fmt.State, verb rune) {
	if p.signer == nil {
		io.WriteString(f, "dpopProver()")
		return
	}
	fmt.Fprintf(f, "dpopProver(%s)", p.signer.alg)
}

// proofBuffer is the scratch space of one proof. Buffers are reused through
// proofBuffers, so that a proof allocates only its result and what the
// key's Sign does.
type proofBuffer struct {
	claims []byte
	jws    []byte
}

var proofBuffers = sync.Pool{New: func() any {
	return &proofBuffer{claims: make([]byte, 0, 512), jws: make([]byte, 0, 1024)}
}}

// maxPooledProof bounds the buffers kept for reuse, so that one huge URL
// does not pin its memory.
const maxPooledProof = 16 << 10

// proof returns a DPoP proof for a request with method htm (GET when empty,
// as net/http does) to u, with the claims that RFC 9449 section 4.2 asks
// for: a new random "jti", "htm", "htu" (u without query and fragment; see
// appendHTU), "iat" (now, in seconds), "nonce" when nonce is not empty and
// "ath" when ath is not empty. ath is dpopATH of the access token sent with
// the request: proofs for resource requests carry it, proofs for token
// requests do not.
//
// The error wraps errDPoPURL when u is not an absolute http or https URL,
// or is the key's signing error.
func (p *dpopProver) proof(htm string, u *url.URL, nonce, ath string) (string, error) {
	buf := proofBuffers.Get().(*proofBuffer)
	defer func() {
		if cap(buf.claims)+cap(buf.jws) <= maxPooledProof {
			proofBuffers.Put(buf)
		}
	}()
	claims, err := p.appendClaims(buf.claims[:0], htm, u, nonce, ath)
	buf.claims = claims
	if err != nil {
		return "", err
	}
	b := append(buf.jws[:0], p.header...)
	b = b64.AppendEncode(b, claims)
	b, err = p.signer.appendSignature(append(b, '.'), b)
	buf.jws = b
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendClaims appends the JSON claims of a proof to dst.
func (p *dpopProver) appendClaims(dst []byte, htm string, u *url.URL, nonce, ath string) ([]byte, error) {
	if htm == "" {
		htm = http.MethodGet
	}
	dst = append(dst, `{"jti":"`...)
	dst = appendJTI(dst)
	dst = append(dst, `","htm":"`...)
	dst = appendJSONString(dst, htm)
	dst = append(dst, `","htu":"`...)
	start := len(dst)
	dst, err := appendHTU(dst, u)
	if err != nil {
		return dst, err
	}
	if !jsonSafe(dst[start:]) {
		dst = appendJSONString(dst[:start], string(dst[start:]))
	}
	dst = append(dst, `","iat":`...)
	dst = strconv.AppendInt(dst, p.now().Unix(), 10)
	if nonce != "" {
		dst = append(dst, `,"nonce":"`...)
		dst = appendJSONString(dst, nonce)
		dst = append(dst, '"')
	}
	if ath != "" {
		dst = append(dst, `,"ath":"`...)
		dst = appendJSONString(dst, ath)
		dst = append(dst, '"')
	}
	return append(dst, '}'), nil
}

// dpopATH returns the "ath" claim for an access token (RFC 9449 section
// 4.2): the base64url SHA-256 digest of its ASCII form. It does not change
// while the token does not, so callers compute it once per token.
func dpopATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64.EncodeToString(sum[:])
}

// dpopHTU returns the "htu" claim for a request to u; see appendHTU.
func dpopHTU(u *url.URL) (string, error) {
	b, err := appendHTU(nil, u)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendHTU appends to dst the "htu" claim for a request to u (RFC 9449
// section 4.2): its target URI without query and fragment, normalised as
// RFC 3986 sections 6.2.2 and 6.2.3 ask so that it compares equal to what a
// server reconstructs. That is the origin (see appendOrigin), then the path
// as it is sent on the wire ("/" when empty). User information is left out,
// since it is never sent. u must be an absolute http or https URL;
// otherwise the error wraps errDPoPURL.
func appendHTU(dst []byte, u *url.URL) ([]byte, error) {
	dst, err := appendOrigin(dst, u)
	if err != nil {
		return dst, err
	}
	path := u.EscapedPath()
	if u.Opaque != "" {
		// "http:/path" or "http://host/path" with the path kept as it is
		// (see url.URL.Opaque): the path is what follows the authority.
		path = u.Opaque
		if strings.HasPrefix(path, "//") {
			_, path, _ = strings.Cut(path[2:], "/")
			path = "/" + path
		}
		if !strings.HasPrefix(path, "/") {
			return dst, fmt.Errorf("%w: its path is opaque", errDPoPURL)
		}
	}
	if path == "" {
		path = "/"
	}
	return append(dst, path...), nil
}

// appendOrigin appends the origin of u (RFC 6454) to dst in the normal form
// of RFC 3986 section 6.2: "scheme://host[:port]" with the scheme and the
// host in lower case, the port left out when it is the default one of the
// scheme (80 for http, 443 for https), an IPv6 address in brackets and its
// zone escaped. u must be an absolute http or https URL; otherwise the
// error wraps errDPoPURL.
func appendOrigin(dst []byte, u *url.URL) ([]byte, error) {
	if u == nil {
		return dst, fmt.Errorf("%w: the request has no URL", errDPoPURL)
	}
	var def string
	switch {
	case strings.EqualFold(u.Scheme, "https"):
		dst, def = append(dst, "https://"...), "443"
	case strings.EqualFold(u.Scheme, "http"):
		dst, def = append(dst, "http://"...), "80"
	default:
		return dst, fmt.Errorf("%w: the scheme is %q", errDPoPURL, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return dst, fmt.Errorf("%w: the URL has no host", errDPoPURL)
	}
	ipv6 := strings.IndexByte(host, ':') >= 0
	if ipv6 {
		dst = append(dst, '[')
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '%' && ipv6: // a zone: "%25" in a URI (RFC 6874)
			dst = append(dst, "%25"...)
			continue
		}
		dst = append(dst, c)
	}
	if ipv6 {
		dst = append(dst, ']')
	}
	if p := u.Port(); p != "" && p != def {
		dst = append(dst, ':')
		dst = append(dst, p...)
	}
	return dst, nil
}

// maxNonceOrigins bounds the origins a dpopNonces remembers, and
// maxNonceLen the nonces it accepts.
const (
	maxNonceOrigins = 1024
	maxNonceLen     = 2048
)

// dpopNonces holds the last DPoP nonce (RFC 9449 sections 8 and 9) that
// each origin gave: an authorization server and each resource server have
// their own. Nonces are not secrets. It is safe for concurrent use; the zero
// value is empty and ready to use.
type dpopNonces struct {
	mu     sync.RWMutex      // guards byHost
	byHost map[string]string // origin (see appendOrigin) → nonce
}

// nonce returns the nonce to send with a request to u, or "" when its
// origin gave none.
func (c *dpopNonces) nonce(u *url.URL) string {
	var a [128]byte
	key, err := appendOrigin(a[:0], u)
	if err != nil {
		return ""
	}
	c.mu.RLock()
	n := c.byHost[string(key)]
	c.mu.RUnlock()
	return n
}

// update records the nonce of the response to a request sent to u, from
// its DPoP-Nonce header, and returns it. ok is false when h carries no
// nonce, or one that is not valid (see validNonce), which is ignored. Call
// it for every response of a server that uses DPoP, successful ones
// included, with the URL of the request that was sent (not the one a
// RoundTripper put in the response).
func (c *dpopNonces) update(u *url.URL, h http.Header) (nonce string, ok bool) {
	v := h[dpopNonceHeader]
	if len(v) == 0 || !validNonce(v[0]) {
		return "", false
	}
	nonce = v[0]
	var a [128]byte
	key, err := appendOrigin(a[:0], u)
	if err != nil {
		return "", false
	}
	c.mu.RLock()
	same := c.byHost[string(key)] == nonce
	c.mu.RUnlock()
	if same {
		return nonce, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byHost == nil {
		c.byHost = make(map[string]string)
	}
	if _, known := c.byHost[string(key)]; !known && len(c.byHost) >= maxNonceOrigins {
		for k := range c.byHost { // forget one origin, any
			delete(c.byHost, k)
			break
		}
	}
	c.byHost[string(key)] = nonce
	return nonce, true
}

// validNonce reports whether s is a nonce as RFC 9449 section 8.1 defines
// it (1*NQCHAR: printable ASCII but '"' and '\'), of a sensible length.
func validNonce(s string) bool {
	if s == "" || len(s) > maxNonceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
