// Command sdk shows autorefresh plugged into an existing API SDK. Package
// petstore, a client of the kind code generators write, is used unchanged:
// authentication is added only by handing it a client made with
// autorefresh.NewClient.
//
//	go run ./examples/sdk
//
// The auth server (package autorefreshtest) and the pet store API run
// in-process on loopback addresses.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
	"github.com/autorefresh/autorefresh/examples/sdk/petstore"
)

func main() {
	// The auth server's clock can jump ahead, to expire the tokens it
	// issued without waiting.
	var skew atomic.Int64
	auth := autorefreshtest.NewServer(autorefreshtest.Options{
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	})
	defer auth.Close()
	api := httptest.NewServer(newPetAPI(auth.URL))
	defer api.Close()

	expire := func() { skew.Add(int64(time.Hour)) }
	if err := run(context.Background(), os.Stdout, auth.URL, api.URL+"/v1", expire); err != nil {
		fmt.Fprintln(os.Stderr, "sdk:", err)
		os.Exit(1)
	}
}

// run logs in at the auth server authURL and uses the pet store at apiURL.
// expire makes the auth server refuse the access tokens issued so far.
func run(ctx context.Context, out io.Writer, authURL, apiURL string, expire func()) error {
	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		Refresher: &autorefresh.Endpoint{URL: authURL + "/auth/refreshtoken"},
	}
	creds := map[string]string{"username": autorefreshtest.DefaultUser, "password": autorefreshtest.DefaultPassword}
	if err := tr.Login(ctx, authURL+"/auth/login", creds); err != nil {
		return err
	}
	fmt.Fprintln(out, "logged in as", autorefreshtest.DefaultUser)

	// The SDK, unchanged: it gets our client and never sees a token.
	client := autorefresh.NewClient(http.DefaultClient, tr)
	pets := petstore.NewClient(apiURL, petstore.WithHTTPClient(client))

	for _, name := range []string{"Rex", "Tom"} {
		pet, err := pets.CreatePet(ctx, petstore.NewPet{Name: name})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created %s (id %d)\n", pet.Name, pet.ID)
	}

	expire()
	fmt.Fprintln(out, "an hour passes: the API now refuses the access token")

	// Refused with 403, refreshed, and sent again with the same body.
	pet, err := pets.CreatePet(ctx, petstore.NewPet{Name: "Felix"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "created %s (id %d)\n", pet.Name, pet.ID)
	all, err := pets.ListPets(ctx)
	if err != nil {
		return err
	}
	names := make([]string, len(all))
	for i, p := range all {
		names[i] = p.Name
	}
	fmt.Fprintln(out, "pets:", strings.Join(names, ", "))

	st := tr.Stats()
	fmt.Fprintf(out, "refreshes: %d, replays: %d\n", st.Refreshes, st.Replays)
	return nil
}
