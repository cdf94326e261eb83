package autorefresh

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The requests that OAuth2 and ClientCredentials send, field by field,
// against the recording oauthServer.

// TestPrivateKeyJWTAssertions: each token request carries a new assertion
// (RFC 7523 section 3) signed with the client's key: iss = sub = client_id,
// aud the token endpoint (or AssertionAudience), a new jti, a lifetime of
// a minute, the key ID in the header; and no secret.
func TestPrivateKeyJWTAssertions(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, alg, wantAlg, aud string
		key                     crypto.Signer
	}{
		{name: "ES384", key: ecKey, wantAlg: "ES384"},
		{name: "RS256", key: rsaKey, wantAlg: "RS256"},
		{name: "PS256", key: rsaKey, alg: "PS256", wantAlg: "PS256"},
		{name: "EdDSA", key: edKey, wantAlg: "EdDSA"},
		{name: "audience", key: ecKey, wantAlg: "ES384", aud: "https://issuer.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.clientID, srv.clientKey = "client", tt.key.Public()
			o := srv.refresher(testNow)
			o.AuthStyle, o.ClientKey, o.ClientKeyID, o.ClientKeyAlgorithm, o.AssertionAudience = AuthStylePrivateKeyJWT, tt.key, "key-7", tt.alg, tt.aud
			cc := srv.credentials(testNow)
			cc.AuthStyle, cc.ClientKey, cc.ClientKeyID, cc.ClientKeyAlgorithm, cc.AssertionAudience = AuthStylePrivateKeyJWT, tt.key, "key-7", tt.alg, tt.aud
			if _, err := o.Refresh(context.Background(), srv.issue()); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := cc.Start(context.Background()); err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			form, hdr := srv.last()
			if form.Has("client_secret") || hdr.Get("Authorization") != "" {
				t.Errorf("a secret or an Authorization header was sent with the assertion")
			}
			checkAssertions(t, srv.accepted(), 2, tt.wantAlg, cmpOrString(tt.aud, srv.URL+"/token"))
		})
	}
}

// checkAssertions fails t unless there are n assertions, each with a jti of
// its own, signed with alg, for aud, with the kid "key-7", issued at
// testNow and valid for a minute.
func checkAssertions(t *testing.T, assertions []jwt.Token, n int, alg, aud string) {
	t.Helper()
	jtis := map[any]bool{}
	for _, a := range assertions {
		c := a.Claims.(jwt.MapClaims)
		iat, _ := c.GetIssuedAt()
		exp, _ := c.GetExpirationTime()
		got, _ := c.GetAudience()
		if a.Method.Alg() != alg || a.Header["kid"] != "key-7" || !slices.Equal(got, []string{aud}) ||
			iat == nil || !iat.Equal(testNow) || exp == nil || !exp.Equal(testNow.Add(time.Minute)) {
			t.Errorf("assertion: alg %s, kid %v, aud %v, iat %v, exp %v; want %s, key-7, %s, %v, a minute later",
				a.Method.Alg(), a.Header["kid"], got, iat, exp, alg, aud, testNow)
		}
		jtis[c["jti"]] = true
	}
	if len(assertions) != n || len(jtis) != n {
		t.Errorf("assertions %d with %d distinct jti; want %d, %d", len(assertions), len(jtis), n, n)
	}
}

func cmpOrString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestClientAssertionNeverShown: an assertion that the server quotes in its
// error is redacted, as a secret is.
func TestClientAssertionNeverShown(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := newOAuthServer(t)
	srv.clientID, srv.clientKey = "client", key.Public()
	o := srv.refresher(testNow)
	o.AuthStyle, o.ClientKey = AuthStylePrivateKeyJWT, key
	if _, err := o.Refresh(context.Background(), srv.issue()); err != nil {
		t.Fatal(err)
	}
	used, _ := srv.last()
	// The same assertion twice: no, the client signs a new one. Make the
	// server refuse it with a wrong client ID instead, which it quotes.
	o.ClientID = "other"
	_, err = o.Refresh(context.Background(), srv.issue())
	var re *RefreshError
	if !errors.As(err, &re) || !errors.Is(err, ErrClientRejected) {
		t.Fatalf("error = %v; want a *RefreshError wrapping ErrClientRejected", err)
	}
	sent, _ := srv.last()
	for _, a := range []string{sent.Get("client_assertion"), used.Get("client_assertion")} {
		if strings.Contains(err.Error(), a) || strings.Contains(fmt.Sprintf("%+v", re), a) {
			t.Errorf("error %q shows an assertion", err)
		}
	}
	if !strings.Contains(re.Description, "assertion "+redacted+" refused") {
		t.Errorf("Description = %q; want the assertion redacted in place", re.Description)
	}
}

