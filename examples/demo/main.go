// Command demo shows autorefresh at work: many concurrent workers call an
// API whose access tokens live 2 seconds, through a client made by wrapping
// http.DefaultClient, and not one request fails.
//
//	go run ./examples/demo [-duration 10s] [-workers 50] [-lifetime 2s] [-store FILE] [-dpop]
//
// It starts an in-process auth and API server (package autorefreshtest) on
// a loopback address, logs in, runs the workers, prints a progress line
// every second and a summary, and exits with status 1 if any request
// failed, 2 for a bad flag, and 130 when interrupted (Ctrl-C; a second one
// ends it at once).
//
// With -dpop the session is OAuth 2.0 with sender-constrained tokens (DPoP,
// RFC 9449): the server requires DPoP proofs and nonces, the tokens are
// bound to a key that autorefresh.LoadOrCreateKey keeps in dpop-key.pem
// beside the -store file (in a temporary directory without -store), and
// every request carries a proof signed with it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/autorefreshtest"
)

// config is what the flags set.
type config struct {
	duration time.Duration // how long the workers run
	workers  int
	lifetime time.Duration // of the access tokens
	store    string        // file to keep the tokens in (a FileStore); "": memory
	dpop     bool          // OAuth 2.0 with DPoP-bound tokens

	progress time.Duration // interval of the progress lines; 0: none
	live     bool          // rewrite a single progress line (stdout is a terminal)
}

// summary is what a run did.
type summary struct {
	elapsed          time.Duration
	requests, failed int64
	firstFailure     string

	refreshes, proactive, refreshFailures, replays int64 // the transport's counts
	forbidden, serverRefreshes, reuses             int64 // the server's counts

	// With -dpop: forbidden counts 401s, the answers that refuse a token
	// or ask for a nonce.
	dpop                 bool
	nonceRetries         int64 // the transport's
	proofs, nonceDemands int64 // the server's

	interrupted bool // the run was cut short
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	go func() {
		<-ctx.Done()
		stop() // a second interrupt ends the program at once
	}()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// runMain runs the demo with the command-line arguments args and returns
// the exit status. It stops early, with exitInterrupted, when ctx ends.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		return exitUsage
	}
	cfg.progress = time.Second
	if f, ok := stdout.(*os.File); ok {
		cfg.live = isTerminal(f)
	}
	sum, err := run(ctx, cfg, stdout)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "demo: interrupted")
		return exitInterrupted
	case err != nil:
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	case sum.failed > 0:
		return exitFailed
	}
	return exitOK
}

