// Command quickstart logs in, then calls an API through a client that
// sends the tokens and refreshes them when the API refuses them. It runs
// against an in-process test server; put your API's URLs in its place.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

func main() {
	api := autorefreshtest.NewServer(autorefreshtest.Options{}) // your API instead
	defer api.Close()

	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(autorefresh.Tokens{}), // or autorefresh.NewFileStore(path)
		Refresher: &autorefresh.Endpoint{URL: api.URL + "/auth/refreshtoken"},
	}
	err := tr.Login(context.Background(), api.URL+"/auth/login",
		map[string]string{"username": "alice", "password": "wonderland"})
	if err != nil {
		log.Fatal(err)
	}

	client := autorefresh.NewClient(http.DefaultClient, tr) // a copy; http.DefaultClient is untouched
	resp, err := client.Get(api.URL + "/api/me")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(body))
}
