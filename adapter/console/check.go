package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/check"
)

// CheckTimeout bounds a readiness check run from the console (each of its
// requests has its own, shorter, timeout). The check runs in the
// background; a run unfinished after CheckTimeout and a margin was
// abandoned (its replica stopped), and the next press starts a new one.
const CheckTimeout = 90 * time.Second

// checkAbandoned is how long after it started an unfinished run is taken to
// have been abandoned.
const checkAbandoned = CheckTimeout + 30*time.Second

// checkRun is the latest readiness check of a connection run from the
// console (store.ReadinessCheck): when, by whom, and its report, or why it
// could not run.
type checkRun struct {
	At       time.Time
	By       string
	Finished time.Time
	// Running: started and not finished; Abandoned: so for longer than
	// checkAbandoned (the replica running it stopped).
	Running, Abandoned bool
	Report             *check.Report
	// Problem says why no report was made; no value in it.
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

// Problems a run may end with, as stored (tokens) and as shown.
const (
	problemOptions = "options"
	problemError   = "error"
)

var problemText = map[string]string{
	problemOptions: "The connection's configuration cannot describe a check (its base URL or auth). ipsfhir check --config FILE --connection NAME says what is wrong.",
	problemError:   "The check could not be run; the service log has its kind.",
}

// latestCheck reads the latest readiness check of a connection from the
// store; nil when none was run.
func (c *console) latestCheck(ctx context.Context, name string) (*checkRun, error) {
	rc, err := c.store.ReadinessCheck(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	run := &checkRun{At: rc.Started, By: rc.By, Finished: rc.Finished, Running: rc.Running()}
	run.Abandoned = run.Running && c.now().Sub(rc.Started) >= checkAbandoned
	if rc.Problem != "" {
		run.Problem = problemText[rc.Problem]
		if run.Problem == "" {
			run.Problem = problemText[problemError]
		}
	}
	if rc.Report != nil {
		var rep check.Report
		if err := json.Unmarshal(rc.Report, &rep); err != nil {
			return nil, fmt.Errorf("console: stored readiness report: %w", err)
		}
		run.Report = &rep
	}
	return run, nil
}

// runCheck starts the readiness check of a connection (as ipsfhir check
// --config FILE --connection NAME does, never with write tests) in the
// background and sends the browser to the connection's page, which shows
// it running and then its results. One run per connection at a time, over
// every replica.
func (c *console) runCheck(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PathValue("name")
	if _, ok := c.connectionFor(w, r, q, c.check != nil, cannotCheck); !ok {
		return
	}
	back := Prefix + "connections/" + url.PathEscape(name)
	started := c.now()
	err := c.store.StartReadinessCheck(r.Context(), name, q.caller.Name, started, checkAbandoned)
	if errors.Is(err, store.ErrConflict) {
		http.Redirect(w, r, back+"?check=running#check", http.StatusSeeOther)
		return
	}
	if err != nil {
		c.internalError(w, r, q, "check", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), CheckTimeout)
	c.background.Go(func() {
		defer cancel()
		var report []byte
		problem := ""
		rep, err := c.check(ctx, name)
		switch {
		case err == nil:
			if report, err = json.Marshal(rep); err != nil {
				problem = problemError
			}
		case errors.Is(err, check.ErrOptions):
			problem = problemOptions
		default:
			problem = problemError
			c.log.LogAttrs(ctx, slog.LevelError, "console readiness check not run", slog.String("connection", name), slog.String("error_kind", "check"))
		}
		// The outcome is stored even when the run used all its time.
		done, cancelDone := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancelDone()
		if err := c.store.FinishReadinessCheck(done, name, started, c.now(), report, problem); err != nil {
			c.log.LogAttrs(done, slog.LevelError, "console readiness check not stored", slog.String("connection", name), slog.String("error_kind", "store"))
		}
	})
	http.Redirect(w, r, back+"?check=started#check", http.StatusSeeOther)
}