// parseFlags parses the command-line arguments. On a bad one it prints
// what is wrong and the usage to stderr, and returns an error.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long the workers run")
	fs.IntVar(&cfg.workers, "workers", 50, "number of concurrent workers")
	fs.DurationVar(&cfg.lifetime, "lifetime", 2*time.Second, "lifetime of the access tokens")
	fs.StringVar(&cfg.store, "store", "", "keep the tokens in this `file` (default: in memory)")
	fs.BoolVar(&cfg.dpop, "dpop", false, "OAuth 2.0 with DPoP-bound tokens, the key kept in "+dpopKeyFile+" beside the -store file")
	if err := fs.Parse(args); err != nil {
		return cfg, err // the flag package printed it, with the usage
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.workers < 1:
		err = fmt.Errorf("invalid value \"%d\" for flag -workers: must be at least 1", cfg.workers)
	case cfg.duration <= 0:
		err = fmt.Errorf("invalid value \"%v\" for flag -duration: must be positive", cfg.duration)
	case cfg.lifetime <= 0:
		err = fmt.Errorf("invalid value \"%v\" for flag -lifetime: must be positive", cfg.lifetime)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fs.Usage()
	}
	return cfg, err
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run starts the server, logs in and runs the workers, printing progress
// and the summary to out.
func run(ctx context.Context, cfg config, out io.Writer) (summary, error) {
	srv := autorefreshtest.NewServer(autorefreshtest.Options{AccessTTL: cfg.lifetime, RequireDPoP: cfg.dpop, RequireDPoPNonce: cfg.dpop})
	defer srv.Close()

	var store autorefresh.TokenStore = autorefresh.NewMemoryStore(autorefresh.Tokens{})
	if cfg.store != "" {
		store = autorefresh.NewFileStore(cfg.store)
	}

	// http.DefaultTransport keeps 2 idle connections per host: with more
	// workers than that, most requests would open a new connection.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = cfg.workers
	defer base.CloseIdleConnections()

	var refresher autorefresh.Refresher = &autorefresh.Endpoint{URL: srv.URL + "/auth/refreshtoken"}
	var dm *dpopMode
	if cfg.dpop {
		var err error
		if dm, err = newDPoPMode(cfg.store, srv.URL, base); err != nil {
			return summary{}, err
		}
		defer dm.close()
		refresher = dm.refresher()
	}
	tr := &autorefresh.Transport{
		Base:      base,
		Store:     store,
		Refresher: refresher,
		// Refresh a tenth of a lifetime ahead of expiry: once per token,
		// and early enough that requests are not refused. The default (30 s,
		// capped at half the lifetime) would renew 2-second tokens every
		// second.
		EarlyRefresh: cfg.lifetime / 10,
	}
	client := autorefresh.NewClient(http.DefaultClient, tr)

	where := "in memory"
	if cfg.store != "" {
		where = "in " + cfg.store
	}
	fmt.Fprintf(out, "demo: %d workers for %v against %s; access tokens live %v, kept %s\n",
		cfg.workers, cfg.duration, srv.URL, cfg.lifetime, where)
	if dm != nil {
		fmt.Fprintln(out, dm)
	}
	if err := startSession(ctx, tr, srv, dm, out); err != nil {
		return summary{}, err
	}
	sum := work(ctx, cfg, client, tr, srv, out)
	sum.print(out, cfg.lifetime)
	return sum, nil
}

// work runs the workers through client, printing progress to out, and
// returns what they did.
func work(ctx context.Context, cfg config, client *http.Client, tr *autorefresh.Transport, srv *autorefreshtest.Server, out io.Writer) summary {
	var (
		requests, failed atomic.Int64
		failOnce         sync.Once
		firstFailure     string
		wg               sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for w := range cfg.workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				err := call(ctx, client, srv.URL, fmt.Sprintf("worker %d, request %d", w, i))
				if ctx.Err() != nil {
					return // interrupted: not a failure
				}
				requests.Add(1)
				if err != nil {
					failed.Add(1)
					failOnce.Do(func() { firstFailure = err.Error() })
				}
			}
		})
	}

	// Refused requests are answered 403 in the header protocol, and 401
	// with a WWW-Authenticate challenge in the Authorization schemes.
	refused, label := func(st autorefreshtest.Stats) int64 { return st.API403s }, "403s"
	if cfg.dpop {
		refused, label = func(st autorefreshtest.Stats) int64 { return st.API401s }, "401s"
	}
	line := func() string {
		st := tr.Stats()
		return fmt.Sprintf("%5.1fs  requests %d  failed %d  refreshes %d  %s %d  replays %d",
			time.Since(start).Seconds(), requests.Load(), failed.Load(), st.Refreshes, label, refused(srv.Stats()), st.Replays)
	}
	done := make(chan struct{})
	var progress sync.WaitGroup
	if cfg.progress > 0 {
		progress.Go(func() { showProgress(cfg, out, line, done) })
	}
	wg.Wait()
	close(done)
	progress.Wait()

	st, sst := tr.Stats(), srv.Stats()
	return summary{
		elapsed:         time.Since(start),
		requests:        requests.Load(),
		failed:          failed.Load(),
		firstFailure:    firstFailure,
		refreshes:       st.Refreshes,
		proactive:       st.ProactiveRefreshes,
		refreshFailures: st.RefreshFailures,
		replays:         st.Replays,
		forbidden:       refused(sst),
		serverRefreshes: sst.Refreshes,
		reuses:          sst.ReuseRejections,
		interrupted:     ctx.Err() != nil,
		dpop:            cfg.dpop,
		nonceRetries:    st.NonceRetries,
		proofs:          sst.DPoPProofs,
		nonceDemands:    sst.DPoPNonceDemands,
	}
}

