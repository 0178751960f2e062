package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/internal/tail"
)

// RequireEnv is the environment variable that turns "node is not on PATH"
// from a skip into a failure in StartForTest. CI sets it so that a machine
// without Node.js cannot pass by skipping the integration tests.
const RequireEnv = "IPSFHIR_REQUIRE_PEER"

const (
	// startTimeout bounds the wait for the LISTENING line. Startup is ~1.5 s
	// on a 2-core machine; the margin is for `go test ./...` running many
	// packages (and the race detector) at once.
	startTimeout = 60 * time.Second
	// installTimeout bounds `npm ci`.
	installTimeout = 5 * time.Minute
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// tailLines is how many stderr lines error messages quote.
	tailLines = 30
)

// Options configures Start.
type Options struct {
	// Capability is the path of a CapabilityStatement JSON file (for example
	// testdata/ehr-capabilities/epic-r4-sandbox-2026-07.json). When set the
	// server enforces it: /metadata returns it, interactions it does not
	// declare answer 405 and search parameters it does not declare answer 400.
	// Relative paths are relative to the caller's working directory.
	Capability string
	// Seed is the path of a file of resources the server holds before it
	// listens, loaded outside Capability enforcement, so a test can keep
	// patients in an EHR whose statement forbids creating them: a Bundle (a
	// transaction or batch runs through the engine, urn:uuid references
	// resolved; any other type has each entry's resource stored) or NDJSON,
	// one resource per line. Resources keep their ids. A resource that fails
	// the server's validation stops it from starting. Relative paths are
	// relative to the caller's working directory.
	Seed string
	// Faults makes the server honour the X-Peer-Fault request header (see
	// README.md). Without it the header is ignored.
	Faults bool
	// NoVersionHeaders makes the server answer writes the way stock Medplum
	// does: no ETag header and an unversioned Location (base/T/id) on
	// single-resource answers, and Bundle response entries without
	// response.etag and with an unversioned response.location. Bodies still
	// carry meta.versionId and If-Match still works. FHIR allows this, so an
	// adapter must cope with it.
	NoVersionHeaders bool
	// Latency makes the server answer every request this long after it
	// arrived, its own processing included (--latency, whole
	// milliseconds): an EHR far away or slow. The waits run side by side,
	// so a client with c requests in flight gets about c answers per
	// Latency.
	Latency time.Duration
	// Dir is the directory holding server.mjs and package-lock.json. Default:
	// this package's source directory.
	Dir string
	// Stderr receives the server's stderr: one startup line and one access log
	// line per request (method, resource type, interaction, status; never
	// bodies or query strings). Nil discards it; the last lines are quoted in
	// errors either way.
	Stderr io.Writer
	// Args are extra server.mjs flags, for example "--no-identifier-index" or
	// "--default-count=50". See `node server.mjs --help`.
	Args []string
	// Dedicated makes StartForTest start a node process for this server
	// alone. Without it, a test's server is a tenant of one process shared
	// by the test binary (see SharedEnv), unless Dir or a process-wide flag
	// (--no-expression-pruning, --medplum-transaction-limits) is given.
	// Benchmarks always get a process of their own.
	Dedicated bool
}

// Server is a running peer FHIR server.
type Server struct {
	// BaseURL is the FHIR base, e.g. http://127.0.0.1:41234/fhir/R4 (no
	// trailing slash).
	BaseURL string

	cmd      *exec.Cmd
	stdin    io.WriteCloser
	tail     *tail.Buffer
	exited   chan struct{} // closed once the process has exited
	waitErr  error         // valid after exited is closed
	stopOnce sync.Once
	stopErr  error

	// tenant and shared are set for a tenant of the shared process.
	tenant string
	shared *tenants
}

