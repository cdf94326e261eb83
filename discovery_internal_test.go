package autorefresh

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

func TestMetadataURLs(t *testing.T) {
	tests := []struct {
		issuer     string
		oauth, oid string
	}{
		{"https://auth.example.com", "https://auth.example.com/.well-known/oauth-authorization-server",
			"https://auth.example.com/.well-known/openid-configuration"},
		{"https://auth.example.com/", "https://auth.example.com/.well-known/oauth-authorization-server",
			"https://auth.example.com/.well-known/openid-configuration"},
		// RFC 8414 section 3.1: the well-known path goes between the host
		// and the issuer's path; OpenID Connect Discovery appends it.
		{"https://auth.example.com/tenant1", "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
			"https://auth.example.com/tenant1/.well-known/openid-configuration"},
		{"https://auth.example.com:8443/realms/a%2Fb/", "https://auth.example.com:8443/.well-known/oauth-authorization-server/realms/a%2Fb",
			"https://auth.example.com:8443/realms/a%2Fb/.well-known/openid-configuration"},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080/.well-known/oauth-authorization-server/x",
			"http://127.0.0.1:8080/x/.well-known/openid-configuration"},
	}
	for _, tt := range tests {
		got, err := metadataURLs(tt.issuer, false)
		if err != nil || got != [2]string{tt.oauth, tt.oid} {
			t.Errorf("metadataURLs(%q) = %q, %v; want [%q %q]", tt.issuer, got, err, tt.oauth, tt.oid)
		}
	}
	for _, issuer := range []string{"http://auth.example.com", "https://auth.example.com?x=1", "https://auth.example.com?",
		"https://auth.example.com/#f", "https://u:p@auth.example.com", "https:///path", "mailto:a@example.com", "::"} {
		if got, err := metadataURLs(issuer, false); err == nil {
			t.Errorf("metadataURLs(%q) = %q; want an error", issuer, got)
		}
	}
	if _, err := metadataURLs("http://auth.example.com", true); err != nil {
		t.Errorf("metadataURLs of an http issuer with allowHTTP: %v; want no error", err)
	}
}

func TestParseMetadata(t *testing.T) {
	const iss = "https://auth.example.com"
	tests := []struct {
		name, ct, body string
		want           *metadata
		err            error // wrapped besides ErrBadMetadata
	}{
		{name: "good", ct: "application/json", body: `{"issuer":"https://auth.example.com","token_endpoint":"https://auth.example.com/token","revocation_endpoint":"https://auth.example.com/revoke","jwks_uri":"x"}`,
			want: &metadata{"https://auth.example.com/token", "https://auth.example.com/revoke"}},
		{name: "no revocation", body: "\ufeff" + `{"issuer":"https://auth.example.com","token_endpoint":"https://other.example.com/t"}`,
			want: &metadata{"https://other.example.com/t", ""}},
		{name: "wrong issuer", body: `{"issuer":"https://evil.example.com","token_endpoint":"https://auth.example.com/token"}`, err: ErrIssuerMismatch},
		{name: "issuer with slash", body: `{"issuer":"https://auth.example.com/","token_endpoint":"https://auth.example.com/token"}`, err: ErrIssuerMismatch},
		{name: "no issuer", body: `{"token_endpoint":"https://auth.example.com/token"}`, err: ErrIssuerMismatch},
		{name: "no token endpoint", body: `{"issuer":"https://auth.example.com"}`},
		{name: "http token endpoint", body: `{"issuer":"https://auth.example.com","token_endpoint":"http://auth.example.com/token"}`, err: ErrUnsafeURL},
		{name: "http revocation endpoint", body: `{"issuer":"https://auth.example.com","token_endpoint":"https://auth.example.com/token","revocation_endpoint":"http://auth.example.com/r"}`, err: ErrUnsafeURL},
		{name: "relative endpoint", body: `{"issuer":"https://auth.example.com","token_endpoint":"/token"}`},
		{name: "other scheme", body: `{"issuer":"https://auth.example.com","token_endpoint":"ftp://auth.example.com/token"}`},
		{name: "HTML", ct: "text/html; charset=utf-8", body: `<!doctype html><title>Sign in</title>`},
		{name: "HTML as JSON", ct: "application/json", body: "\n  <html></html>"},
		{name: "truncated", body: `{"issuer":"https://auth.example.com","token_endpoint":`},
		{name: "wrong type", body: `{"issuer":42}`},
		{name: "array", body: `[]`},
		{name: "null", body: `null`},
		{name: "empty", body: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetadata(tt.ct, []byte(tt.body), iss, false)
			if tt.want != nil {
				if err != nil || *got != *tt.want {
					t.Errorf("got %+v, %v; want %+v", got, err, *tt.want)
				}
				return
			}
			if !errors.Is(err, ErrBadMetadata) || tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("error = %v; want one wrapping ErrBadMetadata and %v", err, tt.err)
			}
			if err != nil && strings.Count(err.Error(), "autorefresh: ") != 1 {
				t.Errorf("error %q; want one package prefix", err)
			}
		})
	}
}

// TestMetadataCache: one fetch is shared, a waiter leaves on its context,
// and a failure is not kept.
func TestMetadataCache(t *testing.T) {
	var c metadataCache
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	fetch := func(context.Context) (*metadata, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return nil, errors.New("down")
		}
		return &metadata{tokenEndpoint: "https://auth.example.com/token"}, nil
	}
	first := make(chan error, 1)
	go func() {
		_, err := c.get(context.Background(), "i", fetch)
		first <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.get(ctx, "i", fetch); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a cancelled context: %v; want context.Canceled", err)
	}
	close(release)
	if err := <-first; err == nil {
		t.Error("first fetch: no error; want the fetch's")
	}
	for range 3 {
		if m, err := c.get(context.Background(), "i", fetch); err != nil || m.tokenEndpoint == "" {
			t.Errorf("get after a failure = %+v, %v; want the metadata", m, err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("fetches = %d; want 2 (the failure, then one kept)", n)
	}
}

func FuzzParseMetadata(f *testing.F) {
	for _, s := range []string{
		`{"issuer":"https://a.example","token_endpoint":"https://a.example/t","revocation_endpoint":"https://a.example/r"}`,
		`{"issuer":"https://a.example","token_endpoint":"http://a.example/t"}`,
		`{"issuer":"https://a.example","token_endpoint":"https://\u0000"}`,
		`{"issuer":"https://a.example\n","token_endpoint":"https://a.example/t"}`,
		`<html>`, `null`, `{"issuer":`, ``,
	} {
		f.Add("application/json", s)
	}
	f.Fuzz(func(t *testing.T, ct, body string) {
		m, err := parseMetadata(ct, []byte(body), "https://a.example", false)
		if err != nil {
			if m != nil || !errors.Is(err, ErrBadMetadata) {
				t.Errorf("got %+v, %v; want nil and an error wrapping ErrBadMetadata", m, err)
			}
			return
		}
		for _, ep := range []string{m.tokenEndpoint, m.revocationEndpoint} {
			if ep != "" && checkEndpoint(ep, false) != nil {
				t.Errorf("endpoint %q accepted; want it refused", ep)
			}
		}
		if m.tokenEndpoint == "" {
			t.Error("no token endpoint accepted")
		}
	})
}