// TestClientCredentialsRequest: the form of a client credentials grant,
// for each client authentication.
func TestClientCredentialsRequest(t *testing.T) {
	for _, style := range []AuthStyle{AuthStyleInHeader, AuthStyleInParams} {
		t.Run(style.String(), func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.clientID, srv.clientSecret = "svc", "svc secret/+="
			cc := srv.credentials(testNow)
			cc.AuthStyle = style
			cc.Scopes = []string{"read", "write"}
			cc.Resources = []string{"https://a.example.com/", "https://b.example.com/"}
			cc.Audiences = []string{"orders"}
			cc.Params = url.Values{"grant_type": {"password"}, "scope": {"admin"}, "client_secret": {"x"}, "tenant": {"t1"}, "audience": {"x"}}
			tok, err := cc.Start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken != "" || tok.TokenType != "Bearer" || !tok.Expiry.Equal(testNow.Add(time.Hour)) {
				t.Errorf("tokens: refresh token %v, type %q, expiry %v; want none, Bearer, %v", tok.RefreshToken != "", tok.TokenType, tok.Expiry, testNow.Add(time.Hour))
			}
			form, hdr := srv.last()
			want := url.Values{"grant_type": {"client_credentials"}, "scope": {"read write"}, "tenant": {"t1"},
				"resource": cc.Resources, "audience": {"orders"}}
			if style == AuthStyleInParams {
				want["client_id"], want["client_secret"] = []string{"svc"}, []string{"svc secret/+="}
			} else if user, pass, _ := (&http.Request{Header: hdr}).BasicAuth(); user != "svc" || pass != url.QueryEscape("svc secret/+=") {
				t.Errorf("Basic credentials = %q, %q; want svc and the secret, form-urlencoded", user, pass)
			}
			if !equalForms(form, want) {
				t.Errorf("form = %v; want %v", form, want)
			}
			if cc.Params.Get("grant_type") != "password" {
				t.Error("Start modified cc.Params")
			}
		})
	}
}

// TestClientCredentialsDropsRefreshToken: a refresh token in a client
// credentials answer (RFC 6749 section 4.4.3: should not be issued) is not
// kept.
func TestClientCredentialsDropsRefreshToken(t *testing.T) {
	srv := newOAuthServer(t)
	srv.clientID, srv.clientSecret = "svc", "secret"
	body := `{"access_token":"access-1","refresh_token":"refresh-1","token_type":"bearer","expires_in":60}`
	srv.tokenBody.Store(&body)
	tok, err := srv.credentials(testNow).Refresh(context.Background(), Tokens{AccessToken: "old", RefreshToken: "kept?"})
	if err != nil || tok.AccessToken != "access-1" || tok.RefreshToken != "" {
		t.Errorf("got access %q refresh %q, %v; want access-1 and no refresh token", tok.AccessToken, tok.RefreshToken, err)
	}
}

// TestClientCredentialsErrors: what each error answer means for client
// credentials: never ErrSessionExpired.
func TestClientCredentialsErrors(t *testing.T) {
	tests := []struct {
		code     string
		rejected bool
	}{
		{"invalid_client", true}, {"unauthorized_client", true}, {"invalid_scope", true},
		{"invalid_target", true}, {"unsupported_grant_type", true}, {"invalid_grant", true},
		{"invalid_request", true}, {"access_denied", true}, {"server_error", false}, {"temporarily_unavailable", false},
	}
	for _, tt := range tests {
		srv := newOAuthServer(t)
		srv.clientID, srv.clientSecret = "svc", "secret"
		tokenError(srv, tt.code, "no")
		_, err := srv.credentials(testNow).Start(context.Background())
		var re *RefreshError
		if !errors.As(err, &re) || re.ErrorCode != tt.code || errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrClientRejected) != tt.rejected {
			t.Errorf("%s: error = %v; want a *RefreshError, ErrClientRejected %v, never ErrSessionExpired", tt.code, err, tt.rejected)
		}
	}
}

