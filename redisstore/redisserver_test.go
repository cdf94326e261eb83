package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// addrEnv names the environment variable that gives the address of a Redis
// for the tests to use instead of a throwaway redis-server of their own.
const addrEnv = "AUTOREFRESH_REDIS_ADDR"

// testRedis is the Redis of this test run, set up by TestMain.
var testRedis struct {
	addr    string      // host:port, or "" when there is none
	problem string      // why there is none, or ""
	skipped atomic.Bool // a test was skipped for want of it
}

// TestMain gives the tests a Redis: the one at AUTOREFRESH_REDIS_ADDR when
// that is set, otherwise a redis-server of their own on a free loopback port
// with its files in a temporary folder, stopped (by its pid) when the tests
// end. Without either, it says so on one line and every Redis test skips,
// or fails when CI is "true".
func TestMain(m *testing.M) {
	stop := setUpRedis()
	code := m.Run()
	stop()
	if code == 0 && testRedis.skipped.Load() {
		// go test ./... shows nothing of a passing package but its ok
		// line. This line, which the testing package itself prints when
		// no test ran, makes the go command add "[no tests to run]" to it,
		// so that a run without Redis does not look like a real one.
		fmt.Println("\ntesting: warning: no tests to run")
	}
	os.Exit(code)
}

// setUpRedis fills in testRedis and returns the function that stops the
// server it started, if any.
func setUpRedis() (stop func()) {
	stop = func() {}
	if addr := os.Getenv(addrEnv); addr != "" {
		if err := ping(addr, 3*time.Second); err != nil {
			testRedis.problem = fmt.Sprintf("no Redis answers at %s=%s (%v)", addrEnv, addr, err)
		} else {
			testRedis.addr = addr
		}
	} else if _, err := exec.LookPath("redis-server"); err != nil {
		testRedis.problem = "redis-server is not installed and " + addrEnv + " is not set; " +
			"install it (apt-get install redis-server) or set " + addrEnv + "=host:port"
	} else {
		var s *redisServer
		if s, err = startRedisServer(); err != nil {
			testRedis.problem = err.Error()
		} else {
			testRedis.addr, stop = s.addr, s.stop
		}
	}
	if testRedis.problem != "" {
		what := "SKIPPING"
		if os.Getenv("CI") == "true" {
			what = "FAILING (CI=true)"
		}
		fmt.Printf("redisstore: %s every test that needs Redis: %s\n", what, testRedis.problem)
	}
	return stop
}

// redisServer is a redis-server process started for this test run.
type redisServer struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// startRedisServer starts a redis-server on a free port of 127.0.0.1,
// without persistence, in a temporary folder of its own, and waits until it
// answers. A port taken by another process between the search and the
// start makes it try another.
func startRedisServer() (*redisServer, error) {
	dir, err := os.MkdirTemp("", "autorefresh-redis-")
	if err != nil {
		return nil, err
	}
	for range 5 {
		var s *redisServer
		if s, err = tryRedisServer(dir); err == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

func tryRedisServer(dir string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, "redis.log")
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", dir, "--logfile", logFile)
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-s.exited:
			log, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("redis-server on port %d exited at once: %s", port, lastLine(log))
		default:
		}
		if ping(s.addr, 200*time.Millisecond) == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return nil, fmt.Errorf("redis-server on port %d did not answer within 10s", port)
}

// stop ends the server: SIGTERM, then SIGKILL if it has not exited after 5
// seconds. It removes the server's folder.
func (s *redisServer) stop() {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.kill()
	}
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.kill()
	}
	os.RemoveAll(s.dir)
}

func (s *redisServer) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// freePort returns a TCP port of 127.0.0.1 that nothing listened on a moment
// ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ping reports whether a Redis answers PING at addr within timeout.
func ping(addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: timeout, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

// lastLine returns the last line of a log, for an error message.
func lastLine(log []byte) string {
	s := strings.TrimSpace(string(log))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(nothing in its log)"
	}
	return s
}
