package autorefresh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// ExampleDPoP binds the tokens of a service to a key it keeps in a file
// (RFC 9449): the token endpoint and the API require a proof of the key
// with every request, and ask for nonces, which the Transport answers.
func ExampleDPoP() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{
		RequireDPoP: true, RequireDPoPNonce: true,
		Clients: []autorefreshtest.Client{{ID: "reports", Secret: "reports-secret-1234"}},
	})
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "dpop-example")
	defer os.RemoveAll(dir)

	// Keep the key beside the tokens: they are bound to it.
	key, err := autorefresh.LoadOrCreateKey(filepath.Join(dir, "dpop-key.pem"))
	if err != nil {
		log.Fatal(err)
	}
	tr := &autorefresh.Transport{
		Store: autorefresh.NewFileStore(filepath.Join(dir, "tokens.json")),
		Refresher: &autorefresh.ClientCredentials{
			TokenURL:     srv.URL + "/oauth/token",
			ClientID:     "reports",
			ClientSecret: "reports-secret-1234",
			DPoP:         &autorefresh.DPoP{Key: key},
		},
	}
	client := autorefresh.NewClient(nil, tr)
	for range 2 {
		resp, err := client.Get(srv.URL + "/api/me")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	tok, _ := tr.Tokens(context.Background())
	fmt.Println("token type:", tok.TokenType)
	fmt.Println("no proof refused:", srv.Stats().DPoPRefusals == autorefreshtest.DPoPRefusals{})
	// Output:
	// 200 {"user":"reports"}
	// 200 {"user":"reports"}
	// token type: DPoP
	// no proof refused: true
}

// A user's login bound to a DPoP key: the application sends its own token
// request (here a password grant; an authorization code exchange with
// x/oauth2 works the same way) through TokenTransport, which adds the proof
// and answers the server's nonce round, and hands the tokens to a Transport
// whose OAuth2 refresher has the same DPoP.
func ExampleDPoP_TokenTransport() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{RequireDPoP: true, RequireDPoPNonce: true})
	defer srv.Close()
	key, err := autorefresh.GenerateKey() // keep it beside the tokens: LoadOrCreateKey
	if err != nil {
		log.Fatal(err)
	}
	dpop := &autorefresh.DPoP{Key: key}

	// The login: the tokens come back bound to the key.
	login := &http.Client{Transport: dpop.TokenTransport(nil)}
	resp, err := login.PostForm(srv.URL+"/oauth/token", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"},
	})
	if err != nil {
		log.Fatal(err)
	}
	var answer struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("login:", resp.StatusCode, answer.TokenType)

	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		Refresher: &autorefresh.OAuth2{TokenURL: srv.URL + "/oauth/token", DPoP: dpop},
	}
	ctx := context.Background()
	err = tr.SetTokens(ctx, autorefresh.Tokens{AccessToken: answer.AccessToken, RefreshToken: answer.RefreshToken, TokenType: answer.TokenType})
	if err != nil {
		log.Fatal(err)
	}
	client := autorefresh.NewClient(nil, tr)
	for range 2 {
		resp, err := client.Get(srv.URL + "/api/me")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
		srv.ExpireAccessTokens() // the API refuses the token: refresh with a proof, replay
	}
	st := srv.Stats()
	fmt.Println("refreshes:", st.Refreshes, "no proof refused:", st.DPoPRefusals == autorefreshtest.DPoPRefusals{})
	// Output:
	// login: 200 DPoP
	// 200 {"user":"alice"}
	// 200 {"user":"alice"}
	// refreshes: 1 no proof refused: true
}