// TestRevocationRequests: the requests of Revoke: the refresh token first,
// then the access token if asked, with the client's authentication.
func TestRevocationRequests(t *testing.T) {
	tests := []struct {
		name   string
		access bool
		tok    Tokens
		want   []string // token_type_hint of each request
	}{
		{"refresh token", false, Tokens{AccessToken: "a-1", RefreshToken: "r-1"}, []string{"refresh_token"}},
		{"both", true, Tokens{AccessToken: "a-1", RefreshToken: "r-1"}, []string{"refresh_token", "access_token"}},
		{"no refresh token", false, Tokens{AccessToken: "a-1"}, []string{"access_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			srv.clientID, srv.clientSecret = "client", "secret"
			o := srv.refresher(testNow)
			o.RevocationURL, o.RevokeAccessToken, o.AuthStyle = srv.URL+"/revoke", tt.access, AuthStyleInParams
			if err := o.Revoke(context.Background(), tt.tok); err != nil {
				t.Fatal(err)
			}
			var hints []string
			for _, f := range srv.revocations() {
				hints = append(hints, f.Get("token_type_hint"))
				if want := map[string]string{"refresh_token": tt.tok.RefreshToken, "access_token": tt.tok.AccessToken}[f.Get("token_type_hint")]; f.Get("token") != want ||
					f.Get("client_id") != "client" || f.Get("client_secret") != "secret" {
					t.Errorf("revocation form %v; want token %q with the client's credentials", f, want)
				}
			}
			if !slices.Equal(hints, tt.want) {
				t.Errorf("revocations %q; want %q", hints, tt.want)
			}
		})
	}
}

// TestRevocationErrors: a refused revocation is a *RevocationError with the
// server's code, tokens redacted; a network failure one without status.
func TestRevocationErrors(t *testing.T) {
	srv := newOAuthServer(t)
	tok := Tokens{AccessToken: "access-0123456789", RefreshToken: "refresh-0123456789"}
	tokenError(srv, "unsupported_token_type", "cannot revoke "+tok.RefreshToken)
	o := srv.refresher(testNow)
	o.RevocationURL = srv.URL + "/revoke"
	err := o.Revoke(context.Background(), tok)
	var re *RevocationError
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "unsupported_token_type" || re.TokenTypeHint != "refresh_token" {
		t.Fatalf("error = %v; want a *RevocationError of the refresh token, 400 unsupported_token_type", err)
	}
	if strings.Contains(err.Error(), tok.RefreshToken) || re.Description != "cannot revoke "+redacted {
		t.Errorf("error %q, Description %q; want the token redacted", err, re.Description)
	}
	o.RevocationURL = "http://revoke.example.com/revoke" // refused before sending
	if err := o.Revoke(context.Background(), tok); !errors.As(err, &re) || !errors.Is(err, ErrUnsafeURL) || re.StatusCode != 0 {
		t.Errorf("plain http revocation URL: %v; want a *RevocationError wrapping ErrUnsafeURL", err)
	}
}

// TestOAuth2String: fmt shows the endpoints and client ID, never the
// secret or key.
func TestOAuth2String(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o := &OAuth2{TokenURL: "https://u:pw@auth.example.com/token", Issuer: "https://auth.example.com", ClientID: "app", ClientSecret: "s3cret-value", ClientKey: key}
	got := fmt.Sprintf("%v|%+v|%#v|%s", o, o, o, o)
	want := `autorefresh.OAuth2{TokenURL: "https://u:xxxxx@auth.example.com/token", Issuer: "https://auth.example.com", ClientID: "app", ClientSecret: [redacted], ClientKey: [redacted]}`
	if got != strings.Repeat(want+"|", 3)+want {
		t.Errorf("printed %s; want %s", got, want)
	}
}

