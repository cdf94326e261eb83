package autorefresh_test

import (
	"context"
	"fmt"
	"io"
	"log"
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
