// Package interop runs autorefresh against an OAuth 2.0 / OpenID Connect
// provider that nobody here wrote: panva's oidc-provider from npm, started
// on loopback by the tests (see README.md). The package has no code of its
// own; everything is in its tests.
package interop
