package autorefresh_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// Discovery (RFC 8414, OpenID Connect Discovery) against autorefreshtest.

// TestDiscoveryFindsEndpoints: given only the issuer, OAuth2 and
// ClientCredentials fetch its metadata once and use its token endpoint:
// from the RFC 8414 address, with the issuer's path where RFC 8414 puts it,
// or from the OpenID address when the server only has that one.
func TestDiscoveryFindsEndpoints(t *testing.T) {
	tests := []struct {
		name        string
		issuerPath  string
		oidcOnly    bool
		wantFetches int64
	}{
		{name: "RFC 8414", wantFetches: 1},
		{name: "RFC 8414 with a path", issuerPath: "/tenant1", wantFetches: 1},
		{name: "OpenID only", oidcOnly: true, wantFetches: 2},
		{name: "OpenID only with a path", issuerPath: "/tenant1", oidcOnly: true, wantFetches: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ccServer(t, autorefreshtest.Options{IssuerPath: tt.issuerPath, Clients: []autorefreshtest.Client{{ID: "app"}}})
			if tt.oidcOnly {
				srv.SetDiscoveryFault(autorefreshtest.DiscoveryOIDCOnly, -1)
			}
			o := &autorefresh.OAuth2{Issuer: srv.Issuer(), ClientID: "app"}
			tok := passwordGrant(t, srv, map[string][]string{"client_id": {"app"}})
			for range 3 {
				var err error
				if tok, err = o.Refresh(t.Context(), tok); err != nil {
					t.Fatalf("refresh: %v", err)
				}
			}
			cc := &autorefresh.ClientCredentials{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret}
			if _, err := cc.Start(t.Context()); err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			st := srv.Stats()
			if st.Refreshes != 3 || st.ClientCredentialsGrants != 1 {
				t.Errorf("refreshes %d, client credentials grants %d; want 3, 1", st.Refreshes, st.ClientCredentialsGrants)
			}
			// One fetch (or two with the fallback) for each of the two.
			if st.DiscoveryFetches != 2*tt.wantFetches {
				t.Errorf("metadata fetches = %d; want %d", st.DiscoveryFetches, 2*tt.wantFetches)
			}
		})
	}
}

// TestDiscoveryOnce: concurrent first uses of one ClientCredentials share
// one fetch of the metadata.
func TestDiscoveryOnce(t *testing.T) {
	const n = 20
	srv := ccServer(t, autorefreshtest.Options{})
	cc := &autorefresh.ClientCredentials{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			if _, err := cc.Start(t.Context()); err != nil {
				t.Errorf("Start: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if st := srv.Stats(); st.DiscoveryFetches != 1 || st.ClientCredentialsGrants != n {
		t.Errorf("metadata fetches %d, grants %d; want 1, %d", st.DiscoveryFetches, st.ClientCredentialsGrants, n)
	}
}

// TestDiscoveryBadDocuments: a metadata document that cannot be used is a
// *DiscoveryError wrapping ErrBadMetadata, inside a transient
// *RefreshError; no token request is sent, the tokens are kept, and the
// metadata is fetched again on the next use.
func TestDiscoveryBadDocuments(t *testing.T) {
	tests := []struct {
		fault autorefreshtest.DiscoveryFault
		also  error // wrapped besides ErrBadMetadata
	}{
		{autorefreshtest.DiscoveryWrongIssuer, autorefresh.ErrIssuerMismatch},
		{autorefreshtest.DiscoveryNoTokenEndpoint, nil},
		{autorefreshtest.DiscoveryInsecureEndpoints, autorefresh.ErrUnsafeURL},
		{autorefreshtest.DiscoveryHTML, nil},
		{autorefreshtest.DiscoveryMalformedJSON, nil},
		{autorefreshtest.DiscoveryHugeBody, nil},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			srv := newTestServer(t, autorefreshtest.Options{})
			srv.SetDiscoveryFault(tt.fault, -1) // at both addresses
			stale := srv.IssueTTL("alice", -1)
			store := autorefresh.NewMemoryStore(stale)
			tr := &autorefresh.Transport{Store: store, Refresher: &autorefresh.OAuth2{Issuer: srv.Issuer()}}
			hc := autorefresh.NewClient(nil, tr)
			_, err := hc.Get(srv.URL + "/api/me")
			var (
				re *autorefresh.RefreshError
				de *autorefresh.DiscoveryError
			)
			if !errors.As(err, &re) || !errors.As(err, &de) || !errors.Is(err, autorefresh.ErrBadMetadata) || errors.Is(err, autorefresh.ErrSessionExpired) {
				t.Fatalf("error = %v; want a *RefreshError with a *DiscoveryError wrapping ErrBadMetadata, not ErrSessionExpired", err)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("error = %v; want it to wrap %v too", err, tt.also)
			}
			if de.Issuer != srv.Issuer() || de.StatusCode != http.StatusOK {
				t.Errorf("DiscoveryError: issuer %q, status %d; want %q, 200", de.Issuer, de.StatusCode, srv.Issuer())
			}
			if st := srv.Stats(); st.RefreshCalls != 0 || st.DiscoveryFetches != 2 {
				t.Errorf("token calls %d, metadata fetches %d; want 0, 2 (both addresses)", st.RefreshCalls, st.DiscoveryFetches)
			}
			if got, _ := store.Load(t.Context()); got != stale {
				t.Error("the stored tokens changed; want them kept")
			}

			srv.ResetFaults()
			waitFor(t, "a refresh once the metadata is good", func() bool {
				_, err := hc.Get(srv.URL + "/api/me")
				return err == nil
			})
		})
	}
}

