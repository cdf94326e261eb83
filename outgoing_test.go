package autorefresh

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// inChild runs the calling test again in a process of its own, with env set,
// and reports whether this process is that child. A failure that crashes
// the process (a panic in a goroutine of the package) then fails only this
// test, with the child's output, instead of the whole test binary.
func inChild(t *testing.T, env string) bool {
	t.Helper()
	if os.Getenv(env) == "1" {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("the test crashed its process (%v); want no crash:\n%s", err, lastLines(string(out), 25))
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestRefusalWithNilBodyDoesNotCrash: net/http's Client accepts a
// RoundTripper that answers with a nil Body (it fills in an empty one;
// golang.org/issue/38095), and tests and mocks in the wild do so. When
// such a base answers a refusal, the Transport hands the nil Body to
// discard, whose background goroutine reads it and panics: the whole
// process dies, where nobody can recover. Login and Resume discard the same
// way.
func TestRefusalWithNilBodyDoesNotCrash(t *testing.T) {
	if !inChild(t, "AUTOREFRESH_REVIEW_NIL_BODY") {
		return
	}
	srv := newProtoServer(t)
	stale := srv.stale()
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		//lint:ignore SA1008 the token headers are sent as written
		if v := r.Header["accessToken"]; len(v) == 1 && v[0] == stale.AccessToken {
			return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}, Request: r}, nil // Body nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	tr, _ := srv.transport(stale)
	tr.Base = base
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("status = %d; want 200 after a refresh and a replay", code)
	}
	// Give discard's goroutine time to run: it crashes the process if it
	// reads the nil body.
	waitForDrain(t)
}

// waitForDrain waits until a discard started before it has had the chance
// to run, by running one after it and waiting for that one to finish.
func waitForDrain(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	discard(closeNotifier{done})
	<-done
}

// closeNotifier is a body that is empty and closes done when closed.
type closeNotifier struct{ done chan struct{} }

func (closeNotifier) Read([]byte) (int, error) { return 0, io.EOF }
func (c closeNotifier) Close() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return nil
}

// TestBaseReturningNilResponseIsAnError: a base that returns a nil
// *http.Response with a nil error breaks the RoundTripper contract, and
// net/http's Client answers it with an error ("RoundTripper implementation
// returned a nil *Response with a nil error"). The Transport dereferences
// the nil response and panics instead, in the caller's goroutine; Login does
// the same. Bad input gets a clear error, never a panic.
func TestBaseReturningNilResponseIsAnError(t *testing.T) {
	for _, tt := range []struct {
		name string
		call func(tr *Transport) error
	}{
		{"RoundTrip", func(tr *Transport) error {
			req, _ := http.NewRequest("GET", "http://127.0.0.1:1/api/x", nil)
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			return err
		}},
		{"Login", func(tr *Transport) error {
			return tr.Login(context.Background(), "http://127.0.0.1:1/auth/login", map[string]string{"user": "u"})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{
				Store: NewMemoryStore(Tokens{AccessToken: "access-token-1", RefreshToken: "refresh-token-1"}),
				Base:  roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil }),
			}
			var err error
			panicked := func() (p any) {
				defer func() { p = recover() }()
				err = tt.call(tr)
				return nil
			}()
			if panicked != nil {
				t.Fatalf("%s panicked: %v; want an error", tt.name, panicked)
			}
			if err == nil {
				t.Errorf("%s error = nil; want an error saying the base returned no response", tt.name)
			}
		})
	}
}

// stallingBody blocks its reader until it is closed. Its Close closes a
// channel, so a second Close panics: io.Closer leaves the behaviour of
// Close after the first call undefined, and bodies like this one exist.
type stallingBody struct{ closed chan struct{} }

func (b *stallingBody) Read([]byte) (int, error) {
	<-b.closed
	return 0, io.ErrClosedPipe
}

func (b *stallingBody) Close() error {
	close(b.closed)
	return nil
}

// TestStalledRefusalBodyIsClosedOnce: a refused response whose body stalls
// is drained in the background and cut short by closing it after
// drainTimeout; then discard closes it again when the drain returns. A body
// whose Close is not idempotent (io.Closer: "the behavior of Close after the
// first call is undefined") panics in discard's goroutine, and the process
// dies.
func TestStalledRefusalBodyIsClosedOnce(t *testing.T) {
	if !inChild(t, "AUTOREFRESH_REVIEW_CLOSE_TWICE") {
		return
	}
	srv := newProtoServer(t)
	stale := srv.stale()
	body := &stallingBody{closed: make(chan struct{})}
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		//lint:ignore SA1008 the token headers are sent as written
		if v := r.Header["accessToken"]; len(v) == 1 && v[0] == stale.AccessToken {
			return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}, Body: body, Request: r}, nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	tr, _ := srv.transport(stale)
	tr.Base = base
	if code, _ := get(t, NewClient(nil, tr), srv.URL+"/api/x"); code != http.StatusOK {
		t.Errorf("status = %d; want 200 after a refresh and a replay", code)
	}
	<-body.closed // the drain was cut short by the first Close
	// The drain goroutine closes the body a second time right after: wait
	// for a discard started after it to finish.
	waitForDrain(t)
}
