package autorefresh

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// sendsTokens reports whether req may carry the tokens.
func (t *Transport) sendsTokens(req *http.Request) bool {
	if len(t.Hosts) > 0 && !hostAllowed(t.Hosts, req.URL.Hostname(), port(req.URL.Scheme, req.URL.Port())) {
		return false
	}
	if req.Response == nil {
		return true
	}
	// A redirect: compare with the request that started the chain.
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	from, to := first.URL, req.URL
	if !strings.EqualFold(from.Hostname(), to.Hostname()) {
		return false
	}
	if strings.EqualFold(from.Scheme, to.Scheme) {
		return port(from.Scheme, from.Port()) == port(to.Scheme, to.Port())
	}
	// An upgrade from http to https on the default ports.
	return strings.EqualFold(to.Scheme, "https") &&
		port(from.Scheme, from.Port()) == "80" && port(to.Scheme, to.Port()) == "443"
}

func hostAllowed(hosts []string, host, port string) bool {
	for _, h := range hosts {
		name, p := splitHostEntry(h)
		if strings.EqualFold(name, host) && (p == "" || p == port) {
			return true
		}
	}
	return false
}

// splitHostEntry splits an entry of Transport.Hosts into a host name and
// a port, empty when any. Entries may be "host", "host:port", an IPv6
// address with or without brackets, or a URL.
func splitHostEntry(h string) (name, port string) {
	if strings.Contains(h, "://") {
		if u, err := url.Parse(h); err == nil {
			return u.Hostname(), u.Port()
		}
	}
	if strings.HasPrefix(h, "[") { // [::1]:8080 or [::1]
		name, rest, _ := strings.Cut(h[1:], "]")
		return name, strings.TrimPrefix(rest, ":")
	}
	if strings.Count(h, ":") > 1 { // a bare IPv6 address
		return h, ""
	}
	name, port, _ = strings.Cut(h, ":")
	return name, port
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
		return fmt.Errorf("autorefresh: refusing to send %s over plain http to %s (set AllowHTTP to permit it)", what, u.Hostname())
	}
	return fmt.Errorf("autorefresh: URL %q is not http or https", u.Redacted())
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
