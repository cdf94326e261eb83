package autorefresh

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

var (
	// ErrNoTokens is returned by a TokenStore's Load when nothing is stored.
	ErrNoTokens = errors.New("autorefresh: no tokens stored")

	// ErrSessionExpired means the refresh token was rejected: the session
	// is over and the stored tokens were cleared. A Refresher reports a
	// rejection by returning an error that wraps ErrSessionExpired.
	ErrSessionExpired = errors.New("autorefresh: session expired")

	// ErrTokensLost is wrapped by the errors of a store's Load when it holds
	// nothing although nobody ended the session: its record vanished, as a
	// Redis key does when the server restarts without persistence, evicts
	// it or is flushed. It wraps ErrNoTokens, so code that only knows
	// ErrNoTokens sees an empty store. A Transport that holds tokens saves
	// them again and goes on; a store whose emptiness always means a logout
	// (FileStore: deleting the file logs out) never returns it.
	ErrTokensLost = fmt.Errorf("%w: the stored record is gone", ErrNoTokens)

	// ErrLockLost is wrapped by the errors of a Locker store's Save and
	// Clear when the lock under which they were called was lost (its lease
	// ran out) and the store refused the write: another holder may have
	// written since.
	ErrLockLost = errors.New("autorefresh: store lock lost")

	// ErrCorruptRecord is wrapped by the errors of a store's Load when what
	// it holds is not a token record: unreadable JSON, a record without
	// tokens, a token that is not a valid header value. ErrCorruptFile wraps
	// it.
	ErrCorruptRecord = errors.New("autorefresh: stored record is corrupt")

	// ErrRecordTooLarge is wrapped by the errors of a store's Save when the
	// encoded record would be larger than the store can read back.
	ErrRecordTooLarge = errors.New("autorefresh: token record too large")

	// ErrInvalidToken is wrapped by the errors for a token that cannot be
	// sent in an HTTP header or kept as it is: it holds a control character
	// (CR, LF, NUL, ...), starts or ends with a space, or is not valid
	// UTF-8. SetTokens and Login return it;
	// a refresh answer carrying one is a malformed answer.
	ErrInvalidToken = errors.New("autorefresh: token is not a valid header value")

	// ErrInvalidHosts is wrapped by the error that RoundTrip returns, for
	// every request, when an entry of Transport.Hosts is not one of the
	// accepted forms.
	ErrInvalidHosts = errors.New("autorefresh: invalid Transport.Hosts entry")

	// ErrMalformedResponse is wrapped by the errors for an answer of a
	// refresh, login or token endpoint that cannot be used: larger than
	// the limit read, JSON that does not parse or has fields of the wrong
	// type, no access token, or a token that is not a valid header value
	// (the error then wraps ErrInvalidToken too). A refresh that gets one is
	// a transient failure.
	ErrMalformedResponse = errors.New("autorefresh: malformed response")

	// ErrUnsafeURL is wrapped by the errors for a URL that the tokens or
	// credentials must not be sent to: plain http to a host that is not a
	// loopback address, without AllowHTTP, or a check URL of Resume whose
	// host Transport.Hosts does not list.
	ErrUnsafeURL = errors.New("autorefresh: unsafe URL")

	// ErrNoStore is returned by every method of a Transport whose Store is
	// nil.
	ErrNoStore = errors.New("autorefresh: Transport.Store is nil")

	// ErrBackoff is wrapped by the *RefreshError of a request that needed a
	// refresh while the refresh was held back after a failure: requests
	// fail fast with it, and the first request after the back-off tries
	// again. The error also wraps the cause of the last failure.
	ErrBackoff = errors.New("autorefresh: refresh held back after a failure")

	// ErrBodyNotReplayable is returned by Transport.RoundTrip when a
	// request needed a replay after a refresh but its body could not be
	// sent again: it had no GetBody and its first attempt read more than
	// Transport.MaxReplayBody bytes of it (or never finished with it).
	// The refresh itself was done: sending the request again works.
	ErrBodyNotReplayable = errors.New("autorefresh: request body cannot be replayed")
)

// RefreshError describes a failed refresh. It never holds token values.
//
// A rejection of the refresh token (the session is over) wraps
// ErrSessionExpired; any other RefreshError is transient and the stored
// tokens are kept.
type RefreshError struct {
	// StatusCode is the refresh endpoint's HTTP status, or 0 when no
	// response was received.
	StatusCode int

	// ErrorCode and Description are the OAuth 2.0 "error" and
	// "error_description" (RFC 6749 section 5.2) when the server sent them.
	// Token values are redacted from Description.
	ErrorCode   string
	Description string

	// Err is the underlying cause: an error wrapping ErrSessionExpired for
	// a rejection; otherwise, for example, one wrapping ErrClientRejected,
	// ErrBackoff, ErrMalformedResponse, ErrClientAssertion or
	// ErrDPoPDowngrade, a *DiscoveryError, or a network or timeout error.
	Err error
}

// Error describes e without token values.
func (e *RefreshError) Error() string {
	var b strings.Builder
	b.WriteString("autorefresh: refresh failed")
	if e.StatusCode != 0 {
		b.WriteString(": endpoint answered ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.ErrorCode != "" {
		b.WriteString(": ")
		b.WriteString(e.ErrorCode)
		if e.Description != "" {
			b.WriteString(" (")
			b.WriteString(e.Description)
			b.WriteString(")")
		}
	}
	switch {
	case errors.Is(e.Err, ErrSessionExpired):
		b.WriteString(": session expired")
	case e.Err != nil:
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "autorefresh: "))
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *RefreshError) Unwrap() error { return e.Err }

// trimPrefix returns the text of err without the "autorefresh: " prefix,
// for errors that are quoted inside another of this package's errors.
func trimPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "autorefresh: ")
}

// wrapped adds context to err: its text is "autorefresh: <ctx>: " and err's
// own text without the package prefix, so that the prefix is never doubled.
type wrapped struct {
	ctx string
	err error
}

func (w *wrapped) Error() string { return "autorefresh: " + w.ctx + ": " + trimPrefix(w.err) }
func (w *wrapped) Unwrap() error { return w.err }

// describeJSONError describes err, an error of encoding/json decoding n
// bytes, without quoting the input, which may hold tokens: where the syntax
// broke, or which field had the wrong type. It is the one description of
// outside JSON gone wrong, for answers and for token files alike.
func describeJSONError(err error, n int) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &syn) && syn.Offset >= int64(n):
		return "truncated JSON"
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q is a JSON %s, which it cannot be", typ.Field, typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("a JSON %s where an object was expected", typ.Value)
	}
	// For example an expiry that is not an RFC 3339 time: the text of err
	// may quote the input.
	return "invalid field value"
}
