package autorefresh

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkGoroutines fails t if goroutines started during the test are still
// running a few seconds after it ends. Call it first in a test, so that its
// check runs after every other cleanup (servers closed, and so on).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		var extra []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			extra = extra[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !ignoredGoroutine(stack) {
					extra = append(extra, stack)
				}
			}
			if len(extra) == 0 {
				return
			}
		}
		t.Errorf("%d goroutines left behind:\n\n%s", len(extra), strings.Join(extra, "\n\n"))
	})
}

// goroutines returns the stacks of all goroutines by their header line's id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		id, _, _ := strings.Cut(strings.TrimPrefix(s, "goroutine "), " ")
		m[id] = s
	}
	return m
}

func ignoredGoroutine(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run", "testing.tRunner", "testing.runTests", "testing.(*M).",
		"runtime.goexit0", "created by runtime.gc", "runtime.ReadTrace",
		"checkGoroutines", "goroutines()",
		// Idle keep-alive connections of http.DefaultTransport end when
		// their servers close, which the cleanup waits for.
	} {
		if strings.Contains(stack, s) && !strings.Contains(stack, "autorefresh.") {
			return true
		}
	}
	return strings.Contains(stack, "goroutines()")
}
