package autorefresh

import (
	"strings"
	"testing"
)

// TestSanitizeLowercasePercentEncoding: percent-encoding is
// case-insensitive (RFC 3986 section 2.1), and servers do write it in
// lowercase (.NET's HttpUtility.UrlEncode does: "Ab%2bcD%2fef%3d%3d"). An
// error_description that echoes the form-encoded refresh token that way
// gets through the redaction, which only looks for the uppercase forms that
// url.QueryEscape and url.PathEscape make. Issue 10 item 4: redact the raw,
// URL-encoded and form-encoded forms.
func TestSanitizeLowercasePercentEncoding(t *testing.T) {
	const secret = "Ab+cD/ef=="
	for _, in := range []string{
		"refresh_token Ab%2bcD%2fef%3d%3d is spent",   // form-encoded, lowercase hex
		"refresh_token Ab%2BcD%2fef%3D%3d is spent",   // mixed
		"refresh_token Ab%2bcD%2Fef%3d%3D is spent",   // mixed
		"path /tokens/Ab+cD%2fef==/revoke is unknown", // path-encoded, lowercase hex
	} {
		got := sanitize(in, 256, []string{secret})
		if strings.Contains(strings.ToLower(got), "ab%2bcd%2fef") || strings.Contains(strings.ToLower(got), "ab+cd%2fef") {
			t.Errorf("sanitize(%q) = %q; want the encoded refresh token redacted", in, got)
		}
	}
}