// Start installs the server's npm dependencies if needed, starts the server
// on a free loopback port and returns once it accepts requests. ctx bounds
// the installation and the startup only; the server runs until Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("peer: node (Node.js >= 20) is not on PATH: %w", err)
	}
	dir, err := resolveDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := ensureDependencies(ctx, dir); err != nil {
		return nil, err
	}

	args, err := nodeArgs(ctx, node)
	if err != nil {
		return nil, err
	}
	flags, err := opts.flags()
	if err != nil {
		return nil, err
	}
	args = append(args, "server.mjs", "--port", "0", "--exit-with-stdin")
	args = append(args, flags...)

	s := &Server{tail: tail.New(tailLines), exited: make(chan struct{})}
	listening := &listenWatcher{found: make(chan string, 1)}
	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	cmd.Stdout = listening
	if opts.Stderr != nil {
		cmd.Stderr = io.MultiWriter(s.tail, opts.Stderr)
	} else {
		cmd.Stderr = s.tail
	}
	setProcessGroup(cmd)
	// The server exits when this pipe closes (--exit-with-stdin), so a test
	// binary that dies without calling Stop does not leave it running.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("peer: starting node: %w", err)
	}
	s.cmd, s.stdin = cmd, stdin
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case base := <-listening.found:
		s.BaseURL = base
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("peer: server exited before listening (%v); last stderr lines:\n%s", s.waitErr, s.tail.String())
	case <-timer.C:
		_ = s.Stop()
		return nil, fmt.Errorf("peer: no LISTENING line within %v; last stderr lines:\n%s", startTimeout, s.tail.String())
	case <-ctx.Done():
		_ = s.Stop()
		return nil, fmt.Errorf("peer: start cancelled: %w", ctx.Err())
	}
}

// flags are the server.mjs flags opts asks for, paths made absolute.
func (opts Options) flags() ([]string, error) {
	var args []string
	if opts.Capability != "" {
		path, err := filepath.Abs(opts.Capability)
		if err != nil {
			return nil, fmt.Errorf("peer: capability path: %w", err)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("peer: capability file: %w", err)
		}
		args = append(args, "--capability", path)
	}
	if opts.Seed != "" {
		path, err := filepath.Abs(opts.Seed)
		if err != nil {
			return nil, fmt.Errorf("peer: seed path: %w", err)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("peer: seed file: %w", err)
		}
		args = append(args, "--seed", path)
	}
	if opts.Faults {
		args = append(args, "--faults")
	}
	if opts.NoVersionHeaders {
		args = append(args, "--no-version-headers")
	}
	if opts.Latency < 0 {
		return nil, errors.New("peer: Latency must not be negative")
	}
	if ms := opts.Latency.Milliseconds(); ms > 0 {
		args = append(args, "--latency="+strconv.FormatInt(ms, 10))
	}
	return append(args, opts.Args...), nil
}

// Stop ends the server and its process group: SIGTERM, then SIGKILL after a
// grace period. It is safe to call more than once. It returns an error only if
// the server had already exited on its own (crashed) before Stop.
func (s *Server) Stop() error {
	if s.shared != nil {
		s.stopOnce.Do(func() { s.stopErr = s.shared.stop(s.tenant) })
		return s.stopErr
	}
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			s.stopErr = fmt.Errorf("peer: server had exited on its own (%v); last stderr lines:\n%s", s.waitErr, s.tail.String())
			return
		default:
		}
		_ = s.stdin.Close()
		signalGroup(s.cmd, false)
		select {
		case <-s.exited:
		case <-time.After(stopGrace):
			signalGroup(s.cmd, true)
			<-s.exited
		}
	})
	return s.stopErr
}

// stderrTail returns the last lines the server wrote to stderr.
func (s *Server) stderrTail() string { return s.tail.String() }

// StartForTest starts a server for t and stops it in t.Cleanup. It skips t
// when node is not on PATH and IPSFHIR_REQUIRE_PEER is unset, and fails t on
// any other problem (including a failed npm ci). A test's server is a tenant
// of one node process shared by the test binary (Options.Dedicated says
// when it is not): its own store, statement, flags and access log, so tests
// may run in parallel, without paying seconds of CPU to start node each.
func StartForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv(RequireEnv) == "" {
			t.Skipf("peer FHIR server needs node (Node.js >= 20) on PATH, which is missing; install it, or set %s=1 to make this a failure", RequireEnv)
		}
		t.Fatalf("peer FHIR server: node is not on PATH and %s is set: %v", RequireEnv, err)
	}
	var s *Server
	var err error
	if _, isTest := t.(*testing.T); isTest && opts.shareable() {
		var ts *tenants
		if ts, err = sharedTenants(); err == nil {
			s, err = ts.start(t.Context(), opts)
		}
	} else {
		s, err = Start(t.Context(), opts)
	}
	if err != nil {
		t.Fatalf("starting peer FHIR server: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("peer FHIR server stderr, last lines:\n%s", s.stderrTail())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stopping peer FHIR server: %v", err)
		}
	})
	return s
}

