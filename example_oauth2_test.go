package autorefresh_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// oauthDemo starts an in-process OAuth 2.0 server: a token endpoint that
// trades the refresh token "r1" for a new pair, and an API that only takes
// the access token "a2".
func oauthDemo() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.PostFormValue("refresh_token") != "r1" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		io.WriteString(w, `{"access_token":"a2","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}`)
	})
	mux.HandleFunc("/api/me", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer a2" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "hello")
	})
	return httptest.NewServer(mux)
}

// Refresh at an OAuth 2.0 token endpoint (RFC 6749 section 6) when the API
// refuses the access token with 401 invalid_token, and send the request
// again with the new one.
func ExampleOAuth2() {
	srv := oauthDemo()
	defer srv.Close()

	tr := &autorefresh.Transport{
		Store: autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: "a1", RefreshToken: "r1"}),
		Refresher: &autorefresh.OAuth2{
			TokenURL:     srv.URL + "/token",
			ClientID:     "my-app",
			ClientSecret: "my-secret",
		},
		Scheme: autorefresh.BearerScheme,
		OnRefresh: func(e autorefresh.RefreshEvent) {
			fmt.Println("refreshed; error:", e.Err)
		},
	}
	client := autorefresh.NewClient(nil, tr)

	// a1 is refused with 401 invalid_token: the Transport refreshes and
	// sends the request again with a2.
	resp, err := client.Get(srv.URL + "/api/me")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	fmt.Printf("%+v\n", tr.Stats())
	// Output:
	// refreshed; error: <nil>
	// 200 hello
	// {Requests:1 Refreshes:1 RefreshFailures:0 ProactiveRefreshes:0 Replays:1 Waits:1 NonceRetries:0}
}

// A service calls an API as itself with the client credentials grant: the
// Transport gets a token on the first request, shares it between
// concurrent requests, renews it ahead of expiry and when the API refuses
// it. With a FileStore or the Redis store, all the replicas share one
// token.
func ExampleClientCredentials() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{
		Clients: []autorefreshtest.Client{{ID: "billing", Secret: "billing-secret"}},
	})
	defer srv.Close()

	tr := &autorefresh.Transport{
		Store: autorefresh.NewMemoryStore(autorefresh.Tokens{}), // or a FileStore, the Redis store
		Refresher: &autorefresh.ClientCredentials{
			TokenURL:     srv.URL + "/oauth/token",
			ClientID:     "billing",
			ClientSecret: "billing-secret",
			Scopes:       []string{"invoices:read"},
			Resources:    []string{"https://api.example.com/invoices"}, // RFC 8707
		},
	}
	client := autorefresh.NewClient(nil, tr)
	for range 3 {
		resp, err := client.Get(srv.URL + "/api/me")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	fmt.Println("token requests:", srv.Stats().ClientCredentialsGrants)

	// A wrong secret is a configuration error, not an expired session.
	wrong := &autorefresh.ClientCredentials{TokenURL: srv.URL + "/oauth/token", ClientID: "billing", ClientSecret: "wrong"}
	_, err := wrong.Start(context.Background())
	fmt.Println(errors.Is(err, autorefresh.ErrClientRejected), errors.Is(err, autorefresh.ErrSessionExpired))
	// Output:
	// 200 {"user":"billing"}
	// 200 {"user":"billing"}
	// 200 {"user":"billing"}
	// token requests: 1
	// true false
}

// Given the issuer instead of the token endpoint, an OAuth2 (or a
// ClientCredentials) finds the endpoints in the server's metadata (RFC
// 8414, or OpenID Connect Discovery), which it fetches once.
func ExampleOAuth2_issuer() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(srv.Issue("alice")),
		Refresher: &autorefresh.OAuth2{Issuer: srv.Issuer()}, // for example "https://accounts.example.com"
	}
	client := autorefresh.NewClient(nil, tr)
	for range 3 {
		srv.ExpireAccessTokens() // the API refuses the token: refresh, replay
		resp, err := client.Get(srv.URL + "/api/me")
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	st := srv.Stats()
	fmt.Println("refreshes:", st.Refreshes, "metadata fetches:", st.DiscoveryFetches)
	// Output:
	// 200
	// 200
	// 200
	// refreshes: 3 metadata fetches: 1
}

// The client authenticates with a JWT it signs with its private key
// (private_key_jwt) instead of a secret. The key is a crypto.Signer, so it
// may live in an HSM or a KMS; each token request gets a new assertion.
func ExampleAuthStylePrivateKeyJWT() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // or a KMS-backed crypto.Signer
	if err != nil {
		log.Fatal(err)
	}
	srv := autorefreshtest.NewServer(autorefreshtest.Options{
		Clients: []autorefreshtest.Client{{ID: "reports", Key: key.Public()}}, // the public key, registered
	})
	defer srv.Close()

	tr := &autorefresh.Transport{
		Store: autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		Refresher: &autorefresh.ClientCredentials{
			Issuer:      srv.Issuer(),
			ClientID:    "reports",
			AuthStyle:   autorefresh.AuthStylePrivateKeyJWT,
			ClientKey:   key,
			ClientKeyID: "reports-2026", // the key's "kid", if the server wants it
		},
	}
	client := autorefresh.NewClient(nil, tr)
	for range 2 {
		srv.ExpireAccessTokens()
		resp, err := client.Get(srv.URL + "/api/me")
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	fmt.Println("token requests:", srv.Stats().ClientCredentialsGrants, "refused:", srv.Stats().ClientAuthFailures)
	// Output:
	// 200
	// 200
	// token requests: 2 refused: 0
}

// With a revocation endpoint (RevocationURL, or one in the issuer's
// metadata), Logout revokes the refresh token at the server (RFC 7009),
// then drops the tokens, whatever the server said.
func ExampleTransport_Logout_revocation() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice") // your login: authorization code, device flow, ...
	store := autorefresh.NewMemoryStore(tokens)
	tr := &autorefresh.Transport{
		Store: store,
		Refresher: &autorefresh.OAuth2{
			TokenURL:      srv.URL + "/oauth/token",
			RevocationURL: srv.URL + "/oauth/revoke",
			// RevokeAccessToken: true, // for servers that keep the access token alive
		},
	}
	if err := tr.Logout(context.Background()); err != nil {
		// A failed revocation: the tokens are dropped locally all the
		// same; the refresh token may still be valid at the server.
		log.Print(err)
	}
	_, err := store.Load(context.Background())
	fmt.Println("store empty:", errors.Is(err, autorefresh.ErrNoTokens))
	fmt.Println("revocations:", srv.Stats().Revocations)
	_, err = tr.Refresher.Refresh(context.Background(), tokens)
	fmt.Println("refresh token dead:", errors.Is(err, autorefresh.ErrSessionExpired))
	// Output:
	// store empty: true
	// revocations: 1
	// refresh token dead: true
}

// Read the challenges of a refusal, for a ShouldRefresh policy of your own.
func ExampleParseChallenges() {
	h := http.Header{}
	h.Add("WWW-Authenticate", `Basic realm="api"`)
	h.Add("WWW-Authenticate", `Bearer realm="api", error="insufficient_scope", scope="repo admin:org"`)
	for _, c := range autorefresh.ParseChallenges(h.Values("WWW-Authenticate")) {
		fmt.Printf("%s realm=%q error=%q scope=%q\n", c.Scheme, c.Param("realm"), c.Param("error"), c.Param("scope"))
	}
	// Output:
	// Basic realm="api" error="" scope=""
	// Bearer realm="api" error="insufficient_scope" scope="repo admin:org"
}
