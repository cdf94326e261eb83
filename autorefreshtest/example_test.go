package autorefreshtest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/golang-jwt/jwt/v5"
)

func Example() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice") // or POST /auth/login
	req, _ := http.NewRequest("POST", srv.URL+"/api/echo", strings.NewReader("hello"))
	req.Header.Set("accessToken", tokens.AccessToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	io.Copy(os.Stdout, resp.Body)
	// Output:
	// 200 OK
	// {"body":"hello","method":"POST","path":"/api/echo","user":"alice"}
}

// refreshStatus sends refreshToken to GET /auth/refreshtoken and returns
// the response status.
func refreshStatus(srv *autorefreshtest.Server, refreshToken string) int {
	req, _ := http.NewRequest("GET", srv.URL+"/auth/refreshtoken", nil)
	req.Header.Set("refreshToken", refreshToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Refresh tokens are single-use: a second refresh with the same token is
// rejected and counted as a reuse.
func Example_rotation() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice")
	fmt.Println(refreshStatus(srv, tokens.RefreshToken))
	fmt.Println(refreshStatus(srv, tokens.RefreshToken))
	st := srv.Stats()
	fmt.Printf("refreshes=%d reuse rejections=%d\n", st.Refreshes, st.ReuseRejections)
	// Output:
	// 200
	// 401
	// refreshes=1 reuse rejections=1
}

func ExampleServer_FailRefresh() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice")
	srv.FailRefresh(2, http.StatusServiceUnavailable)
	for range 3 {
		fmt.Println(refreshStatus(srv, tokens.RefreshToken))
	}
	// Output:
	// 503
	// 503
	// 200
}

func ExampleServer_SetRefreshFault() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice")
	srv.SetRefreshFault(autorefreshtest.FaultDropConnection, 1)
	req, _ := http.NewRequest("GET", srv.URL+"/auth/refreshtoken", nil)
	req.Header.Set("refreshToken", tokens.RefreshToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, err)
	// The fault was for one call, and the refresh token is still valid.
	fmt.Println(refreshStatus(srv, tokens.RefreshToken))
	// Output:
	// 200 unexpected EOF
	// 200
}

// postForm posts form to path with HTTP Basic client credentials when id is
// not empty, and decodes the JSON answer, if any.
func postForm(srv *autorefreshtest.Server, path, id, secret string, form url.Values, header http.Header) (int, map[string]any) {
	req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// apiStatus calls GET /api/me with the headers and returns the status.
func apiStatus(srv *autorefreshtest.Server, header http.Header) int {
	req, _ := http.NewRequest("GET", srv.URL+"/api/me", nil)
	req.Header = header
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A client credentials grant (RFC 6749 section 4.4) by a registered
// client, with a scope and an RFC 8707 resource: the access token records
// both, and no refresh token is issued.
func Example_clientCredentials() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{
		Clients: []autorefreshtest.Client{{ID: "billing", Secret: "s3cret", Scopes: []string{"invoices:read"}}},
	})
	defer srv.Close()

	form := url.Values{"grant_type": {"client_credentials"}, "resource": {"https://api.example.com/"}}
	status, tok := postForm(srv, "/oauth/token", "billing", "s3cret", form, nil)
	fmt.Println(status, tok["token_type"], tok["scope"], tok["refresh_token"])
	info, _ := srv.Introspect(tok["access_token"].(string))
	fmt.Println(info.Subject, info.Audience)

	status, tok = postForm(srv, "/oauth/token", "billing", "wrong", form, nil)
	fmt.Println(status, tok["error"])
	st := srv.Stats()
	fmt.Println("grants:", st.ClientCredentialsGrants, "client failures:", st.ClientAuthFailures)
	// Output:
	// 200 Bearer invoices:read <nil>
	// billing [https://api.example.com/]
	// 401 invalid_client
	// grants: 1 client failures: 1
}

