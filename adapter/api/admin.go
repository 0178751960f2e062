package api

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
)

// AdminStore is what /admin needs of the store.
type AdminStore interface {
	DeadLetters(ctx context.Context, connection string) ([]store.DeadLetter, error)
	FailureReasons(ctx context.Context, connection string) ([]store.ReasonCount, error)
	Replay(ctx context.Context, id int64) error
	Conflicts(ctx context.Context, connection string, all bool) ([]store.Conflict, error)
	ResolveConflict(ctx context.Context, id int64, resolution string) error
	OutboxDepth(ctx context.Context) (map[string]int, error)
	LoadProgress(ctx context.Context, connection string) (store.LoadProgress, error)
	EnqueueAll(ctx context.Context, connection string) (int, error)
}

// Admin is what the /admin endpoints serve.
type Admin struct {
	Store AdminStore
	// Plans returns each connected EHR's sync plan by connection name.
	Plans func() map[string]*plan.Plan
	// Exports, when set, lets admins list and cancel Bulk Data exports
	// (/admin/exports).
	Exports Exports
	// ResolveConflict, when set, resolves a conflict in place of
	// Store.ResolveConflict: kept-ips and kept-ehr make the chosen value
	// stand on both sides, anything else is a note that only closes (see
	// syncer.Engine.ResolveConflict, whose errors it answers).
	ResolveConflict func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error)
}

func (a *api) adminRoutes(r *mux.Router) {
	a.handle(r, http.MethodGet, "/admin/connections", permAdmin, a.adminConnections)
	a.handle(r, http.MethodGet, "/admin/connections/{name}/plan", permAdmin, a.adminPlan)
	a.handle(r, http.MethodPost, "/admin/connections/{name}/reconcile", permAdmin, a.adminReconcile)
	a.handle(r, http.MethodGet, "/admin/dead-letters", permAdmin, a.adminDeadLetters)
	a.handle(r, http.MethodPost, "/admin/dead-letters/{id}/replay", permAdmin, a.adminReplay)
	a.handle(r, http.MethodGet, "/admin/failures", permAdmin, a.adminFailures)
	a.handle(r, http.MethodGet, "/admin/conflicts", permAdmin, a.adminConflicts)
	a.handle(r, http.MethodPost, "/admin/conflicts/{id}/resolve", permAdmin, a.adminResolve)
	if a.admin.Exports != nil {
		a.handle(r, http.MethodGet, "/admin/exports", permAdmin, a.adminExports)
		a.handle(r, http.MethodDelete, "/admin/exports/{id}", permAdmin, a.adminCancelExport)
	}
}

func (a *api) adminConnections(w http.ResponseWriter, r *http.Request) {
	depth, err := a.admin.Store.OutboxDepth(r.Context())
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	type conn struct {
		Name         string    `json:"name"`
		Writes       bool      `json:"writes"`
		Bundles      string    `json:"bundles"`
		OutboxDepth  int       `json:"outboxDepth"`
		Load         *LoadJSON `json:"load,omitempty"`
		PlanWarnings []string  `json:"warnings,omitempty"`
	}
	out := []conn{}
	for name, p := range a.plans() {
		c := conn{Name: name, Writes: p.Writes(), Bundles: p.Bundles, OutboxDepth: depth[name], PlanWarnings: p.Warnings}
		lp, err := a.admin.Store.LoadProgress(r.Context(), name)
		switch {
		case err == nil:
			l := NewLoadJSON(lp)
			c.Load = &l
		case !errors.Is(err, store.ErrNotFound):
			a.storeError(w, r, err)
			return
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"connections": out})
}

// LoadJSON is a connection's initial load as /admin/connections and
// sync --once --json show it (openapi.json's initialLoad).
type LoadJSON struct {
	Total            int       `json:"total"`
	Done             int       `json:"done"`
	Started          time.Time `json:"started"`
	Finished         time.Time `json:"finished,omitzero"`
	RatePerSecond    float64   `json:"ratePerSecond"`
	RemainingSeconds *float64  `json:"remainingSeconds,omitempty"`
}

