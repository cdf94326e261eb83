package interop

import (
	"testing"

	"github.com/autorefresh/autorefresh"
)

// private_key_jwt client authentication (RFC 7523 section 2.2, OpenID
// Connect Core section 9) through the library against oidc-provider, which
// verifies the assertions with the client's registered public key and
// accepts a jti once: every token request that succeeds carried a new
// assertion. (TestClientCredentials and TestRevocationOnLogout run the
// client "pkjwt" too.)

// TestPrivateKeyJWT: an OAuth2 signing with the client's key (a
// crypto.Signer) refreshes through a Transport, with the assertion's
// audience the token endpoint (the default) or the issuer.
func TestPrivateKeyJWT(t *testing.T) {
	for _, aud := range []string{"", "issuer"} {
		name := "audience token endpoint"
		if aud != "" {
			name = "audience issuer"
		}
		t.Run(name, func(t *testing.T) {
			o := pkjwt.oauth2()
			if aud != "" {
				o.AssertionAudience = srv.Issuer
			}
			tok := login(t, pkjwt, nil)
			tr, hc := transportWith(t, autorefresh.NewMemoryStore(tok), o)
			me(t, hc)
			before := getStats(t)
			const rounds = 3
			for range rounds {
				revokeAccessOf(t, hc, pkjwt) // refused: refresh, replay
				me(t, hc)
			}
			d := getStats(t).since(before)
			if got := d.grant(pkjwt, "refresh_token", "ok"); got != rounds {
				t.Errorf("server: refresh_token grants = %d; want %d", got, rounds)
			}
			if got := d.failedGrants(pkjwt, "refresh_token"); got != 0 {
				t.Errorf("server: failed refresh_token grants = %d (%v); want 0", got, d.Grants[pkjwt.ID]["refresh_token"])
			}
			if s := tr.Stats(); s.Refreshes != rounds || s.Replays != rounds {
				t.Errorf("Stats: refreshes %d, replays %d; want %d, %d", s.Refreshes, s.Replays, rounds, rounds)
			}
		})
	}
}
