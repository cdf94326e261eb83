package autorefresh_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/autorefresh/autorefresh"
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
