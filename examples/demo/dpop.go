package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
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
	"github.com/golang-jwt/jwt/v5"
)

// dpopKeyFile is the name of the DPoP key file, kept beside the token file.
const dpopKeyFile = "dpop-key.pem"

// dpopMode is the demo with -dpop: an OAuth 2.0 session whose tokens are
// bound to a key (DPoP, RFC 9449). The key is kept in a file beside the
// token file, since the refresh token works only with it.
type dpopMode struct {
	key      crypto.Signer
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
	return &autorefresh.OAuth2{TokenURL: m.tokenURL, Base: m.base, DPoP: &autorefresh.DPoP{Key: m.key}}
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
// section 4.3) with a DPoP proof, sent once more with the nonce that the
// server asks for, whose tokens go to tr. The login is the application's
// part, as Transport.Login is for the header protocol; every proof after it
// is the library's.
func (m *dpopMode) login(ctx context.Context, tr *autorefresh.Transport) error {
	form := url.Values{
		"grant_type": {"password"},
		"username":   {autorefreshtest.DefaultUser},
		"password":   {autorefreshtest.DefaultPassword},
	}
	nonce := ""
	for {
		sent := time.Now()
		a, next, err := m.grant(ctx, form, nonce)
		switch {
		case err != nil:
			return err
		case a.Error == "use_dpop_nonce" && nonce == "" && next != "":
			nonce = next
			continue
		case a.Error != "" || a.AccessToken == "":
			return fmt.Errorf("login: the token endpoint answered error %q", a.Error)
		case !strings.EqualFold(a.TokenType, "DPoP"):
			return fmt.Errorf("login: the token endpoint issued a %q token; want DPoP", a.TokenType)
		}
		tok := autorefresh.Tokens{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, TokenType: a.TokenType}
		if a.ExpiresIn > 0 {
			tok.Expiry = sent.Add(time.Duration(a.ExpiresIn) * time.Second)
		}
		return tr.SetTokens(ctx, tok)
	}
}

// grant POSTs form to the token endpoint with a proof carrying nonce, and
// returns the answer and the nonce that the server gave (DPoP-Nonce).
func (m *dpopMode) grant(ctx context.Context, form url.Values, nonce string) (tokenAnswer, string, error) {
	var a tokenAnswer
	proof, err := tokenProof(m.key, m.tokenURL, nonce)
	if err != nil {
		return a, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return a, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("DPoP", proof)
	resp, err := m.base.RoundTrip(req)
	if err != nil {
		return a, "", err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return a, "", fmt.Errorf("login: the token endpoint answered %s with malformed JSON", resp.Status)
	}
	return a, resp.Header.Get("DPoP-Nonce"), nil
}

// tokenProof returns a DPoP proof (RFC 9449 section 4.2) of key for a token
// request to tokenURL: ES256, with the public key as a JWK, and the nonce
// when not empty. The library makes the proofs of every request after the
// login; this one is the demo's, made with golang-jwt. key must be an ECDSA
// P-256 key, as LoadOrCreateKey creates.
func tokenProof(key crypto.Signer, tokenURL, nonce string) (string, error) {
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return "", fmt.Errorf("login: the DPoP key is a %T; the demo signs its login with an ECDSA P-256 key", key)
	}
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		return "", err
	}
	b, enc := pub.Bytes(), base64.RawURLEncoding.EncodeToString // 0x04 || X || Y
	claims := jwt.MapClaims{"jti": rand.Text(), "htm": http.MethodPost, "htu": tokenURL, "iat": time.Now().Unix()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = map[string]string{"kty": "EC", "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	return tok.SignedString(k)
}