// NewLoadJSON is p as LoadJSON: remainingSeconds only with an estimate.
func NewLoadJSON(p store.LoadProgress) LoadJSON {
	l := LoadJSON{Total: p.Total, Done: p.Done, Started: p.Started, Finished: p.Finished, RatePerSecond: p.Rate}
	if p.Estimated {
		s := p.Remaining.Seconds()
		l.RemainingSeconds = &s
	}
	return l
}

func (a *api) plans() map[string]*plan.Plan {
	if a.admin.Plans == nil {
		return nil
	}
	return a.admin.Plans()
}

func (a *api) adminPlan(w http.ResponseWriter, r *http.Request) {
	p := a.plans()[mux.Vars(r)["name"]]
	if p == nil {
		writeIssues(w, http.StatusNotFound, issue("not-found", "name", "no connected EHR by that name"))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// adminReconcile queues every client for one connection: after an EHR was
// restored from a backup, or resources were deleted there, the next push
// finds and rewrites what is missing (unchanged records cost a ledger read).
func (a *api) adminReconcile(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if a.plans()[name] == nil {
		writeIssues(w, http.StatusNotFound, issue("not-found", "name", "no connected EHR by that name"))
		return
	}
	n, err := a.admin.Store.EnqueueAll(r.Context(), name)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"connection": name, "queued": n})
}

func (a *api) adminDeadLetters(w http.ResponseWriter, r *http.Request) {
	dl, err := a.admin.Store.DeadLetters(r.Context(), r.URL.Query().Get("connection"))
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if dl == nil {
		dl = []store.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadLetters": dl})
}

// adminFailures says what is failing, grouped by connection and reason,
// largest group first: items still retried and dead letters. One EHR
// refusing one kind of write shows up as one line, not as hundreds of dead
// letters to read through.
func (a *api) adminFailures(w http.ResponseWriter, r *http.Request) {
	rs, err := a.admin.Store.FailureReasons(r.Context(), r.URL.Query().Get("connection"))
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if rs == nil {
		rs = []store.ReasonCount{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"failures": rs})
}

func (a *api) adminReplay(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := a.admin.Store.Replay(r.Context(), id); err != nil {
		a.storeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) adminConflicts(w http.ResponseWriter, r *http.Request) {
	cs, err := a.admin.Store.Conflicts(r.Context(), r.URL.Query().Get("connection"), r.URL.Query().Get("all") == "true")
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if cs == nil {
		cs = []store.Conflict{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"conflicts": cs})
}

func (a *api) adminResolve(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	resolution := r.URL.Query().Get("resolution")
	if resolution == "" {
		writeIssues(w, http.StatusBadRequest, issue("required", "resolution", "say how the conflict was resolved: ?resolution=kept-ips, kept-ehr or a short note"))
		return
	}
	var err error
	if a.admin.ResolveConflict != nil {
		_, err = a.admin.ResolveConflict(r.Context(), id, resolution)
	} else {
		err = a.admin.Store.ResolveConflict(r.Context(), id, resolution)
	}
	switch {
	case errors.Is(err, syncer.ErrConflictStale):
		writeIssues(w, http.StatusConflict, issue("conflict", "resolution",
			"the record changed since the conflict was found (the field no longer holds the value that was applied, or the goal is gone): nothing was rewritten and the conflict stays open; look at the record, then keep a side once the record holds it, or close the conflict with a note"))
	case errors.Is(err, syncer.ErrCannotApply):
		writeIssues(w, http.StatusConflict, issue("not-supported", "resolution",
			"this side's value cannot be written into the IPS record automatically (for a whole resource changed in the EHR, the conflict keeps only a description of the EHR's version): nothing was changed and the conflict stays open; make the change in the IPS record, then keep the IPS value, or close the conflict with a note"))
	case err != nil:
		a.storeError(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		writeIssues(w, http.StatusBadRequest, issue("value", "id", "must be a positive number"))
		return 0, false
	}
	return id, true
}

// storeError maps the store's error kinds to HTTP once.
func (a *api) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeIssues(w, http.StatusNotFound, issue("not-found", "", "not found"))
	case errors.Is(err, store.ErrConflict):
		writeIssues(w, http.StatusConflict, issue("conflict", "", "already done, or changed meanwhile"))
	case errors.Is(err, store.ErrInvalid):
		writeIssues(w, http.StatusBadRequest, issue("invalid", "", "invalid request"))
	default:
		a.internalError(w, r, "admin", err)
	}
}
