package autorefresh_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

// private_key_jwt client authentication (RFC 7523 section 2.2) against
// autorefreshtest, which verifies the assertions and refuses a jti it has
// seen before: every token request that succeeds carried a new assertion.

const pkjwtID = "signed-client"

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// failingSigner is a crypto.Signer whose Sign fails, as an HSM or KMS that
// is unreachable does.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("kms: key is unavailable")
}

// passwordGrant logs alice in with a password grant (RFC 6749 section
// 4.3), the client authenticating with the form parameters auth, and
// returns the tokens: tokens of that client, which only it may refresh.
func passwordGrant(t *testing.T, srv *autorefreshtest.Server, auth url.Values) autorefresh.Tokens {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {autorefreshtest.DefaultUser}, "password": {autorefreshtest.DefaultPassword}}
	maps.Copy(form, auth)
	resp, err := http.PostForm(srv.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("password grant: %d, %v; want 200", resp.StatusCode, err)
	}
	return autorefresh.Tokens{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, TokenType: a.TokenType}
}

// assertionAuth returns the form parameters of private_key_jwt client
// authentication for the client pkjwtID of srv, signed with key.
func assertionAuth(t *testing.T, srv *autorefreshtest.Server, key crypto.Signer) url.Values {
	t.Helper()
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	if _, ok := key.(*rsa.PrivateKey); ok {
		method = jwt.SigningMethodRS256
	}
	now := time.Now()
	a, err := jwt.NewWithClaims(method, jwt.RegisteredClaims{Issuer: pkjwtID, Subject: pkjwtID, ID: rand.Text(),
		Audience: jwt.ClaimStrings{srv.Issuer()}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"client_assertion_type": {autorefreshtest.ClientAssertionType}, "client_assertion": {a}}
}

// pkjwtServer starts a server with the private_key_jwt client pkjwtID,
// whose public key is pub.
func pkjwtServer(t *testing.T, pub crypto.PublicKey) *autorefreshtest.Server {
	t.Helper()
	return newTestServer(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: pkjwtID, Key: pub}}})
}

// TestPrivateKeyJWT: OAuth2 and ClientCredentials authenticate with a
// signed assertion, a new one for every token request, with the keys and
// audiences that servers take.
func TestPrivateKeyJWT(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		key      crypto.Signer
		alg      string
		issuerAu bool // the assertion's audience is the issuer
	}{
		{name: "ES256", key: mustKey(t)},
		{name: "RS256", key: rsaKey},
		{name: "PS256", key: rsaKey, alg: "PS256"},
		{name: "audience issuer", key: mustKey(t), issuerAu: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pkjwtServer(t, tt.key.Public())
			aud := ""
			if tt.issuerAu {
				aud = srv.Issuer()
			}
			o := &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", ClientID: pkjwtID, AuthStyle: autorefresh.AuthStylePrivateKeyJWT,
				ClientKey: tt.key, ClientKeyID: "key-1", ClientKeyAlgorithm: tt.alg, AssertionAudience: aud}
			tok := passwordGrant(t, srv, assertionAuth(t, srv, tt.key))
			srv.ExpireAccessTokens()
			tr := &autorefresh.Transport{Store: autorefresh.NewMemoryStore(tok), Refresher: o}
			hc := autorefresh.NewClient(nil, tr)
			for round := range 3 {
				if round > 0 {
					srv.ExpireAccessTokens()
				}
				// The access token is refused: a refresh, then a replay.
				if code := get(t, hc, srv.URL+"/api/me"); code != http.StatusOK {
					t.Fatalf("round %d: GET /api/me = %d; want 200", round, code)
				}
			}
			cc := &autorefresh.ClientCredentials{TokenURL: srv.URL + "/oauth/token", ClientID: pkjwtID, AuthStyle: autorefresh.AuthStylePrivateKeyJWT,
				ClientKey: tt.key, ClientKeyAlgorithm: tt.alg, AssertionAudience: aud}
			for range 2 {
				if _, err := cc.Start(t.Context()); err != nil {
					t.Fatalf("client credentials: %v", err)
				}
			}
			st := srv.Stats()
			if st.Refreshes != 3 || st.ClientCredentialsGrants != 2 || st.ClientAuthFailures != 0 {
				t.Errorf("refreshes %d, client credentials grants %d, client authentication failures %d; want 3, 2, 0",
					st.Refreshes, st.ClientCredentialsGrants, st.ClientAuthFailures)
			}
		})
	}
}

// TestPrivateKeyJWTWrongKey: an assertion signed with a key the server does
// not know is invalid_client: ErrClientRejected, the tokens kept.
func TestPrivateKeyJWTWrongKey(t *testing.T) {
	srv := pkjwtServer(t, mustKey(t).Public())
	o := &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", ClientID: pkjwtID, AuthStyle: autorefresh.AuthStylePrivateKeyJWT,
		ClientKey: mustKey(t)}
	_, err := o.Refresh(t.Context(), autorefresh.Tokens{AccessToken: "access-token-1", RefreshToken: "refresh-token-1"})
	checkRejected(t, err, "invalid_client")
}

// TestPrivateKeyJWTSigningFails: a key that cannot sign, or that the
// library cannot use, is a clear error, and nothing is sent.
func TestPrivateKeyJWTSigningFails(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t)
	tests := []struct {
		name  string
		key   crypto.Signer
		style autorefresh.AuthStyle
		alg   string
		also  error // wrapped besides ErrClientAssertion
	}{
		{name: "signer fails", key: failingSigner{key}, style: autorefresh.AuthStylePrivateKeyJWT},
		{name: "RSA 1024", key: small, style: autorefresh.AuthStylePrivateKeyJWT, also: autorefresh.ErrUnsupportedKey},
		{name: "algorithm of another key", key: key, style: autorefresh.AuthStylePrivateKeyJWT, alg: "RS256", also: autorefresh.ErrUnsupportedKey},
		{name: "no key", style: autorefresh.AuthStylePrivateKeyJWT},
		{name: "key with a secret style", key: key, style: autorefresh.AuthStyleInHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pkjwtServer(t, key.Public())
			stale := autorefresh.Tokens{AccessToken: "expired-access-token", RefreshToken: "refresh-token-1", Expiry: time.Now().Add(-time.Minute)}
			o := &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", ClientID: pkjwtID, AuthStyle: tt.style,
				ClientKey: tt.key, ClientKeyAlgorithm: tt.alg}
			store := autorefresh.NewMemoryStore(stale)
			_, err := autorefresh.NewClient(nil, &autorefresh.Transport{Store: store, Refresher: o}).Get(srv.URL + "/api/me")
			var re *autorefresh.RefreshError
			if !errors.Is(err, autorefresh.ErrClientAssertion) || !errors.As(err, &re) || errors.Is(err, autorefresh.ErrSessionExpired) {
				t.Fatalf("error = %v; want a *RefreshError wrapping ErrClientAssertion, not ErrSessionExpired", err)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("error = %v; want it to wrap %v too", err, tt.also)
			}
			if n := srv.Stats().RefreshCalls; n != 0 {
				t.Errorf("token calls = %d; want 0", n)
			}
			if got, _ := store.Load(context.Background()); got != stale {
				t.Error("the stored tokens changed; want them kept")
			}
		})
	}
}
