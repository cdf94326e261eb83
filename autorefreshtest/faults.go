package autorefreshtest

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// A Fault is a broken answer of the refresh endpoints, injected with
// SetRefreshFault. Unless stated otherwise the presented refresh token is
// not looked at, so it stays valid.
type Fault int

const (
	// FaultNone answers normally. SetRefreshFault(FaultNone, 0) clears a
	// pending fault.
	FaultNone Fault = iota
	// FaultMalformedJSON answers 200 with a body that is not valid JSON.
	FaultMalformedJSON
	// FaultNoAccessToken answers 200 with a JSON object without an access
	// token.
	FaultNoAccessToken
	// FaultHugeBody answers 200 with a HugeBodySize JSON body whose access
	// token is almost all of it, to test that clients bound what they read.
	FaultHugeBody
	// FaultDropConnection writes the status line, the headers and part of
	// the body, then closes the connection.
	FaultDropConnection
	// FaultDropAfterRotate refreshes for real (the presented refresh
	// token is spent and a new pair issued; for a client_credentials
	// grant, an access token issued) and then drops the connection like
	// FaultDropConnection, as if the response were lost in transit: the
	// client's refresh token is now spent. A refresh that is refused is
	// answered normally, and neither counts as a fault nor uses one up:
	// the fault waits for a refresh that succeeds.
	FaultDropAfterRotate
)

var faultNames = [...]string{"FaultNone", "FaultMalformedJSON", "FaultNoAccessToken",
	"FaultHugeBody", "FaultDropConnection", "FaultDropAfterRotate"}

// String returns the name of the constant, such as "FaultHugeBody".
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// HugeBodySize is the size of the body answered for FaultHugeBody: 10 MiB.
const HugeBodySize = 10 << 20

// faultQueue holds the pending faults. A count above zero is the number of
// calls left; below zero means every call.
type faultQueue struct {
	failN, failStatus int
	fault             Fault
	faultN            int

	discoveryFailN, discoveryFailStatus int
	discoveryFault                      DiscoveryFault
	discoveryFaultN                     int

	revocationFailN, revocationFailStatus int
}

// take uses up one call of a pending count n.
func take(n *int) {
	if *n > 0 {
		*n--
	}
}

// takeDropLocked reports whether a FaultDropAfterRotate is pending for a
// refresh call that succeeded, and uses it up. The caller holds Server.mu.
func (q *faultQueue) takeDropLocked() bool {
	if q.fault != FaultDropAfterRotate || q.faultN == 0 {
		return false
	}
	take(&q.faultN)
	return true
}

// SetRefreshLatency makes each refresh call (GET /auth/refreshtoken, or a
// refresh_token or client_credentials grant) wait d before it is handled; zero or less removes
// the delay. The wait ends early, without a response, when the client goes
// away or the server is closed. It applies to calls that arrive after it.
func (s *Server) SetRefreshLatency(d time.Duration) { s.latency.Store(int64(d)) }

// FailRefresh makes the next n refresh calls answer status (for example
// 503) with the JSON body {"error":"server_error"} instead of being handled;
// the presented refresh tokens stay valid. If n is negative every refresh
// call fails until FailRefresh(0, 0) or ResetFaults. A pending FailRefresh
// takes precedence over a pending SetRefreshFault.
func (s *Server) FailRefresh(n, status int) {
	s.mu.Lock()
	s.faults.failN, s.faults.failStatus = n, status
	s.mu.Unlock()
}

// SetRefreshFault makes the next n refresh calls answer with fault f. If n
// is negative every refresh call does until SetRefreshFault(FaultNone, 0)
// or ResetFaults. FaultDropAfterRotate applies to the next n refresh calls
// that succeed.
func (s *Server) SetRefreshFault(f Fault, n int) {
	s.mu.Lock()
	s.faults.fault, s.faults.faultN = f, n
	s.mu.Unlock()
}

// SetAPIReject makes every /api/ request answer 403, even with a valid
// access token, while reject is true. /auth/check is not affected.
func (s *Server) SetAPIReject(reject bool) { s.apiReject.Store(reject) }

