package autorefresh

import (
	"strings"
)

// Challenge is one authentication challenge of a WWW-Authenticate or
// Proxy-Authenticate header (RFC 9110 section 11.6.1), such as
//
//	Bearer realm="example", error="invalid_token"
type Challenge struct {
	// Scheme is the authentication scheme as sent, such as "Bearer".
	// Schemes are case-insensitive: compare with strings.EqualFold.
	Scheme string

	// Token68 is the challenge's token68 form, as in "Negotiate
	// YIIBzgYGKwYB", or empty when the challenge has parameters instead.
	Token68 string

	// Params are the challenge's auth-params, keyed by their lowercased
	// names, with quoted values unquoted. A name given more than once
	// keeps its first value. Params is nil when there are none.
	Params map[string]string
}

// Param returns the value of the auth-param name (case-insensitive), or ""
// when c has no such parameter.
func (c Challenge) Param(name string) string {
	return c.Params[strings.ToLower(name)]
}

// ParseChallenges parses the values of a WWW-Authenticate (or
// Proxy-Authenticate) header, as returned by
// resp.Header.Values("WWW-Authenticate"), into their challenges in order.
// A value may hold several challenges, and a challenge may not span two
// values.
//
// ParseChallenges is lenient: it never fails, skips what it cannot parse
// up to the next challenge, and accepts unbalanced quotes, empty values and
// stray commas.
func ParseChallenges(values []string) []Challenge {
	var cs []Challenge
	for _, v := range values {
		p := challengeParser{s: v}
		cs = p.parse(cs)
	}
	return cs
}

type challengeParser struct {
	s   string
	pos int
}

func (p *challengeParser) parse(cs []Challenge) []Challenge {
	for {
		p.skipListSeparators()
		if p.pos >= len(p.s) {
			return cs
		}
		scheme := p.token()
		if scheme == "" {
			p.skipPastComma() // not a challenge: drop up to the next one
			continue
		}
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == '=' {
			p.skipPastComma() // an auth-param without a scheme
			continue
		}
		c := Challenge{Scheme: scheme}
		if t68, ok := p.token68(); ok {
			c.Token68 = t68
		} else {
			p.params(&c)
		}
		cs = append(cs, c)
	}
}

// token68 reads a token68 if one is next and nothing but the end of the
// challenge follows it.
func (p *challengeParser) token68() (string, bool) {
	start, i := p.pos, p.pos
	for i < len(p.s) && isToken68Char(p.s[i]) {
		i++
	}
	if i == start {
		return "", false
	}
	for i < len(p.s) && p.s[i] == '=' {
		i++
	}
	end := i
	for i < len(p.s) && isSpace(p.s[i]) {
		i++
	}
	if i < len(p.s) && p.s[i] != ',' {
		return "", false // an auth-param such as realm="x" or a=b
	}
	p.pos = i
	return p.s[start:end], true
}

// params reads the auth-params of c up to the start of the next challenge
// or the end of the value.
func (p *challengeParser) params(c *Challenge) {
	for {
		p.skipListSeparators()
		if p.pos >= len(p.s) {
			return
		}
		save := p.pos
		name := p.token()
		if name == "" {
			p.skipPastComma()
			continue
		}
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != '=' {
			p.pos = save // the scheme of the next challenge
			return
		}
		p.pos++ // '='
		p.skipSpace()
		var value string
		if p.pos < len(p.s) && p.s[p.pos] == '"' {
			value = p.quoted()
		} else {
			value = p.token()
		}
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] != ',' {
			p.skipPastComma() // junk after the value
		}
		if c.Params == nil {
			c.Params = make(map[string]string)
		}
		name = strings.ToLower(name)
		if _, dup := c.Params[name]; !dup {
			c.Params[name] = value
		}
	}
}

// quoted reads a quoted-string starting at p.pos and returns it unquoted.
// An unterminated string runs to the end of the value.
func (p *challengeParser) quoted() string {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		ch := p.s[p.pos]
		p.pos++
		switch {
		case ch == '"':
			return b.String()
		case ch == '\\' && p.pos < len(p.s):
			b.WriteByte(p.s[p.pos])
			p.pos++
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

func (p *challengeParser) token() string {
	start := p.pos
	for p.pos < len(p.s) && isTokenChar(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

func (p *challengeParser) skipSpace() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

func (p *challengeParser) skipListSeparators() {
	for p.pos < len(p.s) && (isSpace(p.s[p.pos]) || p.s[p.pos] == ',') {
		p.pos++
	}
}

// skipPastComma skips to just after the next comma outside a quoted
// string, or to the end.
func (p *challengeParser) skipPastComma() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case '"':
			p.quoted()
			continue
		case ',':
			p.pos++
			return
		}
		p.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isToken68Char reports whether c may appear in a token68 before its
// trailing '=' signs (RFC 9110 section 11.2).
func isToken68Char(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}
