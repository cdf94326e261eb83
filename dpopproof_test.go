package autorefresh

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// decodedProof is a DPoP proof taken apart.
type decodedProof struct {
	header map[string]json.RawMessage
	claims map[string]any
}

// checkProof verifies a DPoP proof as RFC 9449 section 4.3 asks a server
// to (signature with the public key of its own "jwk", "typ", "alg", the
// members of the header and of the claims) and returns it decoded.
func checkProof(t *testing.T, proof, wantAlg string) decodedProof {
	t.Helper()
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("proof has %d parts; want 3", len(parts))
	}
	var d decodedProof
	decodeSegment(t, parts[0], &d.header)
	decodeSegment(t, parts[1], &d.claims)
	if got := slices.Sorted(rawKeys(d.header)); !slices.Equal(got, []string{"alg", "jwk", "typ"}) {
		t.Errorf("header members = %v; want alg, jwk, typ", got)
	}
	if string(d.header["typ"]) != `"dpop+jwt"` || string(d.header["alg"]) != `"`+wantAlg+`"` {
		t.Errorf("typ, alg = %s, %s; want \"dpop+jwt\", %q", d.header["typ"], d.header["alg"], wantAlg)
	}
	pub := publicKeyFromJWK(t, d.header["jwk"])
	verifyJWS(t, proof, pub, wantAlg)
	return d
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q is not base64url: %v", seg, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("segment %s is not a JSON object: %v", b, err)
	}
}

func rawKeys(m map[string]json.RawMessage) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestDPoPProofClaims(t *testing.T) {
	now := time.Unix(1_700_000_123, 987_000_000)
	tests := []struct {
		name                  string
		method, url           string
		nonce, ath            string
		wantHTM, wantHTU      string
		wantNonce, wantAccess bool
	}{
		{"token request", "POST", "https://AS.example.com/token?x=1#f", "", "", "POST", "https://as.example.com/token", false, false},
		{"token request with nonce", "POST", "https://as.example.com/token", "eyJ7S_zG.eyJH0-Z.HX4w-7v", "", "POST", "https://as.example.com/token", true, false},
		{"resource request", "GET", "https://rs.example.com:443/api/items?page=2", "", dpopATH("token"), "GET", "https://rs.example.com/api/items", false, true},
		{"resource request with nonce", "DELETE", "http://127.0.0.1:8080/x", "n-1", dpopATH("token"), "DELETE", "http://127.0.0.1:8080/x", true, true},
		{"empty method", "", "https://rs.example.com", "", "", "GET", "https://rs.example.com/", false, false},
	}
	for _, kc := range algCases {
		for _, tt := range tests {
			t.Run(kc.key+"/"+kc.alg+"/"+tt.name, func(t *testing.T) {
				p, err := newDPoPProver(hsmSigner{testKey(t, kc.key)}, kc.alg)
				if err != nil {
					t.Fatal(err)
				}
				p.now = func() time.Time { return now }
				proof, err := p.proof(tt.method, mustParseURL(t, tt.url), tt.nonce, tt.ath)
				if err != nil {
					t.Fatalf("proof: %v", err)
				}
				d := checkProof(t, proof, kc.want)
				want := map[string]any{"htm": tt.wantHTM, "htu": tt.wantHTU, "iat": float64(now.Unix())}
				if tt.wantNonce {
					want["nonce"] = tt.nonce
				}
				if tt.wantAccess {
					want["ath"] = tt.ath
				}
				jti, _ := d.claims["jti"].(string)
				if b, err := base64.RawURLEncoding.Strict().DecodeString(jti); err != nil || len(b) != 16 {
					t.Errorf("jti = %q; want 16 random bytes in base64url", jti)
				}
				delete(d.claims, "jti")
				if fmt.Sprint(d.claims) != fmt.Sprint(want) {
					t.Errorf("claims = %v; want %v and a jti", d.claims, want)
				}
			})
		}
	}
}