// TestDiscoveryFetchFails: metadata that cannot be fetched (503) is a
// transient failure: a *DiscoveryError with the status, not ErrBadMetadata;
// requests back off, and the first one after the server recovers
// succeeds.
func TestDiscoveryFetchFails(t *testing.T) {
	srv := ccServer(t, autorefreshtest.Options{})
	srv.FailDiscovery(-1, http.StatusServiceUnavailable)
	_, hc := ccTransport(autorefresh.NewMemoryStore(autorefresh.Tokens{}),
		&autorefresh.ClientCredentials{Issuer: srv.Issuer(), ClientID: ccID, ClientSecret: ccSecret})
	var backoffs int
	for range 10 {
		_, err := hc.Get(srv.URL + "/api/me")
		var de *autorefresh.DiscoveryError
		if !errors.As(err, &de) || de.StatusCode != http.StatusServiceUnavailable || errors.Is(err, autorefresh.ErrBadMetadata) {
			t.Fatalf("error = %v; want a *DiscoveryError with status 503, not ErrBadMetadata", err)
		}
		if errors.Is(err, autorefresh.ErrBackoff) {
			backoffs++
		}
	}
	if st := srv.Stats(); st.DiscoveryFetches >= 2*10 || backoffs == 0 {
		t.Errorf("metadata fetches %d, requests failed by the back-off %d, for 10 requests; want fewer fetches, some back-offs", st.DiscoveryFetches, backoffs)
	}
	srv.ResetFaults()
	waitFor(t, "a token once the metadata can be fetched", func() bool {
		_, err := hc.Get(srv.URL + "/api/me")
		return err == nil
	})
}

// TestDiscoveryIssuerChecks: an issuer that must not be fetched is refused
// before anything is sent, and one that the server names otherwise
// (here with a trailing slash) is a mismatch.
func TestDiscoveryIssuerChecks(t *testing.T) {
	srv := newTestServer(t, autorefreshtest.Options{})
	tests := []struct {
		name, issuer string
		want         error
		fetches      int64
	}{
		{"plain http", "http://auth.example.com", autorefresh.ErrUnsafeURL, 0},
		{"trailing slash", srv.Issuer() + "/", autorefresh.ErrIssuerMismatch, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Stats().DiscoveryFetches
			_, err := (&autorefresh.OAuth2{Issuer: tt.issuer}).Refresh(t.Context(), autorefresh.Tokens{RefreshToken: "refresh-token-1"})
			var de *autorefresh.DiscoveryError
			if !errors.Is(err, tt.want) || !errors.As(err, &de) || de.Issuer != tt.issuer {
				t.Errorf("error = %v; want a *DiscoveryError for %q wrapping %v", err, tt.issuer, tt.want)
			}
			if got := srv.Stats().DiscoveryFetches - before; got != tt.fetches {
				t.Errorf("metadata fetches = %d; want %d", got, tt.fetches)
			}
		})
	}
	for _, issuer := range []string{"https://auth.example.com?tenant=1", "https://auth.example.com#x", "https://user@auth.example.com", "ftp://auth.example.com", ""} {
		o := &autorefresh.OAuth2{Issuer: issuer, Base: failingBase(t)}
		if _, err := o.Refresh(t.Context(), autorefresh.Tokens{RefreshToken: "refresh-token-1"}); err == nil {
			t.Errorf("issuer %q: refresh succeeded; want an error", issuer)
		}
	}
}

// failingBase is a RoundTripper that fails t if it is used.
func failingBase(t *testing.T) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		t.Errorf("%s %s sent; want nothing sent", r.Method, r.URL)
		return nil, errors.New("unreachable")
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
