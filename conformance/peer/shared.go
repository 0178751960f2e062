package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/internal/tail"
)

// SharedEnv names the environment variable that, set to 0, gives every
// StartForTest server a node process of its own, as before tenants existed
// (for debugging the peer itself).
const SharedEnv = "IPSFHIR_PEER_SHARED"

// processFlags are the server.mjs flags that shape a whole process; a
// server asking for one gets its own process.
var processFlags = []string{"--port", "--tenants", "--exit-with-stdin", "--no-expression-pruning", "--medplum-transaction-limits", "--help"}

// shareable reports whether opts can be served as a tenant of the shared
// process: the default server.mjs and only per-server flags.
func (opts Options) shareable() bool {
	if opts.Dedicated || opts.Dir != "" || os.Getenv(SharedEnv) == "0" {
		return false
	}
	for _, a := range opts.Args {
		for _, f := range processFlags {
			if a == f || strings.HasPrefix(a, f+"=") {
				return false
			}
		}
	}
	return true
}

// tenants is the one shared process of this test binary: `server.mjs
// --tenants`, which serves many isolated servers (each its own store,
// statement and flags) under /t/{id}/fhir/R4. Starting node and loading
// the FHIR definitions costs seconds of CPU; a tenant costs milliseconds.
type tenants struct {
	srv   *Server // BaseURL is the process's origin
	demux *demux
	http  *http.Client
}

var shared struct {
	once sync.Once
	t    *tenants
	err  error
}

// sharedTenants starts the shared process on first use. It lives until the
// test binary exits (--exit-with-stdin: the pipe closes with the process).
func sharedTenants() (*tenants, error) {
	shared.once.Do(func() {
		d := &demux{writers: map[string]*tenantLog{}}
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout+startTimeout)
		defer cancel()
		srv, err := Start(ctx, Options{Args: []string{"--tenants"}, Stderr: d})
		if err != nil {
			shared.err = err
			return
		}
		// The server closes a connection idle for 5 s (keepAliveTimeout in
		// server.mjs); a client reusing one at that moment gets EOF on a
		// request it had sent (CI: "dropping tenant 59: EOF"). Idle
		// connections are let go well before the server drops them.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.IdleConnTimeout = 2 * time.Second
		shared.t = &tenants{srv: srv, demux: d, http: &http.Client{Timeout: startTimeout, Transport: tr}}
	})
	return shared.t, shared.err
}

// start makes a tenant as opts says.
func (ts *tenants) start(ctx context.Context, opts Options) (*Server, error) {
	flags, err := opts.flags()
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string][]string{"args": flags})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.srv.BaseURL+"/_tenants", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer: making a tenant of the shared server: %w; last stderr lines:\n%s", err, ts.srv.stderrTail())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("peer: the shared server refused a tenant (%d): %s", resp.StatusCode, b)
	}
	var made struct{ ID, Base, Started string }
	if err := json.Unmarshal(b, &made); err != nil || made.ID == "" || made.Base == "" {
		return nil, fmt.Errorf("peer: the shared server's answer to a new tenant is not {id, base}: %s", b)
	}
	log := &tenantLog{tail: tail.New(tailLines), out: opts.Stderr}
	log.write("peer: " + made.Started + "\n")
	ts.demux.add(made.ID, log)
	return &Server{BaseURL: made.Base, tenant: made.ID, shared: ts, tail: log.tail}, nil
}

// stop drops a tenant. The error is the shared process's death, if it died.
func (ts *tenants) stop(id string) error {
	defer ts.demux.remove(id)
	select {
	case <-ts.srv.exited:
		return fmt.Errorf("peer: the shared server had exited on its own (%v); last stderr lines:\n%s", ts.srv.waitErr, ts.srv.stderrTail())
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, ts.srv.BaseURL+"/_tenants/"+id, nil)
	if err != nil {
		return err
	}
	resp, err := ts.http.Do(req)
	if err != nil {
		return fmt.Errorf("peer: dropping tenant %s: %w", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("peer: dropping tenant %s: status %d", id, resp.StatusCode)
	}
	return nil
}

// tenantLog is where one tenant's stderr lines go.
type tenantLog struct {
	tail *tail.Buffer
	out  io.Writer // the test's Options.Stderr, or nil
}

func (l *tenantLog) write(line string) {
	_, _ = l.tail.Write([]byte(line))
	if l.out != nil {
		_, _ = l.out.Write([]byte(line))
	}
}

// tenantLine matches a tenant's line: "peer[7]: rest".
var tenantLine = regexp.MustCompile(`^peer\[([0-9]+)\]: `)

// demux splits the shared process's stderr by tenant, giving each tenant's
// writer its lines as a dedicated server writes them ("peer: rest").
// Unprefixed lines (a stack after "internal error") go with the line before.
type demux struct {
	mu      sync.Mutex
	buf     []byte
	last    string
	writers map[string]*tenantLog
}

func (d *demux) add(id string, l *tenantLog) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writers[id] = l
}

func (d *demux) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.writers, id)
}

func (d *demux) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, p...)
	for {
		i := bytes.IndexByte(d.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(d.buf[:i+1])
		d.buf = d.buf[i+1:]
		if m := tenantLine.FindStringSubmatch(line); m != nil {
			d.last = m[1]
			line = "peer: " + line[len(m[0]):]
		}
		if w := d.writers[d.last]; w != nil {
			w.write(line)
		}
	}
}
