package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// client is one of the clients that server.js registers.
type client struct {
	ID, Secret string
	Style      autorefresh.AuthStyle // how Secret is sent; unused for public clients
	KeyJWT     bool                  // authenticates with private_key_jwt (pkjwtKey)
}

// The clients of server.js. Their secrets are fixed: the server lives on
// loopback for one test run.
var (
	refreshBasic  = client{ID: "refresh-basic", Secret: "refresh-basic-secret"}
	refreshPost   = client{ID: "refresh-post", Secret: "refresh-post-secret", Style: autorefresh.AuthStyleInParams}
	refreshPublic = client{ID: "refresh-public"}
	refreshForget = client{ID: "refresh-forget", Secret: "refresh-forget-secret"} // spent refresh tokens are forgotten: no reuse detection
	ccBasic       = client{ID: "cc-basic", Secret: "cc-basic-secret"}
	ccPost        = client{ID: "cc-post", Secret: "cc-post-secret", Style: autorefresh.AuthStyleInParams}
	dpopPublic    = client{ID: "dpop-public"}
	dpopCC        = client{ID: "dpop-cc", Secret: "dpop-cc-secret"}
	pkjwt         = client{ID: "pkjwt", KeyJWT: true}
)

// oauth2 returns the library's refresher for c.
func (c client) oauth2() *autorefresh.OAuth2 {
	o := &autorefresh.OAuth2{TokenURL: srv.url("/token"), ClientID: c.ID, ClientSecret: c.Secret, AuthStyle: c.Style}
	if c.KeyJWT {
		o.AuthStyle, o.ClientKey, o.ClientKeyID = autorefresh.AuthStylePrivateKeyJWT, pkjwtKey, "pkjwt-1"
	}
	return o
}

// credentials returns the library's client credentials refresher for c.
func (c client) credentials() *autorefresh.ClientCredentials {
	cc := &autorefresh.ClientCredentials{TokenURL: srv.url("/token"), ClientID: c.ID, ClientSecret: c.Secret, AuthStyle: c.Style,
		Scopes: []string{"api:read"}}
	if c.KeyJWT {
		cc.AuthStyle, cc.ClientKey, cc.ClientKeyID = autorefresh.AuthStylePrivateKeyJWT, pkjwtKey, "pkjwt-1"
	}
	return cc
}

// authenticate adds c's credentials to the form or the header of a token,
// revocation or introspection request.
func (c client) authenticate(t *testing.T, h http.Header, form url.Values) {
	t.Helper()
	switch {
	case c.KeyJWT:
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", clientAssertion(t, srv.Issuer))
	case c.Secret == "":
		form.Set("client_id", c.ID)
	case c.Style == autorefresh.AuthStyleInParams:
		form.Set("client_id", c.ID)
		form.Set("client_secret", c.Secret)
	default: // RFC 6749 section 2.3.1: each form-urlencoded, then Basic
		creds := url.QueryEscape(c.ID) + ":" + url.QueryEscape(c.Secret)
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
	}
}

// url returns the address of path on the provider.
func (s *server) url(path string) string { return s.Issuer + path }

// tokenAnswer is the JSON answer of the token endpoint.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
}

// tokens converts a to the library's Tokens, the expiry counted from
// received, when the answer arrived (so that the server, whose clock
// started earlier, has surely expired the token by then).
func (a tokenAnswer) tokens(received time.Time) autorefresh.Tokens {
	t := autorefresh.Tokens{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, TokenType: a.TokenType}
	if a.ExpiresIn > 0 {
		t.Expiry = received.Add(time.Duration(a.ExpiresIn) * time.Second)
	}
	return t
}

// postForm POSTs form to path on the provider as c, with a DPoP proof by
// key when it is not nil (retrying once with the nonce the server asks
// for), and returns the status and the decoded JSON answer.
func postForm(t *testing.T, path string, c client, form url.Values, key *dpopKey) (int, tokenAnswer) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		f, h := maps.Clone(form), http.Header{}
		c.authenticate(t, h, f)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.url(path), strings.NewReader(f.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, h)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if key != nil {
			req.Header.Set("DPoP", key.proof(t, http.MethodPost, req.URL.String(), "", key.nonce(srv.Issuer)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		var a tokenAnswer
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatalf("POST %s answered %d with %d bytes that are not JSON: %v", path, resp.StatusCode, len(body), err)
			}
		}
		if key != nil {
			key.setNonce(srv.Issuer, resp.Header.Get("DPoP-Nonce"))
			if a.Error == "use_dpop_nonce" && attempt == 0 {
				continue
			}
		}
		return resp.StatusCode, a
	}
}

// refreshGrant sends a refresh_token grant with plain HTTP.
func refreshGrant(t *testing.T, c client, refreshToken string, key *dpopKey) (int, tokenAnswer) {
	t.Helper()
	return postForm(t, "/token", c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, key)
}

// revoke revokes token at the revocation endpoint (RFC 7009) with plain
// HTTP, as c. hint is "access_token" or "refresh_token". Revoking a
// refresh token revokes its whole grant (oidc-provider's default
// revokeGrantPolicy); revoking an access token only that token.
func revoke(t *testing.T, c client, token, hint string) {
	t.Helper()
	status, a := postForm(t, "/token/revocation", c, url.Values{"token": {token}, "token_type_hint": {hint}}, nil)
	if status != http.StatusOK {
		t.Fatalf("revocation answered %d %q; want 200", status, a.Error)
	}
}