// TestDPoPProofHeaderIsCached checks that the proofs of one prover share
// their header, and that the header is the one RFC 9449 section 4.2 asks
// for, with the public JWK of the key and nothing else.
func TestDPoPProofHeaderIsCached(t *testing.T) {
	key := testKey(t, "P-256")
	p, err := newDPoPProver(key, "")
	if err != nil {
		t.Fatal(err)
	}
	jwk, _ := appendJWK(nil, key.Public())
	want := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + string(jwk) + `}`
	u := mustParseURL(t, "https://rs.example.com/")
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		proof, err := p.proof("GET", u, "", "")
		if err != nil {
			t.Fatal(err)
		}
		h, claims, _ := strings.Cut(proof, ".")
		if got, _ := base64.RawURLEncoding.DecodeString(h); string(got) != want {
			t.Fatalf("header = %s; want %s", got, want)
		}
		if seen[claims] {
			t.Fatalf("two proofs have the same claims %s", claims)
		}
		seen[claims] = true
	}
}

func TestDPoPProverNeverPrintsKeys(t *testing.T) {
	for name, key := range testKeys() {
		t.Run(name, func(t *testing.T) {
			p, err := newDPoPProver(key, "")
			if err != nil {
				t.Fatal(err)
			}
			checkNeverPrintsKey(t, key, p)
			checkNeverPrintsKey(t, key, &dpopProver{})
		})
	}
}

func TestDPoPJTIsAreUnique(t *testing.T) {
	seen := make(map[string]bool, 100_000)
	for i := 0; i < 100_000; i++ {
		jti := string(appendJTI(nil))
		if seen[jti] {
			t.Fatalf("jti %q repeated after %d", jti, i)
		}
		seen[jti] = true
	}
}

func TestDPoPProofRefusesURLs(t *testing.T) {
	p, err := newDPoPProver(testKey(t, "P-256"), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{"/relative", "ftp://example.com/x", "https:///path", "mailto:someone@example.com", "http:relative"} {
		if _, err := p.proof("GET", mustParseURL(t, raw), "", ""); !errors.Is(err, errDPoPURL) {
			t.Errorf("proof for %q: error = %v; want errDPoPURL", raw, err)
		}
	}
	if _, err := p.proof("GET", nil, "", ""); !errors.Is(err, errDPoPURL) {
		t.Errorf("proof for nil URL: error = %v; want errDPoPURL", err)
	}
}

func TestDPoPHTU(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://example.com/a/b?x=1&y=2#frag", "https://example.com/a/b"},
		{"https://example.com/a/b#frag", "https://example.com/a/b"},
		{"https://example.com/?", "https://example.com/"},
		{"https://example.com/#", "https://example.com/"},
		{"https://example.com", "https://example.com/"},
		{"https://example.com?q=1", "https://example.com/"},
		{"HTTPS://Example.COM/Path/Keeps/Case", "https://example.com/Path/Keeps/Case"},
		{"https://example.com:443/x", "https://example.com/x"},
		{"http://example.com:80/x", "http://example.com/x"},
		{"http://example.com:443/x", "http://example.com:443/x"},
		{"https://example.com:80/x", "https://example.com:80/x"},
		{"https://example.com:8443", "https://example.com:8443/"},
		{"https://example.com:/x", "https://example.com/x"},
		{"https://user:secret@example.com/x", "https://example.com/x"},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"},
		{"http://[::1]:8080/x?y", "http://[::1]:8080/x"},
		{"https://[::1]:443/", "https://[::1]/"},
		{"https://[2001:DB8::A]/x", "https://[2001:db8::a]/x"},
		{"http://[fe80::1%25en0]:8080/x", "http://[fe80::1%25en0]:8080/x"},
		{"https://example.com/a%2Fb/c", "https://example.com/a%2Fb/c"},
		{"https://example.com/caf%C3%A9", "https://example.com/caf%C3%A9"},
		{"https://example.com/café", "https://example.com/caf%C3%A9"},
		{"https://example.com/a/../b", "https://example.com/a/../b"},
		{"https://example.com//double", "https://example.com//double"},
		{"https://example.com/a;p=1", "https://example.com/a;p=1"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := dpopHTU(mustParseURL(t, tt.url))
			if err != nil || got != tt.want {
				t.Errorf("htu = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	opaque := []struct {
		u    *url.URL
		want string
	}{
		{&url.URL{Scheme: "https", Host: "example.com", Opaque: "//example.com/raw%2fpath", RawQuery: "q"}, "https://example.com/raw%2fpath"},
		{&url.URL{Scheme: "https", Host: "example.com", Opaque: "/raw%2fpath"}, "https://example.com/raw%2fpath"},
		{&url.URL{Scheme: "https", Host: "example.com", Opaque: "//example.com"}, "https://example.com/"},
	}
	for _, tt := range opaque {
		got, err := dpopHTU(tt.u)
		if err != nil || got != tt.want {
			t.Errorf("htu of Opaque %q = %q, %v; want %q", tt.u.Opaque, got, err, tt.want)
		}
	}
}

func mustParseURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", raw, err)
	}
	return u
}

func TestDPoPATH(t *testing.T) {
	// RFC 9449 section 7.1, figures 12 and 13.
	const token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
	if got, want := dpopATH(token), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"; got != want {
		t.Errorf("ath = %q; want %q", got, want)
	}
}

