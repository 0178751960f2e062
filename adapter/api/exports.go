package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// ExportJob is what an administrator sees of a Bulk Data export: never
// its parameters or its content.
type ExportJob struct {
	ID string `json:"id"`
	// Owner is the name of the API key that started it.
	Owner string `json:"owner"`
	// State is running, complete or failed.
	State        string    `json:"state"`
	Deidentified bool      `json:"deidentified"`
	StartedAt    time.Time `json:"startedAt"`
	FinishedAt   time.Time `json:"finishedAt,omitzero"`
	// ExpiresAt is when a finished job's files are dropped.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Files is how many output files it has; Fetched says its owner has
	// fetched every one, which frees the owner's export slot.
	Files   int  `json:"files"`
	Fetched bool `json:"fetched"`
}

// Exports is the Bulk Data exports an administrator can list and cancel
// (the /fhir facade's).
type Exports interface {
	// ExportJobs lists the jobs kept now, oldest first.
	ExportJobs() []ExportJob
	// CancelExport stops a running job or drops a finished one; false
	// when there is no job with id.
	CancelExport(id string) bool
}

// adminExports serves GET /admin/exports.
func (a *api) adminExports(w http.ResponseWriter, _ *http.Request) {
	jobs := a.admin.Exports.ExportJobs()
	if jobs == nil {
		jobs = []ExportJob{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"exports": jobs})
}

// adminCancelExport serves DELETE /admin/exports/{id}.
func (a *api) adminCancelExport(w http.ResponseWriter, r *http.Request) {
	if !a.admin.Exports.CancelExport(mux.Vars(r)["id"]) {
		writeIssues(w, http.StatusNotFound, issue("not-found", "", "no export with this id: it never existed, finished and expired, or was cancelled"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