// serverConfig is what POST /_config changes.
type serverConfig struct {
	TTL                  map[string]int `json:"ttl,omitempty"`
	DPoPRequireNonce     *bool          `json:"dpopRequireNonce,omitempty"`
	ResourceRequireNonce *bool          `json:"resourceRequireNonce,omitempty"`
	RotateResourceNonce  bool           `json:"rotateResourceNonce,omitempty"`
}

// configure changes the server's settings for the rest of t; the defaults
// come back when t ends. TTLs apply to the tokens issued from then on.
func configure(t *testing.T, c serverConfig) {
	t.Helper()
	postConfig(t, c)
	yes := true
	t.Cleanup(func() {
		postConfig(t, serverConfig{
			TTL:                  map[string]int{"AccessToken": defaultTTL, "ClientCredentials": defaultTTL},
			DPoPRequireNonce:     &yes,
			ResourceRequireNonce: &yes,
		})
	})
}

// setAccessTTL sets the lifetime of the access tokens issued from now on,
// in whole seconds (oidc-provider's unit).
func setAccessTTL(t *testing.T, seconds int) {
	t.Helper()
	configure(t, serverConfig{TTL: map[string]int{"AccessToken": seconds, "ClientCredentials": seconds}})
}

func postConfig(t *testing.T, c serverConfig) {
	t.Helper()
	if err := sendConfig(c); err != nil {
		t.Fatal(err)
	}
}

// sendConfig is postConfig for goroutines other than the test's.
func sendConfig(c serverConfig) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	resp, err := http.Post(srv.url("/_config"), "application/json", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("POST /_config: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /_config answered %d; want 200", resp.StatusCode)
	}
	return nil
}

// stats are the server's counters (GET /_stats); see server.js.
type stats struct {
	// Grants[client_id][grant_type][outcome] counts the token endpoint's
	// answers; outcome is "ok" or an OAuth error code.
	Grants        map[string]map[string]map[string]int `json:"grants"`
	Reuses        int                                  `json:"reuses"`        // refresh tokens presented again after rotation
	GrantsRevoked int                                  `json:"grantsRevoked"` // by reuse detection or revocation
	Routes        map[string]map[string]int            `json:"routes"`        // [route][status] of oidc-provider's answers
	Resource      map[string]int                       `json:"resource"`      // [status] of the resource server's answers
}

func getStats(t *testing.T) stats {
	t.Helper()
	resp, err := http.Get(srv.url("/_stats"))
	if err != nil {
		t.Fatalf("GET /_stats: %v", err)
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("GET /_stats: %v", err)
	}
	return s
}

// grant returns how many token requests of c for grantType ended with
// outcome ("ok" or an error code).
func (s stats) grant(c client, grantType, outcome string) int {
	return s.Grants[c.ID][grantType][outcome]
}

// failedGrants returns how many token requests of c for grantType failed.
func (s stats) failedGrants(c client, grantType string) int {
	n := 0
	for outcome, k := range s.Grants[c.ID][grantType] {
		if outcome != "ok" {
			n += k
		}
	}
	return n
}

// since returns the counts of s minus those of before: what happened in
// between, since tests run one at a time.
func (s stats) since(before stats) stats {
	d := stats{
		Grants:        map[string]map[string]map[string]int{},
		Reuses:        s.Reuses - before.Reuses,
		GrantsRevoked: s.GrantsRevoked - before.GrantsRevoked,
		Routes:        map[string]map[string]int{},
		Resource:      diff(s.Resource, before.Resource),
	}
	for c, byGrant := range s.Grants {
		d.Grants[c] = map[string]map[string]int{}
		for g, outcomes := range byGrant {
			d.Grants[c][g] = diff(outcomes, before.Grants[c][g])
		}
	}
	for r, statuses := range s.Routes {
		d.Routes[r] = diff(statuses, before.Routes[r])
	}
	return d
}

func diff(a, b map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range a {
		if v != b[k] {
			d[k] = v - b[k]
		}
	}
	return d
}

// waitFor polls cond every 10ms until it holds, failing t after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getJSON sends a GET through hc to target and returns its status and
// body, closing it.
func getJSON(ctx context.Context, hc *http.Client, target string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// origin returns the scheme and host of target, the key of DPoP nonces.
func origin(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host
}

// callAPI GETs target with the access token, as scheme ("Bearer" or
// "DPoP"); with key, with a DPoP proof, retrying once with the nonce the
// server asks for. It returns the status and the error code of the
// WWW-Authenticate challenge, if any.
func callAPI(t *testing.T, target, scheme, accessToken string, key *dpopKey) (int, string) {
	t.Helper()
	o := origin(t, target)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", scheme+" "+accessToken)
		if key != nil {
			req.Header.Set("DPoP", key.proof(t, http.MethodGet, target, accessToken, key.nonce(o)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		resp.Body.Close()
		code := challengeError(resp.Header)
		if key != nil {
			key.setNonce(o, resp.Header.Get("DPoP-Nonce"))
			if attempt == 0 && resp.StatusCode == http.StatusUnauthorized && code == "use_dpop_nonce" {
				continue
			}
		}
		return resp.StatusCode, code
	}
}

// challengeError returns the first error parameter of the
// WWW-Authenticate challenges in h.
func challengeError(h http.Header) string {
	for _, c := range autorefresh.ParseChallenges(h.Values("WWW-Authenticate")) {
		if e := c.Param("error"); e != "" {
			return e
		}
	}
	return ""
}

// introspect asks the introspection endpoint about token as c, and
// decodes the answer into v.
func introspect(t *testing.T, c client, token string, v any) {
	t.Helper()
	form, h := url.Values{"token": {token}}, http.Header{}
	c.authenticate(t, h, form)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.url("/token/introspection"), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, h)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("introspection: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection answered %d; want 200", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("introspection: %v", err)
	}
}