// NodeForTest returns node, the flags it needs and the directory whose
// node_modules hold the peer's npm dependencies (@medplum/core among them),
// installing them if needed: for tests that run a third-party FHIR client,
// Medplum's, against a server of this project. It skips or fails t as
// StartForTest does when node is missing.
func NodeForTest(t testing.TB) (node string, args []string, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv(RequireEnv) == "" {
			t.Skipf("Medplum's client needs node (Node.js >= 20) on PATH, which is missing; install it, or set %s=1 to make this a failure", RequireEnv)
		}
		t.Fatalf("node is not on PATH and %s is set: %v", RequireEnv, err)
	}
	if dir, err = resolveDir(""); err == nil {
		err = ensureDependencies(t.Context(), dir)
	}
	if err == nil {
		args, err = nodeArgs(t.Context(), node)
	}
	if err != nil {
		t.Fatal(err)
	}
	return node, args, dir
}

// resolveDir finds the directory with server.mjs: dir if given, else this
// source file's directory, else conformance/peer under the module root above
// the working directory (for binaries built with -trimpath).
func resolveDir(dir string) (string, error) {
	var candidates []string
	if dir != "" {
		candidates = append(candidates, dir)
	} else {
		if _, file, _, ok := runtime.Caller(0); ok {
			candidates = append(candidates, filepath.Dir(file))
		}
		if wd, err := os.Getwd(); err == nil {
			for d := wd; ; d = filepath.Dir(d) {
				if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
					candidates = append(candidates, filepath.Join(d, "conformance", "peer"))
					break
				}
				if filepath.Dir(d) == d {
					break
				}
			}
		}
	}
	for _, c := range candidates {
		abs, err := filepath.Abs(c)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(abs, "server.mjs")); err == nil {
			return abs, nil
		}
	}
	return "", fmt.Errorf("peer: cannot find server.mjs (looked in %s)", strings.Join(candidates, ", "))
}

// ensureDependencies runs `npm ci` when node_modules is missing or older than
// package-lock.json. A lock file in the temp directory serializes this across
// test processes (go test runs packages in parallel), keyed by dir.
func ensureDependencies(ctx context.Context, dir string) error {
	if upToDate(dir) {
		return nil
	}
	sum := sha256.Sum256([]byte(dir))
	lockPath := filepath.Join(os.TempDir(), "ipsfhir-peer-npm-"+hex.EncodeToString(sum[:8])+".lock")
	unlock, err := lockFile(ctx, lockPath)
	if err != nil {
		return fmt.Errorf("peer: locking %s: %w", lockPath, err)
	}
	defer unlock()
	if upToDate(dir) { // another process installed while we waited
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("peer: %s/node_modules needs installing but npm is not on PATH: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("peer: npm ci in %s: %v; output ends:\n%s", dir, err, lastLines(out.String(), tailLines))
	}
	if !upToDate(dir) {
		return fmt.Errorf("peer: npm ci in %s succeeded but node_modules still looks stale", dir)
	}
	return nil
}

// upToDate reports whether node_modules holds an install of the current
// package-lock.json. npm writes node_modules/.package-lock.json on every
// install, so its time is the install's time.
func upToDate(dir string) bool {
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false
	}
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@medplum", "fhir-router", "package.json")); err != nil {
		return false
	}
	return !lock.ModTime().After(installed.ModTime())
}

// nodeArgs returns the node flags: Node 20 and 21 need
// --experimental-websocket for the global WebSocket @medplum/core expects.
func nodeArgs(ctx context.Context, node string) ([]string, error) {
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("peer: node --version: %w", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil {
		return nil, fmt.Errorf("peer: cannot parse node version %q", v)
	}
	switch {
	case major < 20:
		return nil, fmt.Errorf("peer: node %s is too old; the peer needs Node.js >= 20", v)
	case major < 22:
		return []string{"--experimental-websocket"}, nil
	default:
		return nil, nil
	}
}

// listenWatcher is the server's stdout: it reports the URL from the first
// "LISTENING <url>" line and discards everything.
type listenWatcher struct {
	mu   sync.Mutex
	buf  []byte
	done bool
	// found receives the URL once; buffered so Write never blocks.
	found chan string
}

func (w *listenWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
		if url, ok := strings.CutPrefix(line, "LISTENING "); ok {
			w.done = true
			w.buf = nil
			w.found <- url
			break
		}
	}
	if len(w.buf) > 1<<16 { // no newline in 64 KiB: not our server talking
		w.buf = nil
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errLocked is returned by tryLock when another process holds the lock.
var errLocked = errors.New("locked")

// lockFile takes an exclusive lock on path, polling so that ctx can cancel
// the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := tryLock(f)
		if err == nil {
			return func() { unlock(f); _ = f.Close() }, nil
		}
		if !errors.Is(err, errLocked) {
			_ = f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
