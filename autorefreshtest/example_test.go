package autorefreshtest_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/autorefresh/autorefresh/autorefreshtest"
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
