package autorefresh

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// BenchmarkRoundTrip compares the steady-state cost of a request through a
// Transport holding a good token with the bare base transport, over an
// in-memory base (the Transport's own overhead) and over a loopback server.
func BenchmarkRoundTrip(b *testing.B) {
	memory := roundTripFunc(func(*http.Request) (*http.Response, error) { return memoryResponse(), nil })

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	loopback := &http.Transport{MaxIdleConnsPerHost: 64}
	defer loopback.CloseIdleConnections()

	// A JWT that expires in an hour, so the expiry check runs on each request.
	tok := Tokens{AccessToken: testJWT(b, time.Now().Add(time.Hour)), RefreshToken: "refresh-token"}
	for _, base := range []struct {
		name string
		rt   http.RoundTripper
	}{{"memory", memory}, {"loopback", loopback}} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/x", nil)
		req.Header.Set("Accept", "application/json")
		auth := &Transport{Base: base.rt, Store: NewMemoryStore(tok), Refresher: &Endpoint{URL: srv.URL}}
		for _, rt := range []struct {
			name string
			rt   http.RoundTripper
		}{{"bare", base.rt}, {"autorefresh", auth}} {
			b.Run(base.name+"/"+rt.name+"/serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					roundTrip(b, rt.rt, req)
				}
			})
			b.Run(base.name+"/"+rt.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						roundTrip(b, rt.rt, req)
					}
				})
			})
		}
		if n := auth.Stats().Refreshes; n != 0 {
			b.Fatalf("refreshes = %d; want 0 in steady state", n)
		}
	}
}

func roundTrip(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.Body != http.NoBody {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if resp.Proto == memoryProto {
		responses.Put(resp)
	}
}

// responses recycles the answers of the in-memory bases, so that they
// allocate nothing, as a canned response would, while each caller gets a
// response of its own: a response belongs to the caller of RoundTrip,
// which may set its fields (the Transport sets its Request).
var responses = sync.Pool{New: func() any { return new(http.Response) }}

const memoryProto = "memory"

func memoryResponse() *http.Response {
	r := responses.Get().(*http.Response)
	*r = http.Response{StatusCode: 200, Proto: memoryProto, Body: http.NoBody}
	return r
}

// BenchmarkRoundTripStreamedBody measures a 16 KiB request body without
// GetBody, which the Transport records in case it must be replayed, over an
// in-memory base that reads the whole body.
func BenchmarkRoundTripStreamedBody(b *testing.B) {
	body := make([]byte, 16<<10)
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return memoryResponse(), nil
	})
	tok := Tokens{AccessToken: testJWT(b, time.Now().Add(time.Hour)), RefreshToken: "refresh-token"}
	auth := &Transport{Base: base, Store: NewMemoryStore(tok), Refresher: &Endpoint{URL: "https://auth.example.com"}}
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", base}, {"autorefresh", auth}} {
		for _, known := range []bool{false, true} {
			name := rt.name + "/length=unknown"
			if known {
				name = rt.name + "/length=known"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req, _ := http.NewRequest("POST", "https://api.example.com/upload", noGetBody{bytes.NewReader(body)})
					if known {
						req.ContentLength = int64(len(body))
					}
					roundTrip(b, rt.rt, req)
				}
			})
		}
	}
}

// BenchmarkRoundTripDPoP measures a request with a good DPoP-bound token
// over an in-memory base, beside the same request with a Bearer token and
// the floor of DPoP: one ES256 signature of a P-256 key (the proof), as
// ecdsa.SignASN1 costs it alone.
func BenchmarkRoundTripDPoP(b *testing.B) {
	memory := roundTripFunc(func(*http.Request) (*http.Response, error) { return memoryResponse(), nil })
	access := testJWT(b, time.Now().Add(time.Hour))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "https://api.example.com/api/x", nil)
	req.Header.Set("Accept", "application/json")
	for _, c := range []struct {
		name string
		tr   *Transport
	}{
		{"bearer", &Transport{Base: memory, Store: NewMemoryStore(Tokens{AccessToken: access, RefreshToken: "r", TokenType: "Bearer"})}},
		{"dpop", &Transport{Base: memory, DPoP: &DPoP{Key: key}, Store: NewMemoryStore(Tokens{AccessToken: access, RefreshToken: "r", TokenType: "DPoP"})}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, c.tr, req)
			}
		})
	}
	b.Run("es256-sign-floor", func(b *testing.B) {
		b.ReportAllocs()
		digest := sha256.Sum256([]byte("signing input"))
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
