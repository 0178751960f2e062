package fhirapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// The audit trail as FHIR AuditEvent resources, for administrators:
// GET /fhir/AuditEvent?date=…&agent-name=…&_count=N, oldest first, paged
// by sealed cursors like every search here. Each entry of the store's
// trail (store.AuditEntry) is one AuditEvent; it carries what the entry
// does, never a value.

// auditEventParams are the AuditEvent search parameters.
var auditEventParams = []param{
	{"date", "date", "http://hl7.org/fhir/SearchParameter/AuditEvent-date"},
	{"agent-name", "string", "http://hl7.org/fhir/SearchParameter/AuditEvent-agent-name"},
}

// searchAuditEvents serves GET /fhir/AuditEvent.
func (s *Server) searchAuditEvents(w http.ResponseWriter, r *http.Request) {
	if s.audit == nil {
		writeOutcome(w, http.StatusNotFound, oo("not-found", "no audit trail is kept by this server"))
		return
	}
	const typ = "AuditEvent"
	caller := api.RecordOf(r.Context()).Caller
	q, notes, ok := searchParams(w, r, auditEventParams)
	if !ok {
		return
	}
	var after int64
	if _, paged := q[paramCursor]; paged {
		var pos cursor
		if q, pos, notes, ok = s.openCursor(w, typ, caller, q); !ok {
			return
		}
		after, _ = strconv.ParseInt(pos.client, 10, 64)
	}
	var issues []mappings.Issue
	aq := store.AuditQuery{After: after}
	if v, ok := once(q, "agent-name", &issues); ok {
		aq.Caller = v
	}
	for _, v := range q["date"] {
		d, msg := parseDate(v)
		if msg != "" {
			issues = append(issues, oo("invalid", "date: "+msg))
			continue
		}
		since, until := d.start, d.end.Add(-time.Nanosecond)
		switch d.prefix {
		case "gt":
			since, until = d.end, time.Time{}
		case "ge":
			until = time.Time{}
		case "lt":
			since, until = time.Time{}, d.start.Add(-time.Nanosecond)
		case "le":
			since = time.Time{}
		}
		if !since.IsZero() && since.After(aq.Since) {
			aq.Since = since
		}
		if !until.IsZero() && (aq.Until.IsZero() || until.Before(aq.Until)) {
			aq.Until = until
		}
	}
	n := count(q, &issues)
	if len(issues) > 0 {
		writeOutcome(w, http.StatusBadRequest, issues...)
		return
	}
	aq.Limit = n + 1 // one more tells whether there is a next page
	entries := []store.AuditEntry{}
	if n > 0 {
		var err error
		if entries, err = s.audit.Audit(r.Context(), aq); err != nil {
			s.internalError(w, r, "search "+typ, err)
			return
		}
	}
	more := len(entries) > n
	entries = entries[:min(len(entries), n)]
	api.RecordOf(r.Context()).Records = len(entries)

	sealed := url.Values{}
	for k, v := range q {
		if k != paramFormat && k != paramCursor {
			sealed[k] = v
		}
	}
	sealed.Set(paramCount, strconv.Itoa(n))
	var sealedNotes []string
	for _, nt := range notes {
		sealedNotes = append(sealedNotes, nt.Message)
	}
	b := searchset(s.now())
	link := func(rel string, from int64) bool {
		c, err := s.cursors.seal(typ, caller, sealed, cursor{client: strconv.FormatInt(from, 10)}, sealedNotes, s.now())
		if err != nil {
			s.internalError(w, r, "search "+typ, err)
			return false
		}
		b.Link = append(b.Link, bundleLink{rel, s.baseURL + "/" + typ + "?" + paramCursor + "=" + c})
		return true
	}
	if !link("self", after) {
		return
	}
	if more && !link("next", entries[len(entries)-1].ID) {
		return
	}
	for _, e := range entries {
		body, err := json.Marshal(s.auditEvent(e))
		if err != nil {
			s.internalError(w, r, "search "+typ, err)
			return
		}
		b.Entry = append(b.Entry, bundleEntry{FullURL: s.baseURL + "/" + typ + "/" + auditEventID(e), Resource: body, Search: &entrySearch{Mode: "match"}})
	}
	b.addOutcome(notes)
	s.writeBundle(w, r, b)
}

func auditEventID(e store.AuditEntry) string { return "audit-" + strconv.FormatInt(e.ID, 10) }

// auditEvent maps an audit entry to an R4 AuditEvent.
func (s *Server) auditEvent(e store.AuditEntry) map[string]any {
	outcome := "0" // success
	switch {
	case e.Status >= 500:
		outcome = "8" // serious failure
	case e.Status >= 400:
		outcome = "4" // minor failure
	}
	who := e.Caller
	if who == "" {
		who = "unauthenticated"
	}
	agent := map[string]any{"who": map[string]any{"display": who}, "name": who, "requestor": true}
	if e.Role != "" {
		agent["role"] = []any{map[string]any{"text": e.Role}}
	}
	entity := map[string]any{
		"description": e.Route,
		"detail": []any{
			map[string]any{"type": "records", "valueString": strconv.Itoa(e.Records)},
			map[string]any{"type": "http-status", "valueString": strconv.Itoa(e.Status)},
		},
	}
	if e.ResourceType != "" {
		entity["name"] = e.ResourceType
	}
	if e.Connection != "" {
		entity["detail"] = append(entity["detail"].([]any), map[string]any{"type": "connection", "valueString": e.Connection})
	}
	typ := map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}
	if e.Caller == "sync" && e.Role == "" {
		typ = map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"}
		if e.Action == "R" {
			typ = map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110107", "display": "Import"}
		}
	}
	return map[string]any{
		"resourceType": "AuditEvent",
		"id":           auditEventID(e),
		"type":         typ,
		"action":       e.Action,
		"recorded":     instant(e.At),
		"outcome":      outcome,
		"agent":        []any{agent},
		"source": map[string]any{
			"site":     "ipsfhir",
			"observer": map[string]any{"display": "ipsfhir, IPS program " + s.mapping.Program},
			"type":     []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}},
		},
		"entity": []any{entity},
	}
}
