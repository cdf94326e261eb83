// Package bench holds benchmarks that set autorefresh.Transport beside
// golang.org/x/oauth2's Transport, in the same run, over the same bases.
//
// It is a module of its own so that the root module never requires
// golang.org/x/oauth2. It has no API: see README.md for the commands and the
// results.
package bench
