package interop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
)

// redirectURI is the redirect URI every client of server.js registers.
// Nothing listens there: login stops at the redirect and reads the code
// from it.
const redirectURI = "http://127.0.0.1/callback"

// login gets a first pair of tokens for c with the authorization code flow
// and PKCE (RFC 6749 section 4.1, RFC 7636), as a browser would: it asks
// /auth for a code with the scopes openid (for /me), offline_access (for a
// refresh token) and api:read, follows the redirects through the
// interaction that server.js finishes at once (login as alice, consent
// granted), takes the code from the redirect to redirectURI and exchanges
// it with the code verifier. With key, the exchange carries a DPoP proof,
// so the tokens are bound to the key.
func login(t *testing.T, c client, key *dpopKey) autorefresh.Tokens {
	t.Helper()
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	state := rand.Text()
	q := url.Values{
		"client_id":             {c.ID},
		"response_type":         {"code"},
		"redirect_uri":          {redirectURI},
		"scope":                 {"openid offline_access api:read"},
		"prompt":                {"consent"}, // offline_access needs it (OIDC Core 11)
		"login_hint":            {"alice"},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), redirectURI) {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	resp, err := browser.Get(srv.url("/auth?" + q.Encode()))
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), redirectURI) {
		t.Fatalf("authorization request ended with %d at %v (%v); want a redirect to %s", resp.StatusCode, loc, err, redirectURI)
	}
	got := loc.Query()
	if got.Get("error") != "" {
		t.Fatalf("authorization answered error %q (%s)", got.Get("error"), got.Get("error_description"))
	}
	if got.Get("state") != state || got.Get("iss") != srv.Issuer || got.Get("code") == "" {
		t.Fatalf("redirect has state match %v, iss %q, code present %v; want true, %q, true",
			got.Get("state") == state, got.Get("iss"), got.Get("code") != "", srv.Issuer)
	}

	status, a := postForm(t, "/token", c, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {got.Get("code")},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}, key)
	received := time.Now()
	if status != http.StatusOK || a.AccessToken == "" || a.RefreshToken == "" {
		t.Fatalf("code exchange answered %d %q, access token %v, refresh token %v; want 200 with both tokens",
			status, a.Error, a.AccessToken != "", a.RefreshToken != "")
	}
	return a.tokens(received)
}
