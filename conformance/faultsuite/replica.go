package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/internal/tail"
)

const (
	// healthTimeout bounds the wait for a started replica's /healthz. A
	// start fetches the EHR's CapabilityStatement through the fault proxy,
	// where a hang costs the client's 30 s timeout.
	healthTimeout = 90 * time.Second
	// stopGrace is how long a clean stop (SIGTERM) may take: serve gives
	// in-flight requests 30 s.
	stopGrace = 45 * time.Second
	// stderrLines is how many lines of a replica's stderr failures quote.
	stderrLines = 20
)

// replica is one `ipsfhir serve` child process, restarted on the same
// port and configuration as often as the chaos phase kills it.
type replica struct {
	idx  int
	bin  string
	cfg  string // its configuration file
	base string // http://127.0.0.1:PORT
	logf *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process exits
	expected bool          // the current process is being stopped by us
	exitCode int
	stderr   *tail.Buffer
	starts   int
	// onUnexpected is told about a process that exited on its own.
	onUnexpected func(r *replica, code int, tail string)
}

// start runs a new process. It does not wait for it to serve.
func (r *replica) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil && !isClosed(r.done) {
		return fmt.Errorf("faultsuite: replica %d is already running", r.idx)
	}
	r.stderr.Reset()
	cmd := exec.Command(r.bin, "serve", "--config", r.cfg)
	var out io.Writer = r.stderr
	if r.logf != nil {
		fmt.Fprintf(r.logf, "--- start %d at %s\n", r.starts+1, time.Now().Format(time.RFC3339Nano))
		out = io.MultiWriter(r.stderr, r.logf)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("faultsuite: starting replica %d: %w", r.idx, err)
	}
	r.starts++
	r.cmd, r.done, r.expected = cmd, make(chan struct{}), false
	done := r.done
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode() // -1 when killed by a signal
		}
		r.mu.Lock()
		r.exitCode = code
		unexpected := !r.expected
		tail := r.stderr.String()
		cb := r.onUnexpected
		r.mu.Unlock()
		close(done)
		if unexpected && cb != nil {
			cb(r, code, tail)
		}
	}()
	return nil
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the current process has not exited.
func (r *replica) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil && !isClosed(r.done)
}

func (r *replica) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil || isClosed(r.done) {
		return 0
	}
	return r.cmd.Process.Pid
}

// waitHealthy polls /healthz until it answers 200. If the process exits
// first, or the wait times out, the error quotes the end of its stderr.
func (r *replica) waitHealthy(ctx context.Context, timeout time.Duration) error {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/healthz", nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			r.mu.Lock()
			code := r.exitCode
			r.mu.Unlock()
			return fmt.Errorf("replica %d exited (code %d) before /healthz answered; its stderr ends:\n%s", r.idx, code, indent(r.stderr.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %d: /healthz did not answer 200 within %v; its stderr ends:\n%s", r.idx, timeout, indent(r.stderr.String()))
		}
	}
}

// kill sends SIGKILL to the current process and waits for it to go.
func (r *replica) kill() {
	r.mu.Lock()
	if r.cmd == nil || isClosed(r.done) {
		r.mu.Unlock()
		return
	}
	r.expected = true
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	done := r.done
	r.mu.Unlock()
	<-done
}

// stop asks the current process to stop (SIGTERM) and waits, up to
// stopGrace, then kills it. It returns an error when the process did not
// stop in time or exited non-zero.
func (r *replica) stop() error {
	r.mu.Lock()
	if r.cmd == nil || isClosed(r.done) {
		r.mu.Unlock()
		return nil
	}
	r.expected = true
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(stopGrace):
		r.kill()
		return fmt.Errorf("replica %d did not stop within %v of SIGTERM; its stderr ends:\n%s", r.idx, stopGrace, indent(r.stderr.String()))
	}
	r.mu.Lock()
	code := r.exitCode
	r.mu.Unlock()
	if code != 0 {
		return fmt.Errorf("replica %d exited with code %d after SIGTERM; its stderr ends:\n%s", r.idx, code, indent(r.stderr.String()))
	}
	return nil
}

func (r *replica) String() string { return "replica " + strconv.Itoa(r.idx) }
