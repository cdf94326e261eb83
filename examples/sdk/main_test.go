package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autorefresh/autorefresh/autorefreshtest"
)

func TestRun(t *testing.T) {
	var skew atomic.Int64
	auth := autorefreshtest.NewServer(autorefreshtest.Options{
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	})
	t.Cleanup(auth.Close)
	api := httptest.NewServer(newPetAPI(auth.URL))
	t.Cleanup(api.Close)

	var out bytes.Buffer
	if err := run(t.Context(), &out, auth.URL, api.URL+"/v1", func() { skew.Add(int64(time.Hour)) }); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := `logged in as alice
created Rex (id 1)
created Tom (id 2)
an hour passes: the API now refuses the access token
created Felix (id 3)
pets: Rex, Tom, Felix
refreshes: 1, replays: 1
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	st := auth.Stats()
	if st.Logins != 1 || st.Refreshes != 1 || st.ReuseRejections != 0 {
		t.Errorf("server logins = %d, refreshes = %d, reuses = %d; want 1, 1, 0", st.Logins, st.Refreshes, st.ReuseRejections)
	}
}

func TestPetAPIRefusesBadTokens(t *testing.T) {
	auth := autorefreshtest.NewServer(autorefreshtest.Options{})
	t.Cleanup(auth.Close)
	api := httptest.NewServer(newPetAPI(auth.URL))
	t.Cleanup(api.Close)
	for _, token := range []string{"", "forged"} {
		req, err := http.NewRequest("GET", api.URL+"/v1/pets", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("accessToken", token)
		resp, err := api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("token %q: status %d; want 403", token, resp.StatusCode)
		}
	}
}