// ExpireAccessTokens makes every access token issued so far expired, as if
// the server's clock had jumped past their expiry: the API and /auth/check
// refuse them as expired, while their refresh tokens stay valid and tokens
// issued afterwards are good. A client that believes its token good (its
// exp has not passed) sees it refused, refreshes and goes on: the clean way
// to test refresh-on-refusal without moving Options.Now, which would also
// age refresh tokens, assertions and DPoP proofs.
func (s *Server) ExpireAccessTokens() { s.tokenGen.Add(1) }

// ResetFaults removes every injected fault: latency, FailRefresh,
// SetRefreshFault, SetAPIReject, FailDiscovery, SetDiscoveryFault,
// FailRevocation, DemandDPoPNonce and SetDPoPDowngrade. It does not undo
// ExpireAccessTokens or revocations.
func (s *Server) ResetFaults() {
	s.SetRefreshLatency(0)
	s.SetAPIReject(false)
	s.SetDPoPDowngrade(false)
	s.mu.Lock()
	s.faults = faultQueue{}
	s.nonceDemands = 0
	s.mu.Unlock()
}

// takeFault consumes the fault for one refresh call: an HTTP status to
// answer, or a Fault other than FaultDropAfterRotate, which is taken by a
// refresh that succeeds (faultQueue.takeDropLocked).
func (s *Server) takeFault() (status int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.faults
	if q.failN != 0 && q.failStatus != 0 {
		take(&q.failN)
		return q.failStatus, FaultNone
	}
	if q.faultN != 0 && q.fault != FaultNone && q.fault != FaultDropAfterRotate {
		take(&q.faultN)
		return 0, q.fault
	}
	return 0, FaultNone
}

// beginRefresh starts a refresh call: it counts it, waits the injected
// latency and answers an injected fault. It reports done when the response
// was written; otherwise the caller handles the call.
func (s *Server) beginRefresh(w http.ResponseWriter, r *http.Request, oauth bool) (done bool) {
	s.count(func(st *Stats) { st.RefreshCalls++ })
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.logf("autorefreshtest: refresh abandoned during injected latency")
			panic(http.ErrAbortHandler) // close the connection without a response
		}
	}
	status, f := s.takeFault()
	if status == 0 && f == FaultNone {
		return false
	}
	s.count(func(st *Stats) { st.RefreshFaults++ })
	if status != 0 {
		s.logf("autorefreshtest: refresh answered injected status %d", status)
		writeJSON(w, status, oauthError{Code: "server_error", Description: "injected failure"})
		return true
	}
	s.logf("autorefreshtest: refresh answered injected %v", f)
	accessKey := `"accessToken"`
	if oauth {
		accessKey = `"access_token"`
	}
	switch f {
	case FaultMalformedJSON:
		writeRaw(w, `{`+accessKey+`: "not-a-token",`)
	case FaultNoAccessToken:
		if oauth {
			writeRaw(w, `{"token_type":"Bearer","expires_in":60}`)
		} else {
			writeRaw(w, `{"tokenType":"Bearer"}`)
		}
	case FaultHugeBody:
		writeHuge(w, `{`+accessKey+`:"`, `"}`)
	case FaultDropConnection:
		dropConnection(w, `{`+accessKey+`:"eyJ`)
	default:
		writeJSON(w, http.StatusInternalServerError, oauthError{Code: "server_error", Description: "unknown fault"})
	}
	return true
}

func writeRaw(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(body))
}

// writeHuge answers 200 with a HugeBodySize body: prefix, filler, suffix.
// It stops early when the client goes away.
func writeHuge(w http.ResponseWriter, prefix, suffix string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(HugeBodySize))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte(prefix)); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte{'a'}, 32<<10)
	for left := HugeBodySize - len(prefix) - len(suffix); left > 0; {
		n := min(left, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		left -= n
	}
	w.Write([]byte(suffix))
}

// dropConnection writes a 200 response head promising more body than
// partial, writes partial and closes the connection.
func dropConnection(w http.ResponseWriter, partial string) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(partial)+1024, partial)
	rw.Flush()
}
