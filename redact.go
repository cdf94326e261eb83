package autorefresh

import (
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

const redacted = "[redacted]"

func redact(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}

// minRedacted is the length from which a secret is redacted where it
// appears in a text. A shorter one would match inside ordinary words ("a"
// in "invalid_request"): a text that holds one is dropped instead.
const minRedacted = 8

// sanitize makes s, a text from a server, safe to show: every occurrence of
// the non-empty secrets, raw or URL-encoded (as a query or form value or as
// a path), is redacted; control characters become spaces; and the result
// is cut to at most limit bytes; its percent escapes come out in lower case.
// If s holds a secret shorter than
// minRedacted in any of those forms, sanitize returns "": such a secret
// cannot be redacted without mangling the text, and must not be shown.
func sanitize(s string, limit int, secrets []string) string {
	// Escapes are compared in lower case: some encoders write "%2b".
	s = lowerHex(s)
	var forms []string
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		for _, f := range []string{sec, lowerHex(url.QueryEscape(sec)), lowerHex(url.PathEscape(sec))} {
			if len(sec) < minRedacted {
				if strings.Contains(s, f) {
					return ""
				}
				continue
			}
			forms = append(forms, f)
		}
	}
	if len(forms) > 0 {
		// One pass, longest form first, so that no secret is looked for
		// inside another or inside "[redacted]".
		slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
		forms = slices.Compact(forms)
		pairs := make([]string, 0, 2*len(forms))
		for _, f := range forms {
			pairs = append(pairs, f, redacted)
		}
		s = strings.NewReplacer(pairs...).Replace(s)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		cut := limit - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// lowerHex returns s, a percent-encoded string, with the hexadecimal digits
// of its escapes in lower case, as some encoders write them ("%2b").
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for j := i + 1; j <= i+2; j++ {
				if 'A' <= b[j] && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
		}
	}
	return string(b)
}

// sanitizeCode is sanitize for an error code: a short secret inside it is
// left alone (codes are registered words such as "invalid_request", which
// redacting would mangle), unless the whole code is that secret.
func sanitizeCode(code string, limit int, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" && len(sec) < minRedacted && code == sec {
			return redacted
		}
	}
	long := slices.DeleteFunc(slices.Clone(secrets), func(sec string) bool { return len(sec) < minRedacted })
	return sanitize(code, limit, long)
}
