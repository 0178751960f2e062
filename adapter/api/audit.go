package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// Audited returns middleware that records every request in the audit trail
// once it is answered: who (the caller AccessLog's record names), the
// action, the route template, the resource type, how many records and the
// status. It must run inside AccessLog, whose record it reads; handlers may
// set RequestRecord.Records (and ResourceType) where they know better than
// the defaults. Requests to public routes (public reports them) are not
// recorded: they read no records. Unauthenticated requests are, as route
// "unmatched" with their 401.
//
// A trail that cannot be written is logged (the error kind only) and the
// request, already answered, stands.
func Audited(a store.Auditor, log *slog.Logger, public func(route string) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			rec := RecordOf(r.Context())
			if rec.Route != "" && public != nil && public(rec.Route) {
				return
			}
			e := AuditEntryOf(r.Method, rec, sw.status())
			// The answer is out; the entry is written even if the caller
			// has gone away meanwhile.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			if err := a.AddAudit(ctx, e); err != nil {
				log.LogAttrs(ctx, slog.LevelError, "audit entry not recorded", rec.RouteAttr(), slog.String("error_kind", auditErrorKind(err)))
			}
		})
	}
}

// AuditEntryOf is the audit entry of a request answered with status.
func AuditEntryOf(method string, rec *RequestRecord, status int) store.AuditEntry {
	route := rec.Route
	if route == "" {
		route = "unmatched"
	}
	e := store.AuditEntry{
		Caller: rec.Caller.Name, Role: string(rec.Caller.Role),
		Action: auditAction(method, route), Route: route,
		ResourceType: rec.ResourceType, Records: rec.Records, Status: status,
	}
	if e.ResourceType == "" {
		e.ResourceType = resourceTypeOf(route)
	}
	if e.Records == 0 && e.Action != "E" && status >= 200 && status < 300 {
		e.Records = 1 // one record read, created, changed or deleted by id
	}
	return e
}

// auditAction is the FHIR AuditEvent action of a request: R for a read of
// one record (a route ending in a parameter), E for searches, lists and
// operations (a readiness check), C, U and D for writes (enabling or
// disabling a connection is an update).
func auditAction(method, route string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		if strings.HasSuffix(route, "}") {
			return "R"
		}
		return "E"
	case http.MethodPut, http.MethodPatch:
		return "U"
	case http.MethodDelete:
		return "D"
	case http.MethodPost:
		last := route[strings.LastIndex(route, "/")+1:]
		if strings.HasPrefix(last, "$") || strings.HasPrefix(last, "_") || last == "accept" || last == "decline" ||
			last == "replay" || last == "resolve" || last == "reconcile" || last == "check" {
			return "E"
		}
		if last == "enable" || last == "disable" || last == "follow-file" {
			return "U" // a connection's setting (the console)
		}
		return "C"
	}
	return "E"
}

// resourceTypeOf names the records a route template is about: its first
// segment after /fhir, /api/v1 or /admin that is neither a parameter nor an
// operation ("/fhir/Goal/{id}" → Goal, "/api/v1/clients/{id}/goals" →
// clients).
func resourceTypeOf(route string) string {
	for _, p := range []string{"/fhir/", "/api/v1/", "/admin/"} {
		rest, ok := strings.CutPrefix(route, p)
		if !ok {
			continue
		}
		for seg := range strings.SplitSeq(rest, "/") {
			if seg != "" && !strings.HasPrefix(seg, "{") && !strings.HasPrefix(seg, "$") && !strings.HasPrefix(seg, "_") {
				return seg
			}
		}
	}
	return ""
}

// auditErrorKind is a patient-free token for a failed audit write.
func auditErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrUnavailable):
		return "store-unavailable"
	}
	return "store-error"
}

// adminAudit lists the audit trail: GET /admin/audit?caller=NAME&since=T&
// until=T&after=ID&limit=N, oldest first. since and until are RFC 3339
// instants; limit is 1 to store.MaxAuditLimit (100 by default). The answer
// is {"entries": [...], "next": ID}: next, when present, is the after of
// the following page.
func (a *api) adminAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var aq store.AuditQuery
	aq.Caller = q.Get("caller")
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeIssues(w, http.StatusBadRequest, issue("invalid", p.name, p.name+" must be an RFC 3339 instant, e.g. 2026-11-01T00:00:00Z"))
				return
			}
			*p.to = t
		}
	}
	for _, p := range []struct {
		name string
		to   func(int64)
		min  int64
		max  int64
	}{
		{"after", func(v int64) { aq.After = v }, 0, 1<<63 - 1},
		{"limit", func(v int64) { aq.Limit = int(v) }, 1, store.MaxAuditLimit},
	} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < p.min || n > p.max {
				writeIssues(w, http.StatusBadRequest, issue("invalid", p.name, fmt.Sprintf("%s must be a whole number from %d to %d", p.name, p.min, p.max)))
				return
			}
			p.to(n)
		}
	}
	entries, err := a.audit.Audit(r.Context(), aq)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	RecordOf(r.Context()).Records = len(entries)
	out := map[string]any{"entries": entries}
	if len(entries) == aq.LimitOf() {
		out["next"] = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}
