package store

import (
	"context"
	"time"
)

// This file is the audit trail: who read and changed what, when. An entry
// says who (the API key's name and role, or "sync" for the engine's EHR
// reads and writes), what was done (a FHIR AuditEvent action code and the
// route or pass), to which resource type, to how many records, and how it
// ended. It never holds a value: no id, no identifier, no search string, no
// text. Operators keep it for the configured time (config audit.retention).

// AuditEntry is one audited access.
type AuditEntry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// Caller is the API key's name, "sync" for the sync engine, or ""
	// when the request presented no valid key.
	Caller string `json:"caller"`
	// Role is the caller's role ("" when unauthenticated or sync).
	Role string `json:"role,omitempty"`
	// Action is the FHIR AuditEvent action: C create, R read, U update,
	// D delete, E execute (searches by POST, operations, exports).
	Action string `json:"action"`
	// Route is the request's route template ("/fhir/Goal/{id}"), or for
	// the engine "push" or "pull".
	Route string `json:"route"`
	// Connection names the EHR for the engine's entries.
	Connection string `json:"connection,omitempty"`
	// ResourceType is the kind of record ("Goal", "clients"), "" when the
	// route names none.
	ResourceType string `json:"resourceType,omitempty"`
	// Records is how many records were read or written; 0 when none or
	// not known.
	Records int `json:"records"`
	// Status is the HTTP status answered (the engine: 200 for a pass that
	// succeeded, 500 for one that failed).
	Status int `json:"status"`
}

// AuditQuery selects audit entries: those of a caller ("" for all) from
// Since up to Until (zero for no bound), with ids above After, oldest first,
// at most Limit.
type AuditQuery struct {
	Caller       string
	Since, Until time.Time
	After        int64
	Limit        int
}

// MaxAuditLimit bounds AuditQuery.Limit.
const MaxAuditLimit = 1000

// Auditor keeps the audit trail.
type Auditor interface {
	// AddAudit records an entry; its ID and, when zero, At are set.
	AddAudit(ctx context.Context, e AuditEntry) error
	// Audit lists entries as q says.
	Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// PruneAudit deletes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// CheckAudit refuses an entry that cannot be an audit record.
func CheckAudit(e AuditEntry) error {
	switch e.Action {
	case "C", "R", "U", "D", "E":
	default:
		return invalid("audit action must be C, R, U, D or E")
	}
	if e.Route == "" || e.Records < 0 || e.Status < 100 || e.Status > 599 {
		return invalid("audit entry needs a route, records from 0 and an HTTP status")
	}
	return nil
}

// LimitOf is q's limit within 1..MaxAuditLimit (100 when unset).
func (q AuditQuery) LimitOf() int {
	switch {
	case q.Limit <= 0:
		return 100
	case q.Limit > MaxAuditLimit:
		return MaxAuditLimit
	}
	return q.Limit
}
