package autorefresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file finds an authorization server's endpoints from its issuer
// identifier: the metadata of RFC 8414, or of OpenID Connect Discovery 1.0.

var (
	// ErrBadMetadata is wrapped by the errors for an authorization
	// server's metadata document that was received but cannot be used: an
	// HTML page or other text that is not JSON, malformed JSON, a document
	// larger than MaxResponseBytes, one whose issuer is not the one asked
	// for (ErrIssuerMismatch), one without token_endpoint, or one whose
	// endpoints are not absolute http(s) URLs or are plain http to a host
	// that is not a loopback address (the error then wraps ErrUnsafeURL
	// too).
	ErrBadMetadata = errors.New("autorefresh: unusable authorization server metadata")

	// ErrIssuerMismatch is wrapped, with ErrBadMetadata, by the error for a
	// metadata document whose "issuer" is not exactly the issuer it was
	// fetched for (RFC 8414 section 3.3): a misconfigured server, or one
	// that impersonates another. The issuer identifiers must match
	// character for character, trailing slash included.
	ErrIssuerMismatch = errors.New("autorefresh: metadata names another issuer")
)

var (
	// errNoTokenURL is the error of a token request without a token
	// endpoint.
	errNoTokenURL = errors.New("autorefresh: no TokenURL, and no Issuer to discover it from")

	// errFetchPanicked is the error of the callers waiting for a metadata
	// fetch that panicked.
	errFetchPanicked = errors.New("autorefresh: metadata fetch panicked")
)

// The well-known paths of the metadata documents.
const (
	oauthMetadataPath = "/.well-known/oauth-authorization-server" // RFC 8414 section 3
	oidcMetadataPath  = "/.well-known/openid-configuration"       // OpenID Connect Discovery section 4
)

// A DiscoveryError describes a failed fetch of an authorization server's
// metadata. It wraps ErrBadMetadata when a document was received but
// cannot be used; otherwise (no answer, an error status) the failure may
// pass, and the fetch is tried again on the next use. It holds no secrets.
type DiscoveryError struct {
	// Issuer is the issuer identifier whose metadata was asked for.
	Issuer string

	// URL is the metadata address whose answer the error describes, or
	// "" when none was asked (an unusable Issuer).
	URL string

	// StatusCode is the HTTP status of that answer, or 0 when none was
	// received.
	StatusCode int

	// Err is the cause, if any besides the status: a network error, or an
	// error wrapping ErrBadMetadata.
	Err error
}

// Error describes e.
func (e *DiscoveryError) Error() string {
	var b strings.Builder
	b.WriteString("autorefresh: discovery of ")
	b.WriteString(printableURL(e.Issuer))
	b.WriteString(" failed")
	if e.URL != "" && e.StatusCode != 0 {
		b.WriteString(": ")
		b.WriteString(printableURL(e.URL))
		b.WriteString(" answered ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(trimPrefix(e.Err))
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *DiscoveryError) Unwrap() error { return e.Err }

// printableURL returns raw for an error text: without a password, without
// control characters, and not too long.
func printableURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		raw = u.Redacted()
	}
	return sanitize(raw, 256, nil)
}

// metadata is what is used of an authorization server's metadata.
type metadata struct {
	tokenEndpoint, revocationEndpoint string
}

// metadataDocument is the JSON of a metadata document (RFC 8414 section 2).
type metadataDocument struct {
	Issuer             string `json:"issuer"`
	TokenEndpoint      string `json:"token_endpoint"`
	RevocationEndpoint string `json:"revocation_endpoint"`
}

// metadataCache holds an authorization server's metadata once it was
// fetched, and shares one fetch between concurrent first uses. Failures are
// not kept: the next use fetches again.
type metadataCache struct {
	mu     sync.Mutex     // guards the fields below
	meta   *metadata      // nil until fetched
	issuer string         // that meta is for
	call   *metadataFetch // the fetch under way, or nil
}

// metadataFetch is a fetch under way; done is closed when meta and err are
// set.
type metadataFetch struct {
	done chan struct{}
	meta *metadata
	err  error
}