// The metadata of RFC 8414 names the server's URL as issuer, and
// SetDiscoveryFault breaks it for the next fetches.
func Example_discovery() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	fetch := func() {
		resp, err := srv.Client().Get(srv.URL + "/.well-known/oauth-authorization-server")
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		var m struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		json.NewDecoder(resp.Body).Decode(&m)
		fmt.Printf("%d issuer ok: %t, token endpoint: %q\n", resp.StatusCode, m.Issuer == srv.URL,
			strings.TrimPrefix(m.TokenEndpoint, srv.URL))
	}
	fetch()
	srv.SetDiscoveryFault(autorefreshtest.DiscoveryWrongIssuer, 1)
	fetch()
	srv.FailDiscovery(1, http.StatusServiceUnavailable)
	fetch()
	fmt.Println("fetches:", srv.Stats().DiscoveryFetches)
	// Output:
	// 200 issuer ok: true, token endpoint: "/oauth/token"
	// 200 issuer ok: false, token endpoint: "/oauth/token"
	// 503 issuer ok: false, token endpoint: ""
	// fetches: 3
}

// Revoking a refresh token at the RFC 7009 endpoint ends its session: its
// access token is refused too.
func Example_revocation() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice")
	bearer := http.Header{"Authorization": {"Bearer " + tokens.AccessToken}}
	fmt.Println(apiStatus(srv, bearer))
	status, _ := postForm(srv, "/oauth/revoke", "", "", url.Values{"token": {tokens.RefreshToken}}, nil)
	fmt.Println(status, apiStatus(srv, bearer))
	// Unknown tokens are answered 200 as well.
	status, _ = postForm(srv, "/oauth/revoke", "", "", url.Values{"token": {"no-such-token"}}, nil)
	fmt.Println(status, srv.Stats().Revocations)
	// Output:
	// 200
	// 200 401
	// 200 1
}

// ExpireAccessTokens makes the API refuse a token that its holder believes
// good, as a server whose clock runs ahead would; the refresh token still
// works.
func ExampleServer_ExpireAccessTokens() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	tokens := srv.Issue("alice")
	header := http.Header{"accessToken": {tokens.AccessToken}}
	fmt.Println(apiStatus(srv, header))
	srv.ExpireAccessTokens()
	fmt.Println(apiStatus(srv, header), refreshStatus(srv, tokens.RefreshToken))
	// Output:
	// 200
	// 403 200
}

// A DPoP-bound token (RFC 9449): the token request carries a proof signed
// with the client's key, and so does every API request, with the hash of
// the access token.
func Example_dpop() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := key.PublicKey.Bytes() // 0x04 || x || y
	jwk := map[string]string{"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(point[33:])}
	proof := func(method, uri, accessToken string) http.Header {
		claims := jwt.MapClaims{"jti": rand.Text(), "htm": method, "htu": uri, "iat": time.Now().Unix()}
		if accessToken != "" {
			sum := sha256.Sum256([]byte(accessToken))
			claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		t.Header["typ"], t.Header["jwk"] = "dpop+jwt", jwk
		signed, _ := t.SignedString(key)
		return http.Header{"Dpop": {signed}}
	}

	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}
	_, tok := postForm(srv, "/oauth/token", "", "", form, proof("POST", srv.URL+"/oauth/token", ""))
	access := tok["access_token"].(string)
	fmt.Println(tok["token_type"])

	header := proof("GET", srv.URL+"/api/me", access)
	header.Set("Authorization", "DPoP "+access)
	fmt.Println(apiStatus(srv, header))
	// Sent as a bearer token, or with the proof replayed, it is refused.
	fmt.Println(apiStatus(srv, http.Header{"Authorization": {"Bearer " + access}}), apiStatus(srv, header))
	st := srv.Stats()
	fmt.Println("proofs:", st.DPoPProofs, "replays:", st.DPoPRefusals.Replay, "binding:", st.DPoPRefusals.Binding)
	// Output:
	// DPoP
	// 200
	// 401 401
	// proofs: 2 replays: 1 binding: 1
}
