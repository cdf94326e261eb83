package interop

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/autorefresh/autorefresh"
)

// Revocation on logout (RFC 7009) through the library against
// oidc-provider, whose revocation of a refresh token revokes its whole
// grant (revokeGrantPolicy's default), access tokens included.

// TestRevocationOnLogout: Logout revokes at the server, with one call per
// token, and clears the token file; a failed revocation is reported and
// the file is cleared all the same.
func TestRevocationOnLogout(t *testing.T) {
	tests := []struct {
		name      string
		c         client
		refresher func(c client) *autorefresh.OAuth2
		calls     int
	}{
		{name: "refresh token", c: refreshBasic, calls: 1, refresher: func(c client) *autorefresh.OAuth2 {
			o := c.oauth2()
			o.RevocationURL = srv.url("/token/revocation")
			return o
		}},
		{name: "discovered, access token too", c: refreshPost, calls: 2, refresher: func(c client) *autorefresh.OAuth2 {
			o := c.oauth2()
			o.TokenURL, o.Issuer, o.RevokeAccessToken = "", srv.Issuer, true
			return o
		}},
		{name: "public client", c: refreshPublic, calls: 1, refresher: func(c client) *autorefresh.OAuth2 {
			o := c.oauth2()
			o.Issuer = srv.Issuer
			return o
		}},
		{name: "private_key_jwt", c: pkjwt, calls: 1, refresher: func(c client) *autorefresh.OAuth2 {
			o := c.oauth2()
			o.Issuer = srv.Issuer
			return o
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			tok := login(t, tt.c, nil)
			tr, hc := transportWith(t, autorefresh.NewFileStore(path), tt.refresher(tt.c))
			if err := tr.SetTokens(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			me(t, hc)
			before := getStats(t)
			if err := tr.Logout(t.Context()); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			wantRevoked(t, getStats(t).since(before), tt.c, tok, tt.calls)
			if _, err := autorefresh.NewFileStore(path).Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
				t.Errorf("token file after Logout: %v; want ErrNoTokens", err)
			}
		})
	}
}

// TestRevocationFailsOnLogout: a failed revocation is reported by Logout,
// and the token file is cleared all the same.
func TestRevocationFailsOnLogout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok := login(t, refreshBasic, nil)
	o := refreshBasic.oauth2()
	o.RevocationURL = srv.url("/token/no-such-endpoint")
	tr, _ := transportWith(t, autorefresh.NewFileStore(path), o)
	if err := tr.SetTokens(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	err := tr.Logout(t.Context())
	var re *autorefresh.RevocationError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.TokenTypeHint != "refresh_token" {
		t.Fatalf("Logout: %v; want a *RevocationError of the refresh token with status 404", err)
	}
	if _, err := autorefresh.NewFileStore(path).Load(t.Context()); !errors.Is(err, autorefresh.ErrNoTokens) {
		t.Errorf("token file after a failed revocation: %v; want ErrNoTokens (cleared all the same)", err)
	}
	// Not revoked: the server still takes the refresh token.
	if status, a := refreshGrant(t, refreshBasic, tok.RefreshToken, nil); status != http.StatusOK {
		t.Errorf("refresh after the failed revocation: got %d %q; want 200", status, a.Error)
	}
}

// TestClientCredentialsRevocationOnLogout: a ClientCredentials revokes its
// access token on Logout.
func TestClientCredentialsRevocationOnLogout(t *testing.T) {
	cc := ccBasic.credentials()
	cc.RevocationURL = srv.url("/token/revocation")
	tr, hc := transportWith(t, autorefresh.NewMemoryStore(autorefresh.Tokens{}), cc)
	resource(t, hc)
	tok, err := tr.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := getStats(t)
	if err := tr.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if got := getStats(t).since(before).Routes["revocation"]["200"]; got != 1 {
		t.Errorf("server: revocations answered 200 = %d; want 1", got)
	}
	if status, _ := callAPI(t, srv.Resource, "Bearer", tok.AccessToken, nil); status != http.StatusUnauthorized {
		t.Errorf("resource server with the revoked token: got %d; want 401", status)
	}
}

// wantRevoked fails t unless d holds calls successful revocations, that
// revoked the grant of tok: neither its refresh nor its access token works.
func wantRevoked(t *testing.T, d stats, c client, tok autorefresh.Tokens, calls int) {
	t.Helper()
	if got := d.Routes["revocation"]["200"]; got != calls {
		t.Errorf("server: revocations answered 200 = %d; want %d", got, calls)
	}
	if d.GrantsRevoked != 1 {
		t.Errorf("server: grants revoked = %d; want 1", d.GrantsRevoked)
	}
	if status, a := refreshGrant(t, c, tok.RefreshToken, nil); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Errorf("refresh with the revoked refresh token: got %d %q; want 400 invalid_grant", status, a.Error)
	}
	if got := meStatus(t, tok.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("/me with the access token after Logout: got %d; want 401", got)
	}
}