// get returns the metadata of issuer, calling fetch unless it is known or
// being fetched already. A caller that waits for another's fetch leaves
// when its ctx is done. The fetch keeps the values of the context of the
// caller that started it but not its cancellation, so that one caller
// leaving does not fail the others: it is bounded by fetchTimeout.
func (c *metadataCache) get(ctx context.Context, issuer string, fetch func(context.Context) (*metadata, error)) (*metadata, error) {
	c.mu.Lock()
	if c.meta != nil && c.issuer == issuer {
		m := c.meta
		c.mu.Unlock()
		return m, nil
	}
	f := c.call
	if f == nil {
		f = &metadataFetch{done: make(chan struct{})}
		c.call = f
		go c.run(context.WithoutCancel(ctx), issuer, f, fetch)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.meta, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run does the fetch f of issuer's metadata, bounded by fetchTimeout, and
// caches what it found.
func (c *metadataCache) run(ctx context.Context, issuer string, f *metadataFetch, fetch func(context.Context) (*metadata, error)) {
	defer func() {
		if recover() != nil {
			f.meta, f.err = nil, errFetchPanicked
		}
		c.mu.Lock()
		c.call = nil
		if f.err == nil && f.meta != nil {
			c.meta, c.issuer = f.meta, issuer
		}
		c.mu.Unlock()
		close(f.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	f.meta, f.err = fetch(ctx)
}

// fetchTimeout bounds a metadata fetch, which no caller's context ends.
const fetchTimeout = 30 * time.Second

// endpoints are an authorization server's endpoint URLs.
type endpoints struct {
	token, revocation string
}

// endpoints returns the client's endpoints: those it was given, and from the
// issuer's metadata those it was not, when it has an issuer. The metadata is
// fetched when the token endpoint is missing, and for revocation (revoking)
// when the revocation endpoint is missing too. Without an issuer, a missing
// revocation endpoint is "" (revocation is not available), and a missing
// token endpoint an error unless revoking.
func (c *oauthClient) endpoints(ctx context.Context, revoking bool) (endpoints, error) {
	ep := endpoints{token: c.tokenURL, revocation: c.revocationURL}
	if c.issuer == "" || ep.token != "" && (!revoking || ep.revocation != "") {
		if ep.token == "" && !revoking {
			return ep, errNoTokenURL
		}
		return ep, nil
	}
	m, err := c.meta.get(ctx, c.issuer, c.discover)
	if err != nil {
		return ep, err
	}
	if ep.token == "" {
		ep.token = m.tokenEndpoint
	}
	if ep.revocation == "" {
		ep.revocation = m.revocationEndpoint
	}
	return ep, nil
}

// assertionAudience returns the audience of the client assertions sent to
// the endpoints ep: AssertionAudience, or the token endpoint, as OpenID
// Connect Core section 9 recommends (for revocation requests too).
func (c *oauthClient) assertionAudience(ep endpoints) string {
	if c.audience != "" {
		return c.audience
	}
	return ep.token
}

// discover fetches the issuer's metadata: from the RFC 8414 address and,
// when that answers but gives no usable document, from the OpenID Connect
// Discovery address. Every error is a *DiscoveryError.
func (c *oauthClient) discover(ctx context.Context) (*metadata, error) {
	urls, err := metadataURLs(c.issuer, c.allowHTTP)
	if err != nil {
		return nil, &DiscoveryError{Issuer: c.issuer, Err: err}
	}
	var first *DiscoveryError
	for _, u := range urls {
		m, err := c.fetchMetadata(ctx, u)
		switch {
		case err == nil:
			return m, nil
		case err.StatusCode == 0 && !errors.Is(err, ErrBadMetadata):
			return nil, err // no answer: the next address would not answer either
		case first == nil:
			first = err
		case err.StatusCode == http.StatusNotFound && first.StatusCode != http.StatusNotFound:
			// The first answer says more than the 404 of the fallback.
			return nil, first
		default:
			return nil, err
		}
	}
	return nil, first
}

// metadataURLs returns the addresses of the metadata of issuer: RFC 8414's,
// with the well-known path inserted between the host and the issuer's path
// (section 3.1), then OpenID Connect Discovery's, with it appended. The
// issuer must be an https URL (or http to a loopback host, or any http with
// allowHTTP) without query or fragment (RFC 8414 section 2).
func metadataURLs(issuer string, allowHTTP bool) ([2]string, error) {
	if err := checkSecureURL(issuer, allowHTTP, "metadata requests"); err != nil {
		return [2]string{}, err
	}
	u, _ := url.Parse(issuer) // checkSecureURL parsed it
	if u.Host == "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return [2]string{}, errors.New("autorefresh: an issuer is an https URL with a host and without user information, query or fragment")
	}
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return [2]string{origin + oauthMetadataPath + path, origin + path + oidcMetadataPath}, nil
}

// fetchMetadata GETs the metadata document at target and checks it.
func (c *oauthClient) fetchMetadata(ctx context.Context, target string) (*metadata, *DiscoveryError) {
	e := &DiscoveryError{Issuer: c.issuer, URL: target}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		e.Err = &wrapped{"metadata request", err}
		return nil, e
	}
	req.Header.Set("Accept", "application/json")
	resp, err := roundTripVia(baseOr(c.base), req)
	if err != nil {
		e.Err = err
		return nil, e
	}
	defer resp.Body.Close()
	e.StatusCode = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, e
	}
	body, err := readMetadata(resp.Body, c.maxBytes)
	if err == nil {
		var m *metadata
		if m, err = parseMetadata(resp.Header.Get("Content-Type"), body, c.issuer, c.allowHTTP); err == nil {
			return m, nil
		}
	}
	e.Err = err
	return nil, e
}

// readMetadata reads a metadata document of at most limit bytes
// (DefaultMaxResponseBytes when limit is 0). A larger one is a bad
// document; a failure to read it is not.
func readMetadata(r io.Reader, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("autorefresh: read metadata: %w", err)
	case int64(len(body)) > limit:
		return nil, &metadataError{detail: fmt.Sprintf("larger than %d bytes", limit)}
	}
	return body, nil
}

