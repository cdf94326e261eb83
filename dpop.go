package autorefresh

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

var (
	// ErrDPoPKeyMissing is returned for tokens bound to a DPoP key (their
	// TokenType is "DPoP") when no DPoP key is configured: they cannot be
	// sent or refreshed without the key they were bound to. Configure the
	// key the tokens were issued for (see LoadOrCreateKey), or log in again.
	ErrDPoPKeyMissing = errors.New("autorefresh: the tokens are DPoP-bound and no DPoP key is configured")

	// ErrDPoPProofRefused is wrapped by the error of a request that a
	// resource server refused for its DPoP proof (WWW-Authenticate: DPoP
	// error="invalid_dpop_proof"): a new token would not change that.
	ErrDPoPProofRefused = errors.New("autorefresh: the server refused the DPoP proof")

	// ErrDPoPDowngrade is wrapped by the *RefreshError of a token endpoint
	// that answered a DPoP token request with a Bearer token, unless
	// DPoP.AllowBearer permits it. The error wraps ErrSessionExpired too:
	// the answer spent the refresh token it refused, so the session ends
	// rather than present that token again.
	ErrDPoPDowngrade = errors.New("autorefresh: the token endpoint issued a Bearer token where DPoP was asked for")
)

// DPoP makes the tokens sender-constrained (RFC 9449): every token request
// and every API request carries a fresh proof, a JWT signed with Key, and the
// server binds the tokens to that key, so that a stolen token is useless
// without it. Set the same *DPoP on the Transport (or only on its OAuth2 or
// ClientCredentials refresher, which the Transport then uses) to have:
//
//   - token requests carry a proof, and the tokens come back with
//     token_type "DPoP" (a Bearer answer ends the session with
//     ErrDPoPDowngrade, unless AllowBearer);
//   - API requests with DPoP tokens carry "Authorization: DPoP <token>" and
//     a proof with the hash of the token ("ath"), whatever the Transport's
//     Scheme; a replay after a refresh carries a new proof;
//   - a server that asks for a nonce (400 use_dpop_nonce from a token
//     endpoint, 401 with WWW-Authenticate: DPoP error="use_dpop_nonce" from
//     an API) gets the request once more with it, and every response's
//     DPoP-Nonce is remembered for the next requests, per origin, the token
//     endpoint's apart from the APIs'. At most one nonce retry and one
//     refresh replay happen per request, in whichever order they come.
//
// The key must be kept as long as the tokens: for public clients the
// refresh token is bound to it, and a new key cannot refresh. Keep it in a
// file beside the token file (LoadOrCreateKey), or in an HSM or KMS behind
// a crypto.Signer. Tokens of type "DPoP" found without a key fail with
// ErrDPoPKeyMissing instead of being sent.
//
// A DPoP is safe for concurrent use. It never prints its key.
type DPoP struct {
	// Key signs the proofs: an ECDSA P-256 or P-384, RSA (2048 bits or
	// more) or Ed25519 key. It must be set.
	Key crypto.Signer

	// Algorithm is the JWS algorithm of the proofs: "ES256", "ES384",
	// "RS256", "PS256" or "EdDSA". If empty, the key's own: ES256 for P-256,
	// ES384 for P-384, RS256 for RSA, EdDSA for Ed25519.
	Algorithm string

	// AllowBearer lets a token endpoint that answers a DPoP token request
	// with a Bearer token be used anyway, the tokens then sent as Bearer.
	// By default such a downgrade is refused: it defeats the point of
	// DPoP. It ends the session (ErrDPoPDowngrade, with ErrSessionExpired),
	// since the answer has spent the refresh token.
	AllowBearer bool

	// st is made on first use. A DPoP holds no lock by value, so that it
	// prints without its key even when held by value (see String).
	st *dpopState
}

// dpopState is what a DPoP keeps from its first use on.
type dpopState struct {
	prover *dpopProver
	err    error

	// The nonces of the token endpoints and of the APIs, kept apart: an
	// authorization server and a resource server may share an origin but
	// not their nonces.
	tokenNonces, apiNonces dpopNonces
}

// lazyMu guards the making of the lazily made state of DPoP, OAuth2 and
// ClientCredentials values.
var lazyMu sync.Mutex

// state returns d's state, made on first use: it checks the key and makes
// the prover.
func (d *DPoP) state() *dpopState {
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if d.st == nil {
		st := new(dpopState)
		if d.Key == nil {
			st.err = fmt.Errorf("%w: DPoP.Key is nil", ErrDPoPKeyMissing)
		} else {
			st.prover, st.err = newDPoPProver(d.Key, d.Algorithm)
		}
		d.st = st
	}
	return d.st
}

// tokenProof returns a proof for a token request with method htm to u,
// with the nonce remembered from u's token endpoint.
func (d *DPoP) tokenProof(htm string, u *url.URL) (string, error) {
	st := d.state()
	if st.err != nil {
		return "", st.err
	}
	return st.prover.proof(htm, u, st.tokenNonces.nonce(u), "")
}

// apiProof returns a proof for an API request with method htm to u, with
// ath the hash of the access token, and the nonce remembered from u's
// origin.
func (d *DPoP) apiProof(htm string, u *url.URL, ath string) (string, error) {
	st := d.state()
	if st.err != nil {
		return "", st.err
	}
	return st.prover.proof(htm, u, st.apiNonces.nonce(u), ath)
}

