package faultsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// safeError prints a message that holds no URL, query or socket address,
// and still unwraps to the error it stands for, so errors.Is works.
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// transportError describes a failed HTTP round trip by its kind only: the
// errors net/http returns quote the URL (FHIR search strings) and the
// socket addresses, neither of which may reach a report.
func transportError(op string, err error) error {
	return &safeError{msg: op + ": " + errKind(err), err: err}
}

// errKind is a short token for a transport failure.
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without a reply"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport error"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// ModuleRoot returns the directory of the ipsfhir module's go.mod: the
// first found above the working directory, else above this source file.
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/ipsfhir/ipsfhir\n")) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("faultsuite: cannot find the ipsfhir module root (run from inside the repository)")
}

// BuildBinary builds ./cmd/ipsfhir of the module at root into dir, once
// per run, so every replica runs the same code as a deployment would: a
// binary, not the test's own process.
func BuildBinary(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "ipsfhir")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/ipsfhir")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("faultsuite: go build ./cmd/ipsfhir: %w\n%s", err, lastLines(string(b), 30))
	}
	return out, nil
}

// freePort returns a loopback port nobody listens on right now. Each
// replica keeps its port across restarts.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, &safeError{"faultsuite: no free loopback port", err}
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
