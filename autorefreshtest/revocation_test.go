package autorefreshtest_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// revoke posts form to the revocation endpoint.
func revoke(t *testing.T, srv *autorefreshtest.Server, header http.Header, form url.Values) response {
	t.Helper()
	if header == nil {
		header = formHeader
	}
	return do(t, srv, "POST", "/oauth/revoke", header, form.Encode())
}

func TestRevocation(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	a, b := srv.Issue("alice"), srv.Issue("bob")
	bNext := tokensOf(t, refresh(t, srv, b)) // b's refresh token is spent

	// Revoking a refresh token ends its session.
	if r := revoke(t, srv, nil, url.Values{"token": {a.RefreshToken}, "token_type_hint": {"refresh_token"}}); r.status != 200 || len(r.body) != 0 {
		t.Fatalf("revoking a refresh token: %d %q; want 200 and no body", r.status, r.body)
	}
	if got := api(t, srv, a.AccessToken); got != 403 {
		t.Errorf("API with the session's access token: %d; want 403", got)
	}
	if r := refresh(t, srv, a); r.status != 401 {
		t.Errorf("refresh with the revoked token: %d; want 401", r.status)
	}

	// Revoking an access token refuses it, and only it. The hint is only
	// a hint.
	if r := revoke(t, srv, nil, url.Values{"token": {bNext.AccessToken}, "token_type_hint": {"refresh_token"}}); r.status != 200 {
		t.Fatalf("revoking an access token: %d; want 200", r.status)
	}
	if got := api(t, srv, bNext.AccessToken); got != 403 {
		t.Errorf("API with the revoked access token: %d; want 403", got)
	}
	bLast := tokensOf(t, refresh(t, srv, bNext))
	if got := api(t, srv, bLast.AccessToken); got != 200 {
		t.Errorf("API with the session's next access token: %d; want 200", got)
	}

	checkDeadTokenRevocations(t, srv, []string{"unknown", b.RefreshToken, a.RefreshToken, bNext.AccessToken}, bLast.AccessToken)
	st := srv.Stats()
	if st.RevocationCalls != 7 || st.Revocations != 1 || st.RevokedAccessTokens != 1 || st.RevocationFaults != 0 {
		t.Errorf("RevocationCalls, Revocations, RevokedAccessTokens, RevocationFaults = %d, %d, %d, %d; want 7, 1, 1, 0",
			st.RevocationCalls, st.Revocations, st.RevokedAccessTokens, st.RevocationFaults)
	}
}

// checkDeadTokenRevocations revokes unknown, spent and already revoked
// tokens, which are answered 200 and leave the session of live alone, and
// sends a request without a token.
func checkDeadTokenRevocations(t *testing.T, srv *autorefreshtest.Server, dead []string, live string) {
	t.Helper()
	// Unknown, spent and already revoked tokens are answered 200 too.
	for _, tok := range dead {
		if r := revoke(t, srv, nil, url.Values{"token": {tok}, "token_type_hint": {"bogus"}}); r.status != 200 {
			t.Errorf("revoking an unknown or dead token: %d; want 200", r.status)
		}
	}
	if got := api(t, srv, live); got != 200 {
		t.Errorf("revoking a spent refresh token ended the session: API %d; want 200", got)
	}
	if r := revoke(t, srv, nil, url.Values{}); r.status != 400 || r.json(t)["error"] != "invalid_request" {
		t.Errorf("no token: %d %s; want 400 invalid_request", r.status, r.body)
	}
}

func TestRevocationClientAuth(t *testing.T) {
	k := newKey(t, "ES256")
	srv := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{
		{ID: "app", Secret: "s3cret"}, {ID: "other", Secret: "x"}, {ID: "signer", Key: k.public()}, {ID: "spa"},
	}})
	login := func(id, secret string) string {
		t.Helper()
		form := cloneValues(passwordGrant)
		form.Set("client_id", id)
		if secret != "" {
			form.Set("client_secret", secret)
		}
		r := postToken(t, srv, form, "")
		rt, _ := r.json(t)["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("login of %s: %d %s", id, r.status, r.body)
		}
		return rt
	}
	rt := login("app", "s3cret")
	if r := revoke(t, srv, nil, url.Values{"token": {rt}}); r.status != 401 || r.json(t)["error"] != "invalid_client" {
		t.Errorf("no client authentication: %d %s; want 401 invalid_client", r.status, r.body)
	}
	if r := revoke(t, srv, basicHeader("app", "nope"), url.Values{"token": {rt}}); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("wrong secret: %d %q; want 401 with a challenge", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := revoke(t, srv, basicHeader("other", "x"), url.Values{"token": {rt}}); r.status != 400 || r.json(t)["error"] != "unauthorized_client" {
		t.Errorf("another client: %d %s; want 400 unauthorized_client", r.status, r.body)
	}
	if r := revoke(t, srv, basicHeader("app", "s3cret"), url.Values{"token": {rt}}); r.status != 200 {
		t.Errorf("the client: %d %s; want 200", r.status, r.body)
	}
	// private_key_jwt, with the revocation endpoint as audience.
	rt = login("spa", "")
	srv2 := setup(t, autorefreshtest.Options{Clients: []autorefreshtest.Client{{ID: "signer", Key: k.public()}}})
	form := withAssertion(url.Values{"token": {"x"}}, k.assertion(t, "signer", srv2.URL+"/oauth/revoke", nil))
	if r := revoke(t, srv2, nil, form); r.status != 200 {
		t.Errorf("private_key_jwt: %d %s; want 200", r.status, r.body)
	}
	// A public client names itself.
	if r := revoke(t, srv, nil, url.Values{"token": {rt}, "client_id": {"spa"}}); r.status != 200 {
		t.Errorf("public client: %d %s; want 200", r.status, r.body)
	}
	if st := srv.Stats(); st.Revocations != 2 || st.ClientAuthFailures != 2 {
		t.Errorf("Revocations, ClientAuthFailures = %d, %d; want 2, 2", st.Revocations, st.ClientAuthFailures)
	}
}

func TestFailRevocation(t *testing.T) {
	srv := setup(t, autorefreshtest.Options{})
	tok := srv.Issue("alice")
	srv.FailRevocation(2, http.StatusServiceUnavailable)
	for i := range 2 {
		if r := revoke(t, srv, nil, url.Values{"token": {tok.RefreshToken}}); r.status != 503 {
			t.Errorf("revocation %d: %d; want 503", i, r.status)
		}
	}
	if got := api(t, srv, tok.AccessToken); got != 200 {
		t.Errorf("a failed revocation ended the session: API %d; want 200", got)
	}
	if r := revoke(t, srv, nil, url.Values{"token": {tok.RefreshToken}}); r.status != 200 {
		t.Errorf("third revocation: %d; want 200", r.status)
	}
	if st := srv.Stats(); st.RevocationCalls != 3 || st.RevocationFaults != 2 || st.Revocations != 1 {
		t.Errorf("RevocationCalls, RevocationFaults, Revocations = %d, %d, %d; want 3, 2, 1",
			st.RevocationCalls, st.RevocationFaults, st.Revocations)
	}
}
