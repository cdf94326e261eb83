package autorefresh

import (
	"net/http"
	"net/url"
)

// CheckGoroutines lets the external tests use checkGoroutines.
var CheckGoroutines = checkGoroutines

// CrossProcessLock reports, for external tests, whether FileStore.Lock
// excludes other processes on this system.
const CrossProcessLock = crossProcessLock

// CannotRun lets the external tests use cannotRun.
var CannotRun = cannotRun

// TokenProof returns a DPoP proof of d for a token request to u, with the
// nonce d remembers for u's token endpoint, and UpdateTokenNonce remembers
// the nonce of its answer: the external tests make token requests with
// them, as the refreshers do.
func TokenProof(d *DPoP, u *url.URL) (string, error) { return d.tokenProof("POST", u) }

// UpdateTokenNonce remembers the DPoP nonce of h, the answer of a token
// endpoint at u.
func UpdateTokenNonce(d *DPoP, u *url.URL, h http.Header) { d.state().tokenNonces.update(u, h) }