func nonceHeader(v ...string) http.Header {
	return http.Header{dpopNonceHeader: v}
}

func TestDPoPNonces(t *testing.T) {
	var c dpopNonces
	as := mustParseURL(t, "https://as.example.com/token")
	if got := c.nonce(as); got != "" {
		t.Errorf("nonce of an empty cache = %q; want none", got)
	}
	if n, ok := c.update(as, nonceHeader("n1")); !ok || n != "n1" {
		t.Errorf("update = %q, %t; want n1, true", n, ok)
	}
	sameOrigin := []string{"https://as.example.com/other?x=1", "HTTPS://AS.Example.com:443/", "https://u:p@as.example.com"}
	for _, raw := range sameOrigin {
		if got := c.nonce(mustParseURL(t, raw)); got != "n1" {
			t.Errorf("nonce for %s = %q; want the nonce of its origin, n1", raw, got)
		}
	}
	otherOrigins := []string{"http://as.example.com/token", "https://as.example.com:8443/token", "https://rs.example.com/token", "https://example.com/"}
	for _, raw := range otherOrigins {
		if got := c.nonce(mustParseURL(t, raw)); got != "" {
			t.Errorf("nonce for %s = %q; want none: another origin", raw, got)
		}
	}

	rs := mustParseURL(t, "http://[::1]:8080/api")
	c.update(rs, nonceHeader("r1"))
	c.update(as, nonceHeader("n2"))
	if got, gotRS := c.nonce(as), c.nonce(rs); got != "n2" || gotRS != "r1" {
		t.Errorf("nonces = %q, %q; want n2, r1", got, gotRS)
	}
}

// TestDPoPNoncesIgnoreInvalid: invalid values and responses without a
// nonce change nothing.
func TestDPoPNoncesIgnoreInvalid(t *testing.T) {
	var c dpopNonces
	as := mustParseURL(t, "https://as.example.com/token")
	c.update(as, nonceHeader("n2"))
	invalid := []http.Header{nil, {}, nonceHeader(""), nonceHeader("a b"), nonceHeader(`a"b`), nonceHeader(`a\b`),
		nonceHeader("a\x7f"), nonceHeader("é"), nonceHeader(strings.Repeat("n", maxNonceLen+1)), {"Dpop-nonce": {"lower"}}}
	for _, h := range invalid {
		if n, ok := c.update(as, h); ok {
			t.Errorf("update with %q accepted %q", h, n)
		}
	}
	if got := c.nonce(as); got != "n2" {
		t.Errorf("nonce after invalid updates = %q; want n2", got)
	}
	if _, ok := c.update(mustParseURL(t, "/relative"), nonceHeader("x")); ok {
		t.Errorf("update for a relative URL accepted a nonce")
	}
	long := strings.Repeat("n", maxNonceLen)
	if n, ok := c.update(as, nonceHeader(long, "second")); !ok || n != long {
		t.Errorf("update with the longest nonce = %q, %t; want it", n, ok)
	}
}

