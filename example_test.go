package autorefresh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// Wrap http.DefaultClient: every request gets the tokens, and a stale
// access token is refreshed on the way.
func ExampleNewClient() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()
	// Tokens from an earlier run, whose access token has expired.
	stored := srv.IssueTTL("alice", -time.Minute)

	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(stored),
		Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
	}
	client := autorefresh.NewClient(http.DefaultClient, tr)

	resp, err := client.Post(srv.URL+"/api/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	fmt.Println("refreshes:", tr.Stats().Refreshes)
	// Output:
	// {"body":"hello","method":"POST","path":"/api/echo","user":"alice"}
	// refreshes: 1
}

// Send the access token as "Authorization: Bearer" (RFC 6750). With that
// scheme a refused token is a 401, which the default ShouldRefresh policy
// then expects.
func ExampleHeaderScheme() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()
	tok := srv.Issue("alice")
	tok.AccessToken = "revoked-long-ago" // the server refuses it

	tr := &autorefresh.Transport{
		Store:  autorefresh.NewMemoryStore(tok),
		Scheme: autorefresh.BearerScheme,
		Refresher: &autorefresh.Endpoint{
			URL:    srv.URL + "/auth/refreshtoken",
			Scheme: autorefresh.BearerScheme, // the refresh token goes in "refreshToken"
		},
	}
	client := autorefresh.NewClient(http.DefaultClient, tr)

	resp, err := client.Get(srv.URL + "/api/me")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Print(resp.Status, " ")
	io.Copy(os.Stdout, resp.Body)
	st := tr.Stats()
	fmt.Printf("refreshes: %d, replays: %d\n", st.Refreshes, st.Replays)
	// Output:
	// 200 OK {"user":"alice"}
	// refreshes: 1, replays: 1
}

// startUp is what a program runs before its first request: resume the
// stored session, or log in when there is none or it is over.
func startUp(ctx context.Context, tr *autorefresh.Transport, baseURL string) error {
	err := tr.Resume(ctx, baseURL+"/auth/check")
	switch {
	case err == nil:
		fmt.Println("resumed the stored session")
		return nil
	case errors.Is(err, autorefresh.ErrNoTokens):
		fmt.Println("no stored session: logging in")
	case errors.Is(err, autorefresh.ErrSessionExpired):
		fmt.Println("the stored session is over: logging in")
	default:
		// The server is unreachable or failing: the stored tokens are
		// kept, so try again later rather than ask for the password.
		return err
	}
	return tr.Login(ctx, baseURL+"/auth/login", map[string]string{
		"username": "alice",
		"password": "wonderland",
	})
}

// Check the stored session at start-up, as a front end does.
func ExampleTransport_Resume() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()
	ctx := context.Background()
	newTransport := func(stored autorefresh.Tokens) *autorefresh.Transport {
		return &autorefresh.Transport{
			Store:     autorefresh.NewMemoryStore(stored),
			Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		}
	}

	// A fresh start, then one with a good session, then one with an
	// expired access token, which is refreshed.
	for _, stored := range []autorefresh.Tokens{{}, srv.Issue("alice"), srv.IssueTTL("alice", -time.Hour)} {
		if err := startUp(ctx, newTransport(stored), srv.URL); err != nil {
			fmt.Println(err)
		}
	}
	// A session the server revoked (a logout elsewhere).
	stored := srv.Issue("alice")
	srv.Revoke(stored.RefreshToken)
	if err := startUp(ctx, newTransport(stored), srv.URL); err != nil {
		fmt.Println(err)
	}
	// The server is down: the tokens are kept.
	srv.FailRefresh(1, http.StatusServiceUnavailable)
	tr := newTransport(srv.IssueTTL("alice", -time.Hour))
	fmt.Println(startUp(ctx, tr, srv.URL))
	_, err := tr.Tokens(ctx)
	fmt.Println("tokens kept:", err == nil)
	// Output:
	// no stored session: logging in
	// resumed the stored session
	// resumed the stored session
	// the stored session is over: logging in
	// autorefresh: resume: refresh failed: endpoint answered 503
	// tokens kept: true
}

// Log in with a user name and password, and log out.
func ExampleTransport_Login() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()
	ctx := context.Background()
	tr := &autorefresh.Transport{
		Store:     autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
	}
	client := autorefresh.NewClient(http.DefaultClient, tr)

	err := tr.Login(ctx, srv.URL+"/auth/login", map[string]string{"username": "alice", "password": "guess"})
	fmt.Println(errors.Is(err, autorefresh.ErrLoginRejected), err)

	if err := tr.Login(ctx, srv.URL+"/auth/login", map[string]string{"username": "alice", "password": "wonderland"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(status(client, srv.URL+"/api/me"))

	if err := tr.Logout(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(status(client, srv.URL+"/api/me"))
	// Output:
	// true autorefresh: login: endpoint answered 401: login rejected
	// 200 OK
	// 403 Forbidden
}

// Keep the tokens in a file, so that the next run of the program resumes
// the session instead of asking for the password.
func ExampleFileStore() {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{})
	defer srv.Close()
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tokens.json") // e.g. in os.UserConfigDir()

	for run := 1; run <= 2; run++ {
		tr := &autorefresh.Transport{
			Store:     autorefresh.NewFileStore(path),
			Refresher: &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"},
		}
		fmt.Printf("run %d: ", run)
		if err := startUp(context.Background(), tr, srv.URL); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// run 1: no stored session: logging in
	// run 2: resumed the stored session
}

func status(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return resp.Status
}

// A server of your own design: the access token goes in "X-Session: Token
// <access>", the refresh token only to the refresh endpoint, in
// "X-Refresh".
func ExampleHeaderScheme_custom() {
	scheme := autorefresh.HeaderScheme{AccessHeader: "X-Session", AccessPrefix: "Token "}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/refresh" && r.Header.Get("X-Refresh") == "refresh-1":
			io.WriteString(w, `{"accessToken": "access-2", "refreshToken": "refresh-2"}`)
		case r.URL.Path == "/refresh":
			w.WriteHeader(http.StatusUnauthorized)
		case r.Header.Get("X-Session") == "Token access-2":
			fmt.Fprintln(w, "hello")
		default:
			w.WriteHeader(http.StatusForbidden) // access-1 has expired
		}
	}))
	defer srv.Close()

	tr := &autorefresh.Transport{
		Store:  autorefresh.NewMemoryStore(autorefresh.Tokens{AccessToken: "access-1", RefreshToken: "refresh-1"}),
		Scheme: scheme,
		Refresher: &autorefresh.Endpoint{
			URL:    srv.URL + "/refresh",
			Scheme: autorefresh.HeaderScheme{AccessHeader: "X-Session", AccessPrefix: "Token ", RefreshHeader: "X-Refresh"},
		},
	}
	resp, err := autorefresh.NewClient(nil, tr).Get(srv.URL + "/hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	fmt.Printf("refreshes: %d\n", tr.Stats().Refreshes)
	// Output:
	// hello
	// refreshes: 1
}
