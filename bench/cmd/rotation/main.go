// Command rotation measures what token rotation costs the requests around
// it. W workers send GETs, one after another each, through one client to an
// autorefreshtest server whose access tokens live L and whose refresh calls
// take R, for a duration D, and it reports per client:
//
//   - requests, failed requests (an error, or a status other than 200) and
//     refused ones (401 or 403 returned to the caller);
//   - refresh calls the server got, and per lifetime crossed (D / L);
//   - requests that took at least R/2 although the token the client held
//     when they started was still valid ("waited, valid"; in parentheses,
//     how many of them were in flight during a stall of the process, see
//     below), and all that took at least R/2;
//   - the 50th, 99th and 99.9th percentile and the maximum of the latency,
//     and the maximum among the requests in flight while a refresh ran;
//   - the longest stall of the whole process, measured by a goroutine that
//     sleeps 5 ms over and over: on a shared machine the scheduler, the
//     collector and the other tenants hold every request up now and then,
//     whatever the client does. Overruns of 50 ms (or R/4 if less) count
//     as stalls;
//   - the targets missed: "waited" (a request waited ≥ R/2 with a valid
//     token, outside the stalls of the process), "max" (the maximum is above 2 × p99.9 + -noise), "refreshes"
//     (more than one per lifetime crossed, plus one), "failed" (a failed or
//     refused request, or a refresh token used twice).
//
// Usage:
//
//	go run ./cmd/rotation [-workers 20] [-lifetime 2s] [-latency 300ms] [-duration 8s]
//	                      [-impl autorefresh,autorefresh-bearer,oauth2] [-oauth2-early 0]
//	                      [-noise 10ms] [-v [-vmin 150ms]]
//
// With -v it describes every refresh, every request that took -vmin or
// more and every stall of 50 ms or more, on standard error.
//
// The clients:
//
//   - autorefresh: a Transport with the default scheme and an Endpoint
//     refresher (the header protocol, GET /auth/refreshtoken);
//   - autorefresh-bearer: a Transport with BearerScheme and an OAuth2
//     refresher (POST /oauth/token);
//   - oauth2: golang.org/x/oauth2's Transport over ReuseTokenSourceWithExpiry
//     (the ReuseTokenSource of oauth2.Config.Client with its early expiry
//     set), refreshing at the same POST /oauth/token. Its early expiry is
//     -oauth2-early, or a quarter of the lifetime if zero; oauth2's default
//     of 10 s would refresh a 2 s token before every request.
//
// Each client runs against a server of its own, with its own connection
// pool for the API (W idle connections) and another for the refresh calls,
// so that a refresh never queues behind the API requests for a connection.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// config is the scenario.
type config struct {
	workers     int
	lifetime    time.Duration // of access tokens
	latency     time.Duration // of refresh calls
	duration    time.Duration // of each client's run
	oauth2Early time.Duration // oauth2's early expiry; 0: lifetime/4
	noise       time.Duration // allowed beside 2 × p99.9 for the maximum
	impls       []string
	verbose     io.Writer     // not nil: the refreshes and the slow requests are described there
	slowest     time.Duration // with verbose: describe the requests that took this long; 0: R/2
}

// impls are the clients, in the order of the table.
var impls = []string{"autorefresh", "autorefresh-bearer", "oauth2"}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rotation:", err)
		os.Exit(2)
	}
	printHeader(os.Stdout, cfg)
	for _, impl := range cfg.impls {
		res, err := run(impl, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rotation:", err)
			os.Exit(1)
		}
		printRow(os.Stdout, cfg, res)
	}
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("rotation", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&cfg.workers, "workers", 20, "concurrent workers")
	fs.DurationVar(&cfg.lifetime, "lifetime", 2*time.Second, "access-token lifetime")
	fs.DurationVar(&cfg.latency, "latency", 300*time.Millisecond, "latency of each refresh call")
	fs.DurationVar(&cfg.duration, "duration", 8*time.Second, "how long each client runs")
	fs.DurationVar(&cfg.oauth2Early, "oauth2-early", 0, "oauth2's early expiry (0: a quarter of -lifetime)")
	fs.DurationVar(&cfg.noise, "noise", 10*time.Millisecond, "allowance beside 2 × p99.9 for the maximum latency")
	list := fs.String("impl", strings.Join(impls, ","), "clients to run, comma-separated")
	verbose := fs.Bool("v", false, "describe every refresh and every request that took ≥ -vmin, on stderr")
	fs.DurationVar(&cfg.slowest, "vmin", 0, "with -v, the latency from which requests are described (0: R/2)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *verbose {
		cfg.verbose = out
	}
	cfg.impls = strings.Split(*list, ",")
	for _, impl := range cfg.impls {
		if !slices.Contains(impls, impl) {
			return cfg, fmt.Errorf("invalid value %q in -impl: the clients are %s", impl, strings.Join(impls, ", "))
		}
	}
	switch {
	case cfg.workers < 1:
		return cfg, fmt.Errorf("invalid value \"%d\" for flag -workers: must be at least 1", cfg.workers)
	case cfg.lifetime <= 0 || cfg.duration <= 0 || cfg.latency < 0:
		return cfg, errors.New("-lifetime and -duration must be positive, -latency not negative")
	}
	if cfg.oauth2Early == 0 {
		cfg.oauth2Early = cfg.lifetime / 4
	}
	return cfg, nil
}

func printHeader(out io.Writer, cfg config) {
	fmt.Fprintf(out, "W=%d workers, L=%v access tokens, R=%v refresh latency, %v per client (%.1f lifetimes), oauth2 early expiry %v\n\n",
		cfg.workers, cfg.lifetime, cfg.latency, cfg.duration, cfg.lifetimes(), cfg.oauth2Early)
	fmt.Fprintln(out, "| client | requests | failed | refused | refreshes | per lifetime | waited ≥ R/2, valid (in stalls) | waited ≥ R/2, all | p50 | p99 | p99.9 | max | max during a refresh | stall | misses |")
	fmt.Fprintln(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
}

func printRow(out io.Writer, cfg config, res result) {
	misses := strings.Join(cfg.misses(res), ", ")
	if misses == "" {
		misses = "none"
	}
	fmt.Fprintf(out, "| %s | %d | %d | %d | %d | %.2f | %d (%d) | %d | %s | %s | %s | %s | %s | %s | %s |\n",
		res.impl, res.requests, res.failed, res.refused, res.refreshes, float64(res.refreshes)/cfg.lifetimes(),
		res.waitedValid, res.waitedStalled, res.waited, ms(res.p50), ms(res.p99), ms(res.p999), ms(res.max), ms(res.maxDuring), ms(res.stall), misses)
	if res.firstErr != "" {
		fmt.Fprintf(out, "\n%s: first failure: %s\n\n", res.impl, res.firstErr)
	}
}

// ms formats d in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
