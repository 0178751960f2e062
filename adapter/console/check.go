package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/conformance/check"
)

// CheckTimeout bounds a readiness check run from the console (each of its
// requests has its own, shorter, timeout). The page waits for the run, so
// the server's write timeout must be longer, or the browser gets a broken
// answer; the run goes on if the browser gives up, and its report is kept.
const CheckTimeout = 90 * time.Second

// checkRun is the latest readiness check of a connection run from the
// console: when, by whom, and its report, or why it could not run.
type checkRun struct {
	At     time.Time
	By     string
	Report *check.Report
	// Problem says why no report was made (the options the connection's
	// configuration gives cannot describe a check); no value in it.
	Problem string
}

// Blocking are the report's results that stop sync, Others the rest, in
// report order.
func (r *checkRun) Blocking() []check.Result { return r.results(true) }

// Others: see Blocking.
func (r *checkRun) Others() []check.Result { return r.results(false) }

func (r *checkRun) results(blocking bool) []check.Result {
	if r == nil || r.Report == nil {
		return nil
	}
	var out []check.Result
	for _, res := range r.Report.Results {
		if res.Blocks() == blocking {
			out = append(out, res)
		}
	}
	return out
}

// checkRuns keeps the latest run of each connection, in memory: a restart
// forgets them, and each replica has its own.
type checkRuns struct {
	mu      sync.Mutex
	latest  map[string]*checkRun
	running map[string]bool
}

func newCheckRuns() *checkRuns {
	return &checkRuns{latest: map[string]*checkRun{}, running: map[string]bool{}}
}

func (c *checkRuns) get(name string) *checkRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest[name]
}

// start marks a run of name as begun; false when one is running already.
func (c *checkRuns) start(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[name] {
		return false
	}
	c.running[name] = true
	return true
}

func (c *checkRuns) finish(name string, run *checkRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.running, name)
	c.latest[name] = run
}

// runCheck runs the readiness check of a connection (as ipsfhir check
// --config FILE --connection NAME does, never with write tests) and shows
// the connection's page with its results.
func (c *console) runCheck(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PathValue("name")
	api.RecordOf(r.Context()).ResourceType = "connections"
	known := false
	for _, cn := range c.conns() {
		known = known || cn.Name == name
	}
	if !known {
		c.errorPage(w, r, q, http.StatusNotFound, "No such connection", "The configuration has no connection by that name. The overview lists every one.")
		return
	}
	if c.check == nil {
		c.errorPage(w, r, q, http.StatusNotImplemented, "Not available", "This service cannot run the readiness check from the console. Run ipsfhir check --config FILE --connection NAME.")
		return
	}
	back := Prefix + "connections/" + url.PathEscape(name)
	if !c.checks.start(name) {
		http.Redirect(w, r, back+"?check=running#check", http.StatusSeeOther)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), CheckTimeout)
	defer cancel()
	run := &checkRun{At: c.now(), By: q.caller.Name}
	rep, err := c.check(ctx, name)
	switch {
	case err == nil:
		run.Report = rep
	case errors.Is(err, check.ErrOptions):
		run.Problem = "The connection's configuration cannot describe a check (its base URL or auth). ipsfhir check --config FILE --connection NAME says what is wrong."
	default:
		run.Problem = "The check could not be run; the service log has its kind."
		c.log.LogAttrs(r.Context(), slog.LevelError, "console readiness check not run", slog.String("connection", name), slog.String("error_kind", "check"))
	}
	c.checks.finish(name, run)
	http.Redirect(w, r, back+"?check=done#check", http.StatusSeeOther)
}