func equalForms(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestOAuthSecretsNeverShown: a server that quotes the client secret, the
// client assertion and the tokens in its error answers gets them redacted
// from everything the Transport shows: the error, the refresh event and
// the debug log.
func TestOAuthSecretsNeverShown(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "client-secret-0123456789"
	tests := []struct {
		name      string
		refresher func(srv *oauthServer) Refresher
		setup     func(srv *oauthServer)
	}{
		{"secret echoed", func(srv *oauthServer) Refresher {
			o := srv.refresher(testNow)
			o.ClientID, o.ClientSecret = "client", secret
			return o
		}, func(srv *oauthServer) {}},
		{"assertion echoed", func(srv *oauthServer) Refresher {
			cc := srv.credentials(testNow)
			cc.ClientID, cc.AuthStyle, cc.ClientKey = "other", AuthStylePrivateKeyJWT, key
			return cc
		}, func(srv *oauthServer) { srv.clientID, srv.clientKey = "client", key.Public() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOAuthServer(t)
			tt.setup(srv)
			stale := srv.stale()
			if srv.clientKey == nil {
				tokenError(srv, "invalid_client", "client secret "+secret+" is wrong for "+stale.RefreshToken+" and "+stale.AccessToken)
			}
			var logged strings.Builder
			var events []RefreshEvent
			tr := &Transport{Store: NewMemoryStore(stale), Refresher: tt.refresher(srv),
				Logger:    slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
				OnRefresh: func(e RefreshEvent) { events = append(events, e) }}
			_, err := NewClient(nil, tr).Get(srv.URL + "/api/x")
			if !errors.Is(err, ErrClientRejected) || len(events) != 1 {
				t.Fatalf("error = %v, %d refresh events; want ErrClientRejected, 1", err, len(events))
			}
			form, _ := srv.last()
			shown := fmt.Sprintf("%v %+v %#v", err, events[0].Err, events) + logged.String()
			for _, s := range []string{secret, form.Get("client_assertion"), stale.AccessToken, stale.RefreshToken} {
				if s != "" && strings.Contains(shown, s) {
					t.Errorf("shown: %s; want no secret, assertion or token", shown)
				}
			}
			if !strings.Contains(logged.String(), "refresh failed") {
				t.Errorf("log %q; want the failed refresh logged", logged.String())
			}
		})
	}
}

// TestConfigurationsNeverPrintSecrets checks that a struct of the caller's
// holding an OAuth2, ClientCredentials, DPoP or Transport, logged with
// slog's JSON handler (which encodes it with encoding/json), shows neither
// the client secret nor the private part (D) of the DPoP key. fmt and slog
// text output are checked by TestOAuthSecretsNeverShown and the tests
// beside it.
func TestConfigurationsNeverPrintSecrets(t *testing.T) {
	const secret = "client-secret-0123456789"
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw).String() // D, as encoding/json writes it
	dpop := &DPoP{Key: key}
	o := &OAuth2{TokenURL: "https://auth.example.com/token", ClientID: "app", ClientSecret: secret, DPoP: dpop}
	cc := &ClientCredentials{TokenURL: "https://auth.example.com/token", ClientID: "svc", ClientSecret: secret}
	tr := &Transport{Store: NewMemoryStore(Tokens{}), Refresher: o, DPoP: dpop}
	tests := []struct {
		name string
		cfg  any
	}{
		{"*OAuth2", struct{ Auth *OAuth2 }{o}},
		{"*ClientCredentials", struct {
			Auth *ClientCredentials
		}{cc}},
		{"*DPoP", struct{ DPoP *DPoP }{dpop}},
		{"*Transport", struct{ HTTP *Transport }{tr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "cfg", tt.cfg)
			if strings.Contains(b.String(), secret) {
				t.Errorf("slog JSON of a struct holding a %s shows the client secret: %s", tt.name, b.String())
			}
			if strings.Contains(b.String(), d) {
				t.Errorf("slog JSON of a struct holding a %s shows the DPoP private key D: %s", tt.name, b.String())
			}
		})
	}
}