func TestDPoPNoncesBounded(t *testing.T) {
	var c dpopNonces
	for i := 0; i < 3*maxNonceOrigins; i++ {
		c.update(mustParseURL(t, fmt.Sprintf("https://h%d.example.com/", i)), nonceHeader("n"))
	}
	if n := len(c.byHost); n > maxNonceOrigins {
		t.Errorf("cache holds %d origins; want at most %d", n, maxNonceOrigins)
	}
	last := mustParseURL(t, fmt.Sprintf("https://h%d.example.com/", 3*maxNonceOrigins-1))
	if got := c.nonce(last); got != "n" {
		t.Errorf("nonce of the last origin = %q; want n", got)
	}
}

// TestDPoPNoncesConcurrent updates and reads the nonces of a few origins
// from many goroutines (run it with -race). Each origin has one writer,
// which must always read back its own last nonce, while readers of all
// origins only ever see nonces that their origin was given.
func TestDPoPNoncesConcurrent(t *testing.T) {
	const origins, readers, rounds = 4, 16, 500
	var c dpopNonces
	urls := make([]*url.URL, origins)
	for i := range urls {
		urls[i] = mustParseURL(t, fmt.Sprintf("https://o%d.example.com/path", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, origins+readers)
	for i := range origins {
		wg.Go(func() {
			for r := range rounds {
				want := fmt.Sprintf("o%d-%d", i, r)
				c.update(urls[i], nonceHeader(want))
				if got := c.nonce(urls[i]); got != want {
					errs <- fmt.Errorf("writer %d read %q after writing %q", i, got, want)
					return
				}
			}
		})
	}
	for g := range readers {
		wg.Go(func() {
			for r := range rounds {
				i := (g + r) % origins
				if got := c.nonce(urls[i]); got != "" && !strings.HasPrefix(got, fmt.Sprintf("o%d-", i)) {
					errs <- fmt.Errorf("origin %d has nonce %q", i, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, u := range urls {
		if got, want := c.nonce(u), fmt.Sprintf("o%d-%d", i, rounds-1); got != want {
			t.Errorf("final nonce of origin %d = %q; want %q", i, got, want)
		}
	}
}

// FuzzDPoPProof makes proofs for any method, URL, nonce and ath, and checks
// that each verifies and carries them as RFC 9449 section 4.2 says.
func FuzzDPoPProof(f *testing.F) {
	f.Add("GET", "https://example.com/a?b#c", "", "")
	f.Add("POST", "http://[::1]:80/token", "n\"once", "ath\\")
	f.Add("", "HTTPS://USER@EXAMPLE.COM:443", "\x00", "é")
	f.Add("G\"ET", "https://example.com/%zz", "\xff", "")
	f.Add("PUT", "http://h\xffost/x", "n", "a")
	key := testKey(f, "P-256")
	p, err := newDPoPProver(key, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, raw, nonce, ath string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		proof, err := p.proof(method, u, nonce, ath)
		if err != nil {
			if !errors.Is(err, errDPoPURL) {
				t.Fatalf("proof error = %v; want one wrapping errDPoPURL", err)
			}
			return
		}
		d := checkProof(t, proof, algES256)
		htu, err := dpopHTU(u)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(htu, "?#") && u.Opaque == "" {
			t.Errorf("htu %q holds a query or fragment", htu)
		}
		want := map[string]string{"htm": cmpJSON(method), "htu": cmpJSON(htu), "nonce": cmpJSON(nonce), "ath": cmpJSON(ath)}
		if method == "" {
			want["htm"] = "GET"
		}
		for name, w := range want {
			got, present := d.claims[name]
			if w == "" && !present {
				continue
			}
			if got != w {
				t.Errorf("claim %s = %q; want %q", name, got, w)
			}
		}
	})
}

// cmpJSON returns s as it reads back from JSON (invalid UTF-8 replaced).
func cmpJSON(s string) string {
	b, _ := json.Marshal(s)
	var back string
	json.Unmarshal(b, &back)
	return back
}

func FuzzDPoPNonce(f *testing.F) {
	for _, s := range []string{"", "n", "eyJ7S_zG.eyJH0-Z.HX4w-7v", "a b", `"`, "\\", "\x7f", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c dpopNonces
		u := mustParseURL(t, "https://example.com/")
		n, ok := c.update(u, nonceHeader(s))
		if ok != validNonce(s) || ok && (n != s || c.nonce(u) != s) {
			t.Fatalf("update(%q) = %q, %t; cache holds %q", s, n, ok, c.nonce(u))
		}
		if ok && (strings.ContainsAny(s, "\" \\") || len(s) > maxNonceLen) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// BenchmarkES256SignFloor is the cost that a DPoP proof cannot go below: a
// bare ECDSA P-256 signature of a SHA-256 digest.
func BenchmarkES256SignFloor(b *testing.B) {
	key := testKey(b, "P-256").(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte("header.payload"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDPoPProof makes an ES256 proof for a resource request, with a
// nonce and an ath, from a prover made once.
func BenchmarkDPoPProof(b *testing.B) {
	p, err := newDPoPProver(testKey(b, "P-256"), "")
	if err != nil {
		b.Fatal(err)
	}
	u := mustParseURL(b, "https://api.example.com/v1/items/42?expand=owner")
	ath := dpopATH("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2ln")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.proof(http.MethodGet, u, "eyJ7S_zG.eyJH0-Z.HX4w-7v", ath); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDPoPProofOverhead is BenchmarkDPoPProof with a key whose Sign
// costs nothing (it returns a fixed signature): what a proof costs beyond
// the signature.
func BenchmarkDPoPProofOverhead(b *testing.B) {
	key := testKey(b, "P-256").(*ecdsa.PrivateKey)
	sig, err := ecdsa.SignASN1(rand.Reader, key, make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	p, err := newDPoPProver(fakeSigner{pub: key.Public(), sig: sig}, "")
	if err != nil {
		b.Fatal(err)
	}
	u := mustParseURL(b, "https://api.example.com/v1/items/42?expand=owner")
	ath := dpopATH("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2ln")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.proof(http.MethodGet, u, "eyJ7S_zG.eyJH0-Z.HX4w-7v", ath); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDPoPProofRequest is the whole per-request path that a Transport
// takes: look up the origin's nonce, make the proof, set the header on the
// request's clone.
func BenchmarkDPoPProofRequest(b *testing.B) {
	p, err := newDPoPProver(testKey(b, "P-256"), "")
	if err != nil {
		b.Fatal(err)
	}
	var nonces dpopNonces
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/v1/items/42?expand=owner", nil)
	nonces.update(req.URL, nonceHeader("eyJ7S_zG.eyJH0-Z.HX4w-7v"))
	ath := dpopATH("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2ln")
	b.ReportAllocs()
	for b.Loop() {
		proof, err := p.proof(req.Method, req.URL, nonces.nonce(req.URL), ath)
		if err != nil {
			b.Fatal(err)
		}
		req.Header[dpopHeader] = []string{proof}
	}
}

// BenchmarkDPoPProver makes the prover: the header with the JWK that every
// proof of a key shares.
func BenchmarkDPoPProver(b *testing.B) {
	key := testKey(b, "P-256")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newDPoPProver(key, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPATH(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		dpopATH("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2ln")
	}
}

func BenchmarkDPoPNonceLookup(b *testing.B) {
	var c dpopNonces
	u := mustParseURL(b, "https://api.example.com/v1/items/42")
	c.update(u, nonceHeader("eyJ7S_zG.eyJH0-Z.HX4w-7v"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.nonce(u) == "" {
				b.Fatal("no nonce")
			}
		}
	})
}