// parseMetadata parses and checks the metadata document body, of media
// type contentType, fetched for issuer. Its errors are *metadataErrors, and
// quote nothing of the document but the issuer it names.
func parseMetadata(contentType string, body []byte, issuer string, allowHTTP bool) (*metadata, error) {
	body = bytes.TrimSpace(trimBOM(body))
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "text/html" || bytes.HasPrefix(body, []byte("<")) {
		return nil, &metadataError{detail: "an HTML page, not JSON"}
	}
	var doc metadataDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, &metadataError{detail: describeJSONError(err, len(body))}
	}
	if doc.Issuer != issuer {
		return nil, &metadataError{cause: ErrIssuerMismatch,
			detail: fmt.Sprintf("it names %q, not %q", sanitize(doc.Issuer, 256, nil), sanitize(issuer, 256, nil))}
	}
	if doc.TokenEndpoint == "" {
		return nil, &metadataError{detail: "no token_endpoint"}
	}
	for _, f := range [...]struct{ name, v string }{
		{"token_endpoint", doc.TokenEndpoint}, {"revocation_endpoint", doc.RevocationEndpoint},
	} {
		if f.v == "" {
			continue
		}
		if err := checkEndpoint(f.v, allowHTTP); err != nil {
			return nil, &metadataError{where: f.name, cause: err}
		}
	}
	return &metadata{tokenEndpoint: doc.TokenEndpoint, revocationEndpoint: doc.RevocationEndpoint}, nil
}

// metadataError is an error wrapping ErrBadMetadata: what is wrong with the
// document, where, and its cause, which it wraps too.
type metadataError struct {
	where  string // the member at fault, if any
	cause  error  // if not nil
	detail string
}

func (e *metadataError) Error() string {
	s := ErrBadMetadata.Error()
	if e.where != "" {
		s += ": " + e.where
	}
	if e.cause != nil {
		s += ": " + trimPrefix(e.cause)
	}
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

func (e *metadataError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrBadMetadata}
	}
	return []error{ErrBadMetadata, e.cause}
}

// checkEndpoint checks an endpoint URL taken from metadata: absolute, with
// a host, and safe to send credentials to.
func checkEndpoint(raw string, allowHTTP bool) error {
	if err := checkSecureURL(raw, allowHTTP, "credentials"); err != nil {
		return err
	}
	if u, _ := url.Parse(raw); u.Host == "" {
		return errors.New("autorefresh: not an absolute URL with a host")
	}
	return nil
}
