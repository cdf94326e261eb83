package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// dpopKeyFile is the name of the DPoP key file, kept beside the token file.
const dpopKeyFile = "dpop-key.pem"

// dpopMode is the demo with -dpop: an OAuth 2.0 session whose tokens are
// bound to a key (DPoP, RFC 9449). The key is kept in a file beside the
// token file, since the refresh token works only with it.
type dpopMode struct {
	key      crypto.Signer
	dpop     *autorefresh.DPoP // of the login and the refresher, which share its nonces
	keyPath  string
	created  bool   // this run created the key file
	tmpDir   string // holds the key file without -store; removed by close
	tokenURL string
	base     http.RoundTripper
}

// newDPoPMode loads the key kept beside the token file store, or creates
// it there; without a store, in a temporary directory. serverURL is the
// test server's, base sends the login.
func newDPoPMode(store, serverURL string, base http.RoundTripper) (*dpopMode, error) {
	m := &dpopMode{tokenURL: serverURL + "/oauth/token", base: base}
	dir := filepath.Dir(store)
	if store == "" {
		var err error
		if dir, err = os.MkdirTemp("", "autorefresh-demo-"); err != nil {
			return nil, err
		}
		m.tmpDir = dir
	}
	m.keyPath = filepath.Join(dir, dpopKeyFile)
	_, err := os.Lstat(m.keyPath)
	m.created = errors.Is(err, fs.ErrNotExist)
	if m.key, err = autorefresh.LoadOrCreateKey(m.keyPath); err != nil {
		m.close()
		return nil, err
	}
	m.dpop = &autorefresh.DPoP{Key: m.key}
	return m, nil
}

// close removes the temporary key file, if any.
func (m *dpopMode) close() {
	if m.tmpDir != "" {
		os.RemoveAll(m.tmpDir)
	}
}

// refresher returns the refresher of the session: OAuth2 with the key, which
// the Transport uses for its requests' proofs too.
func (m *dpopMode) refresher() *autorefresh.OAuth2 {
	return &autorefresh.OAuth2{TokenURL: m.tokenURL, Base: m.base, DPoP: m.dpop}
}

// String describes the key file.
func (m *dpopMode) String() string {
	how := "loaded"
	if m.created {
		how = "created"
	}
	if m.tmpDir != "" {
		how += ", removed at the end"
	}
	return fmt.Sprintf("DPoP: tokens bound to the key in %s (%s)", m.keyPath, how)
}

// tokenAnswer is the JSON answer of the token endpoint.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Error        string `json:"error"`
}

// login starts a session bound to the key: a password grant (RFC 6749
// section 4.3) sent through the DPoP's TokenTransport, which adds the proof
// and answers the server's nonce round, and whose tokens go to tr. The
// login is the application's part, as Transport.Login is for the header
// protocol; every proof after it is the library's.
func (m *dpopMode) login(ctx context.Context, tr *autorefresh.Transport) error {
	form := url.Values{
		"grant_type": {"password"},
		"username":   {autorefreshtest.DefaultUser},
		"password":   {autorefreshtest.DefaultPassword},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := m.dpop.TokenTransport(m.base).RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return fmt.Errorf("login: the token endpoint answered %s with malformed JSON", resp.Status)
	}
	switch {
	case a.Error != "" || a.AccessToken == "":
		return fmt.Errorf("login: the token endpoint answered error %q", a.Error)
	case !strings.EqualFold(a.TokenType, "DPoP"):
		return fmt.Errorf("login: the token endpoint issued a %q token; want DPoP", a.TokenType)
	}
	tok := autorefresh.Tokens{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, TokenType: a.TokenType}
	if a.ExpiresIn > 0 {
		tok.Expiry = time.Now().Add(time.Duration(a.ExpiresIn) * time.Second)
	}
	return tr.SetTokens(ctx, tok)
}
