package interop

import (
	"errors"
	"net/http"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// Discovery (RFC 8414, OpenID Connect Discovery) through the library
// against oidc-provider. oidc-provider 8 serves only
// /.well-known/openid-configuration: the RFC 8414 address answers 404, so
// the library goes through its fallback.

// TestDiscovery: an OAuth2 and a ClientCredentials given only the issuer
// find the token endpoint (through the fallback) with one fetch each, and
// refresh and get tokens there; a wrong issuer is refused.
func TestDiscovery(t *testing.T) {
	t.Run("refresh", func(t *testing.T) {
		tok := login(t, refreshBasic, nil)
		o := &autorefresh.OAuth2{Issuer: srv.Issuer, ClientID: refreshBasic.ID, ClientSecret: refreshBasic.Secret}
		_, hc := transportWith(t, autorefresh.NewMemoryStore(tok), o)
		before := getStats(t)
		for range 3 {
			revokeAccessOf(t, hc, refreshBasic) // refused: refresh, replay
			me(t, hc)
		}
		d := getStats(t).since(before)
		if got := d.grant(refreshBasic, "refresh_token", "ok"); got != 3 {
			t.Errorf("server: refresh_token grants = %d; want 3", got)
		}
		if got := d.Routes["discovery"]["200"]; got != 1 {
			t.Errorf("server: discovery documents served = %d; want 1 (fetched once)", got)
		}
	})
	t.Run("client credentials", func(t *testing.T) {
		cc := &autorefresh.ClientCredentials{Issuer: srv.Issuer, ClientID: ccPost.ID, ClientSecret: ccPost.Secret,
			AuthStyle: autorefresh.AuthStyleInParams, Resources: []string{srv.Resource}}
		_, hc := transportWith(t, autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
		before := getStats(t)
		resource(t, hc)
		d := getStats(t).since(before)
		if d.grant(ccPost, "client_credentials", "ok") != 1 || d.Routes["discovery"]["200"] != 1 {
			t.Errorf("server: client_credentials grants %d, discovery documents %d; want 1, 1",
				d.grant(ccPost, "client_credentials", "ok"), d.Routes["discovery"]["200"])
		}
	})
	t.Run("wrong issuer", func(t *testing.T) {
		// The document names the issuer without the trailing slash: not
		// the same identifier (RFC 8414 section 3.3).
		o := &autorefresh.OAuth2{Issuer: srv.Issuer + "/", ClientID: refreshBasic.ID, ClientSecret: refreshBasic.Secret}
		_, err := o.Refresh(t.Context(), autorefresh.Tokens{RefreshToken: "refresh-token-1"})
		var de *autorefresh.DiscoveryError
		if !errors.Is(err, autorefresh.ErrIssuerMismatch) || !errors.As(err, &de) || de.StatusCode != http.StatusOK {
			t.Errorf("error = %v; want a *DiscoveryError wrapping ErrIssuerMismatch", err)
		}
	})
}

// revokeAccessOf revokes the access token that hc's Transport holds, as
// c, so that the next request is refused.
func revokeAccessOf(t *testing.T, hc *http.Client, c client) {
	t.Helper()
	tr := hc.Transport.(*autorefresh.Transport)
	tok, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, c, tok.AccessToken, "access_token")
}