// String describes d without its key.
func (d DPoP) String() string {
	alg := d.Algorithm
	if alg == "" {
		alg = "key's default"
	}
	return fmt.Sprintf("autorefresh.DPoP{Key: %T, Algorithm: %s, AllowBearer: %v}", d.Key, alg, d.AllowBearer)
}

// GoString is like String.
func (d DPoP) GoString() string { return d.String() }

// Format implements fmt.Formatter: every verb prints String.
func (d DPoP) Format(f fmt.State, verb rune) { io.WriteString(f, d.String()) }

// LogValue implements slog.LogValuer: a DPoP logs as String.
func (d DPoP) LogValue() slog.Value { return slog.StringValue(d.String()) }

// dpopKey carries, in the context of a refresh, the DPoP of the Transport,
// which a refresher without one of its own uses.
type dpopKey struct{}

// dpopFor returns d, or the DPoP that ctx carries when d is nil.
func dpopFor(ctx context.Context, d *DPoP) *DPoP {
	if d == nil {
		d, _ = ctx.Value(dpopKey{}).(*DPoP)
	}
	return d
}

// dpopDeclarer is a Refresher configured for DPoP, whose DPoP the Transport
// uses when its own is nil.
type dpopDeclarer interface {
	dpopConfig() *DPoP
}

// dpop returns the DPoP that t's requests use: DPoP, or its Refresher's.
func (t *Transport) dpop() *DPoP {
	if t.DPoP != nil {
		return t.DPoP
	}
	if d, ok := t.Refresher.(dpopDeclarer); ok {
		return d.dpopConfig()
	}
	return nil
}

// isDPoP reports whether tok is a DPoP-bound token pair.
func isDPoP(tok Tokens) bool { return strings.EqualFold(tok.TokenType, "DPoP") }

// proofFor returns the DPoP proof for sending req with s, or "" when s's
// tokens are not DPoP-bound.
func (t *Transport) proofFor(req *http.Request, s *state) (string, error) {
	if !s.hdr.dpop {
		return "", nil
	}
	d := t.dpop()
	if d == nil {
		return "", ErrDPoPKeyMissing
	}
	return d.apiProof(req.Method, req.URL, s.hdr.ath)
}

// dpopAnswer remembers the nonce of resp, the answer to out sent with s,
// and reports whether resp asks for the request to be sent again with it
// (use_dpop_nonce with a new nonce). A refused proof is an error.
func (t *Transport) dpopAnswer(out *http.Request, s *state, resp *http.Response) (retry bool, err error) {
	if !s.hdr.dpop {
		return false, nil
	}
	_, gave := t.dpop().state().apiNonces.update(out.URL, resp.Header)
	if resp.StatusCode != http.StatusUnauthorized {
		return false, nil
	}
	for _, c := range ParseChallenges(resp.Header.Values("Www-Authenticate")) {
		if !strings.EqualFold(c.Scheme, "DPoP") {
			continue
		}
		switch c.Param("error") {
		case "use_dpop_nonce":
			return gave, nil
		case "invalid_dpop_proof":
			return false, fmt.Errorf("%w: %s", ErrDPoPProofRefused, sanitize(c.Param("error_description"), maxDescription, []string{s.tokens.AccessToken, s.tokens.RefreshToken}))
		}
	}
	return false, nil
}

// TokenTransport returns an http.RoundTripper, over base (nil:
// http.DefaultTransport), for the requests a client makes to its
// authorization server itself, such as the login: an authorization code
// exchange with x/oauth2 (pass &http.Client{Transport: d.TokenTransport(nil)}
// in the context under oauth2.HTTPClient) or a password grant. Each request
// carries a fresh proof of d's key, an answer that asks for a nonce (400
// use_dpop_nonce with a DPoP-Nonce header) gets the request once more with
// it when its body can be sent again (GetBody), and every answer's nonce is
// kept for the token requests that follow, the refreshes included. The
// tokens it obtains are bound to d's key: give the same DPoP to the
// refresher.
func (d *DPoP) TokenTransport(base http.RoundTripper) http.RoundTripper {
	return &tokenTransport{d: d, base: baseOr(base)}
}

type tokenTransport struct {
	d    *DPoP
	base http.RoundTripper
}

func (tt *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for retried := false; ; retried = true {
		proof, err := tt.d.tokenProof(req.Method, req.URL)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		out := req.Clone(req.Context())
		out.Header.Set(dpopHeader, proof)
		if retried && req.GetBody != nil {
			if out.Body, err = req.GetBody(); err != nil {
				return nil, &wrapped{"replay body", err}
			}
		}
		resp, err := roundTripVia(tt.base, out)
		if err != nil {
			return nil, err
		}
		_, gave := tt.d.state().tokenNonces.update(req.URL, resp.Header)
		hasBody := req.Body != nil && req.Body != http.NoBody
		if retried || !gave || resp.StatusCode != http.StatusBadRequest || hasBody && req.GetBody == nil {
			return resp, nil
		}
		body, err := readLimited(resp.Body, 0)
		resp.Body.Close()
		a := &answer{body: body}
		if err != nil || a.errorCode() != "use_dpop_nonce" {
			resp.Body = io.NopCloser(bytes.NewReader(body))
			return resp, nil
		}
	}
}

// MarshalJSON encodes d as the JSON string of String, so that a struct
// that holds it, encoded or logged as JSON (slog's JSONHandler), shows no
// secret.
func (d DPoP) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }
