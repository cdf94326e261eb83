package autorefresh

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// sendsTokens reports whether req may carry the tokens: its origin is in
// Hosts (if set), and, for a redirect, it is the origin of the request that
// started the chain. It fails when Hosts holds an invalid entry.
func (t *Transport) sendsTokens(req *http.Request) (bool, error) {
	t.init()
	if t.hosts.err != nil {
		return false, t.hosts.err
	}
	to := req.URL
	if len(t.hosts.rules) > 0 && !t.hosts.allow(to.Scheme, to.Hostname(), port(to.Scheme, to.Port())) {
		return false, nil
	}
	if req.Response == nil {
		return true, nil
	}
	// A redirect: compare with the request that started the chain. Every
	// response that t returns and http.Client follows has for its Request
	// the request that t sent (see send), so the chain is t's own.
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return sameOrigin(first.URL, to), nil
}

// sameOrigin reports whether a redirect from from to to may keep the
// tokens: same host and, on the same scheme, the same port, or an upgrade
// from http to https on the default ports.
func sameOrigin(from, to *url.URL) bool {
	if !strings.EqualFold(from.Hostname(), to.Hostname()) {
		return false
	}
	if strings.EqualFold(from.Scheme, to.Scheme) {
		return port(from.Scheme, from.Port()) == port(to.Scheme, to.Port())
	}
	return strings.EqualFold(to.Scheme, "https") &&
		port(from.Scheme, from.Port()) == "80" && port(to.Scheme, to.Port()) == "443"
}

// hostRules is Transport.Hosts, parsed.
type hostRules struct {
	rules []hostRule
	err   error // of the first invalid entry
}

// A hostRule is one entry of Transport.Hosts. Empty fields match anything.
type hostRule struct {
	scheme, host, port string
}

func (h hostRules) allow(scheme, host, port string) bool {
	for _, r := range h.rules {
		if (r.scheme == "" || strings.EqualFold(r.scheme, scheme)) &&
			strings.EqualFold(r.host, host) && (r.port == "" || r.port == port) {
			return true
		}
	}
	return false
}

// parseHosts parses the entries of Transport.Hosts; see its doc for the
// accepted forms.
func parseHosts(entries []string) hostRules {
	var h hostRules
	for _, e := range entries {
		r, err := parseHostEntry(e)
		if err != nil {
			h.err = fmt.Errorf("%w %q: %s", ErrInvalidHosts, e, err)
			return h
		}
		h.rules = append(h.rules, r)
	}
	return h
}

func parseHostEntry(e string) (hostRule, error) {
	if strings.Contains(e, "://") {
		return parseHostURL(e)
	}
	var r hostRule
	switch {
	case strings.HasPrefix(e, "["): // [::1]:8080 or [::1]
		name, rest, ok := strings.Cut(e[1:], "]")
		if !ok || (rest != "" && !strings.HasPrefix(rest, ":")) {
			return r, errors.New("malformed IPv6 address")
		}
		r.host, r.port = name, strings.TrimPrefix(rest, ":")
		if rest == ":" {
			return r, errors.New("empty port")
		}
	case strings.Count(e, ":") > 1: // a bare IPv6 address
		r.host = e
	default:
		name, p, hasPort := strings.Cut(e, ":")
		r.host, r.port = name, p
		if hasPort && p == "" {
			return r, errors.New("empty port")
		}
	}
	return r, checkHostRule(r)
}

func parseHostURL(e string) (hostRule, error) {
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return hostRule{}, errors.New("not a URL")
	case !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https"):
		return hostRule{}, errors.New("scheme is not http or https")
	case u.User != nil:
		return hostRule{}, errors.New("has user information")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "", u.Opaque != "":
		return hostRule{}, errors.New("has a path, query or fragment")
	}
	r := hostRule{scheme: strings.ToLower(u.Scheme), host: u.Hostname(), port: port(u.Scheme, u.Port())}
	return r, checkHostRule(r)
}

// checkHostRule refuses a rule without a host, with a port that is not a
// number from 1 to 65535, or with characters that no host name holds.
func checkHostRule(r hostRule) error {
	if r.host == "" {
		return errors.New("no host")
	}
	if net.ParseIP(r.host) == nil && !isHostName(r.host) {
		return errors.New("not a host name or an IP address")
	}
	if r.port != "" {
		if n, err := strconv.Atoi(r.port); err != nil || n < 1 || n > 65535 {
			return errors.New("port is not a number from 1 to 65535")
		}
	}
	return nil
}

// isHostName reports whether h is a DNS host name: labels of letters,
// digits, hyphens and underscores, separated by dots. Wildcards, lists and
// escapes are not.
func isHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// port returns p, or the default port of scheme when p is empty.
func port(scheme, p string) string {
	if p != "" {
		return p
	}
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// checkSecureURL refuses URLs that would send what (tokens, credentials) in
// clear text over the network: it must be https, or http to a loopback
// host, unless allowHTTP is set.
func checkSecureURL(raw string, allowHTTP bool, what string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// Not the *url.Error, which quotes raw with any password in it.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("autorefresh: bad URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if allowHTTP || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: refusing to send %s over plain http to %s (set AllowHTTP to permit it)", ErrUnsafeURL, what, u.Hostname())
	}
	return fmt.Errorf("%w: %q is not http or https", ErrUnsafeURL, u.Redacted())
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
