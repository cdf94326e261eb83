package autorefresh

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// errNoResponse is the error of a RoundTripper that returned neither a
// response nor an error.
var errNoResponse = errors.New("autorefresh: the base RoundTripper returned no response and no error")

// roundTripVia sends req with rt, holding it to the RoundTripper contract
// that the Transport relies on: a response without an error, and a body
// that can be read and closed (http.NoBody for none).
func roundTripVia(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := rt.RoundTrip(req)
	switch {
	case err != nil:
		return nil, err
	case resp == nil:
		return nil, errNoResponse
	case resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, nil
}

// outgoing is a request sent by t, allocated at once with the header values
// it needs for most requests.
type outgoing struct {
	req  http.Request
	vals [6]string
}

// authorize returns a copy of req, with body, that carries the tokens of s
// and, when not empty, the DPoP proof. The caller's request is not
// modified, and the copy shares no mutable state with it, with other
// requests or with s: its header map and value slices are its own.
func (t *Transport) authorize(req *http.Request, s *state, body io.ReadCloser, proof string) *http.Request {
	o := new(outgoing)
	o.req = *req
	r := &o.req
	r.Body = body
	hd := &s.hdr
	// The values are copied into o.vals while they fit, then into a slice
	// that append grows: the slices already in h keep the array they were
	// cut from.
	vals := o.vals[:0]
	h := make(http.Header, len(req.Header)+3)
	for k, v := range req.Header {
		if hd.replaces(k) || proof != "" && k == dpopHeader {
			continue
		}
		i := len(vals)
		vals = append(vals, v...)
		h[k] = vals[i:len(vals):len(vals)]
	}
	vals = put(h, vals, hd.accessName, hd.access)
	vals = put(h, vals, hd.refreshName, hd.refresh)
	put(h, vals, dpopHeader, proof)
	r.Header = h
	return r
}

// put sets h's header name to value, held in vals, unless value is empty.
// It returns vals with value appended.
func put(h http.Header, vals []string, name, value string) []string {
	if value == "" {
		return vals
	}
	vals = append(vals, value)
	h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	return vals
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// Bounds of the draining of a response body that is discarded.
const (
	maxDrain     = 4 << 10 // bytes read, so that the connection can be reused
	drainTimeout = time.Second
)

// discard closes body, a response that is not returned, after reading what
// is left of it, up to maxDrain bytes, so that its connection can be
// reused. It never blocks: the draining runs in the background and is cut
// short by closing the body after drainTimeout, so that a server that
// stalls mid-body holds neither the caller nor a goroutine for longer.
func discard(body io.ReadCloser) {
	if body == nil || body == http.NoBody {
		return
	}
	go func() {
		var once sync.Once
		closeBody := func() { once.Do(func() { body.Close() }) }
		stop := time.AfterFunc(drainTimeout, closeBody)
		io.CopyN(io.Discard, body, maxDrain)
		stop.Stop()
		closeBody()
	}()
}

// attempt sends req once with the tokens of s and body, and reports
// whether the answer asks for it to be sent again with a new DPoP nonce.
func (t *Transport) attempt(req *http.Request, s *state, body io.ReadCloser) (*http.Response, bool, error) {
	proof, err := t.proofFor(req, s)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, false, err
	}
	out := t.authorize(req, s, body, proof)
	resp, err := t.send(out)
	if err != nil {
		return nil, false, err
	}
	wantsNonce, err := t.dpopAnswer(out, s, resp)
	if err != nil {
		discard(resp.Body)
		return nil, false, err
	}
	return resp, wantsNonce, nil
}

// send sends out with the base RoundTripper, and makes out the Request of
// the response, so that the chain of requests http.Client builds for
// redirects is always made of the requests t sent, whatever the base puts
// there (see sendsTokens).
func (t *Transport) send(out *http.Request) (*http.Response, error) {
	resp, err := roundTripVia(t.base(), out)
	if err == nil && resp.Request != out {
		resp.Request = out
	}
	return resp, err
}