// showProgress prints line to out every cfg.progress until done is closed:
// rewriting one line when cfg.live, one line each otherwise.
func showProgress(cfg config, out io.Writer, line func() string, done <-chan struct{}) {
	tick := time.NewTicker(cfg.progress)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if cfg.live {
				fmt.Fprintf(out, "\r%-70s\r", "")
			}
			return
		case <-tick.C:
			if cfg.live {
				fmt.Fprintf(out, "\r%-70s", line())
			} else {
				fmt.Fprintln(out, line())
			}
		}
	}
}

// startSession resumes the stored session, or logs in when there is none
// or it is over: with dm, to a session bound to its key.
func startSession(ctx context.Context, tr *autorefresh.Transport, srv *autorefreshtest.Server, dm *dpopMode, out io.Writer) error {
	err := tr.Resume(ctx, srv.URL+"/auth/check")
	switch {
	case err == nil:
		fmt.Fprintln(out, "resumed the stored session")
		return nil
	case errors.Is(err, autorefresh.ErrSessionExpired):
		fmt.Fprintln(out, "the stored session is over (this server is new); logging in")
	case errors.Is(err, autorefresh.ErrDPoPKeyMissing):
		fmt.Fprintln(out, "the stored tokens are bound to a DPoP key (run with -dpop to use them); logging in")
	case !errors.Is(err, autorefresh.ErrNoTokens):
		return err
	}
	if dm != nil {
		err = dm.login(ctx, tr)
	} else {
		creds := map[string]string{"username": autorefreshtest.DefaultUser, "password": autorefreshtest.DefaultPassword}
		err = tr.Login(ctx, srv.URL+"/auth/login", creds)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "logged in as %s\n", autorefreshtest.DefaultUser)
	return nil
}

// call posts msg to the echo API and checks the answer.
func call(ctx context.Context, c *http.Client, baseURL, msg string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/api/echo", strings.NewReader(msg))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("echo answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var echo struct{ Method, Body, User string }
	if err := json.Unmarshal(body, &echo); err != nil {
		return fmt.Errorf("echo answered malformed JSON: %w", err)
	}
	if echo.Method != http.MethodPost || echo.Body != msg || echo.User != autorefreshtest.DefaultUser {
		return fmt.Errorf("echo answered %+v; want POST %q by %s", echo, msg, autorefreshtest.DefaultUser)
	}
	return nil
}

func (s summary) print(out io.Writer, lifetime time.Duration) {
	secs := s.elapsed.Seconds()
	fmt.Fprintf(out, "summary after %.1fs (%.1f token lifetimes):\n", secs, s.elapsed.Seconds()/lifetime.Seconds())
	fmt.Fprintf(out, "  requests             %8d  (%.0f/s)\n", s.requests, float64(s.requests)/secs)
	fmt.Fprintf(out, "  failed               %8d\n", s.failed)
	fmt.Fprintf(out, "  refreshes            %8d  (server: %d, refresh token reuses: %d)\n", s.refreshes, s.serverRefreshes, s.reuses)
	fmt.Fprintf(out, "  proactive refreshes  %8d  (made ahead of expiry, before any request was refused)\n", s.proactive)
	fmt.Fprintf(out, "  failed refreshes     %8d\n", s.refreshFailures)
	if s.dpop {
		fmt.Fprintf(out, "  401s seen            %8d  (tokens refused, nonces asked for)\n", s.forbidden)
	} else {
		fmt.Fprintf(out, "  403s seen            %8d\n", s.forbidden)
	}
	fmt.Fprintf(out, "  replays              %8d\n", s.replays)
	if s.dpop {
		fmt.Fprintf(out, "  DPoP proofs          %8d  (accepted by the server: requests, refreshes, login)\n", s.proofs)
		fmt.Fprintf(out, "  nonce retries        %8d  (the server asked for a nonce %d times, token endpoint included)\n", s.nonceRetries, s.nonceDemands)
	}
	switch {
	case s.failed > 0:
		fmt.Fprintf(out, "FAILED: %d requests; the first: %s\n", s.failed, s.firstFailure)
	case s.interrupted:
		fmt.Fprintf(out, "interrupted after %.1fs: the run was cut short\n", secs)
	default:
		fmt.Fprintln(out, "ok: no request failed")
	}
}
