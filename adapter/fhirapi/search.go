package fhirapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ---------------------------------------------------------------- read

// readRecord serves GET /fhir/{type}/{id}. A client whose consent does not
// allow EHR sharing has, to the caller, no resources: 404, as for an id that
// never existed.
func readRecord(typ string) func(*Server, http.ResponseWriter, *http.Request) {
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		st, key, ok, err := s.locate(r.Context(), typ, id)
		if err != nil {
			s.internalError(w, r, "read "+typ, err, id)
			return
		}
		if !ok || !s.allowsEHR(st.Client) {
			writeOutcome(w, http.StatusNotFound, oo("not-found", "no "+typ+" with this id"))
			return
		}
		es, err := s.entries(st)
		if err != nil {
			s.internalError(w, r, "map "+typ, err, id, st.Client.ID)
			return
		}
		for _, e := range es {
			if e.Key != key {
				continue
			}
			body, err := mappings.MarshalCompact(e.Resource)
			if err != nil {
				s.internalError(w, r, "marshal "+typ, err, id, st.Client.ID)
				return
			}
			w.Header().Set("ETag", `W/"`+strconv.FormatInt(int64(st.Version), 10)+`"`)
			w.Header().Set("Last-Modified", st.UpdatedAt.UTC().Format(http.TimeFormat))
			writeFHIR(w, http.StatusOK, append(body, '\n'))
			return
		}
		writeOutcome(w, http.StatusNotFound, oo("not-found", "no "+typ+" with this id"))
	}
}

// ---------------------------------------------------------------- search

// recordQuery is a parsed search of records.
type recordQuery struct {
	patient      string // IPS client id, from patient=Patient/{id}
	patientIdent *[2]string
	identifier   *mappings.Key // nil: any; a zero Key with foreign: matches nothing
	foreign      bool          // identifier names no record of this program and type
	lastUpdated  dateFilter
	count        int
	cursor       cursor // where the page starts; zero: the first page
}

func parseRecordQuery(typ string, q url.Values) (recordQuery, []mappings.Issue) {
	var issues []mappings.Issue
	rq := recordQuery{count: count(q, &issues)}
	if v, ok := once(q, "patient", &issues); ok {
		if id, ok := patientRef(v); ok {
			rq.patient = id
		} else {
			issues = append(issues, oo("invalid", "patient: must be Patient/{id} (or {id}), where id is the IPS client id; use patient:identifier=system|value for the EHR's patient identifier"))
		}
	}
	if v, ok := once(q, "patient:identifier", &issues); ok {
		if sys, val, ok := token(v); ok {
			rq.patientIdent = &[2]string{sys, val}
		} else {
			issues = append(issues, oo("invalid", "patient:identifier: must be system|value, both given"))
		}
	}
	if v, ok := once(q, "identifier", &issues); ok {
		if sys, val, ok := token(v); ok {
			k, ok := mappings.ParseKey(sys, val)
			rq.identifier = &k
			rq.foreign = !ok || typeOfKind(k.Kind) != typ
		} else {
			issues = append(issues, oo("invalid", "identifier: must be system|value, both given"))
		}
	}
	rq.lastUpdated = parseDates(q, "_lastUpdated", &issues)
	return rq, issues
}

// searchRecords serves GET /fhir/{type}?… and POST /fhir/{type}/_search.
// The Bundle's self and next links carry a sealed cursor (cursor.go) and
// nothing else: the search's values never go back into a URL, whichever way
// they came.
func searchRecords(typ string) func(*Server, http.ResponseWriter, *http.Request) {
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		q, ok := searchParams(w, r, recordParams, "patient:identifier")
		if !ok {
			return
		}
		caller := api.RecordOf(r.Context()).Caller
		var pos cursor
		if _, paged := q[paramCursor]; paged {
			if q, pos, ok = s.openCursor(w, typ, caller, q); !ok {
				return
			}
		}
		rq, issues := parseRecordQuery(typ, q)
		if len(issues) > 0 {
			writeOutcome(w, http.StatusBadRequest, issues...)
			return
		}
		rq.cursor = pos
		if rq.identifier != nil && !rq.foreign && rq.identifier.Program != s.mapping.Program {
			rq.foreign = true
		}
		visit, ids, err := s.scope(r.Context(), rq)
		if err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		p, err := s.collect(typ, rq, visit)
		if err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		// The search as the cursor keeps it: its parameters, the page size
		// made explicit, and no _format (answers are JSON whatever it says).
		sealed := url.Values{}
		for k, v := range q {
			if k != paramFormat {
				sealed[k] = v
			}
		}
		sealed.Set(paramCount, strconv.Itoa(rq.count))
		b := searchset(s.now())
		b.Total = &p.total
		link := func(rel string, at cursor) error {
			c, err := s.cursors.seal(typ, caller, sealed, at, s.now())
			if err == nil {
				b.Link = append(b.Link, bundleLink{rel, s.baseURL + "/" + typ + "?" + paramCursor + "=" + c})
			}
			return err
		}
		if err := link("self", pos); err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		if p.next != nil && rq.count > 0 {
			if err := link("next", *p.next); err != nil {
				s.internalError(w, r, "search "+typ, err, ids...)
				return
			}
		}
		for _, e := range p.entries {
			body, err := mappings.MarshalCompact(e.Resource)
			if err != nil {
				s.internalError(w, r, "marshal "+typ, err, ids...)
				return
			}
			b.Entry = append(b.Entry, bundleEntry{FullURL: s.baseURL + "/" + typ + "/" + resourceID(e.Key), Resource: body, Search: &entrySearch{Mode: "match"}})
		}
		s.writeBundle(w, r, b)
	}
}

// openCursor replaces a request's parameters with the search its _cursor
// holds, and returns where the page starts. The cursor carries the whole
// search, so nothing else may come with it but _format. On a problem it
// writes the answer and reports false: 400 for a cursor this server did not
// seal for this search and caller (or sealed under another key: another
// replica's, or this one's before a restart without a configured key), 410
// for an expired one; both say to search again.
func (s *Server) openCursor(w http.ResponseWriter, typ string, caller api.Key, q url.Values) (url.Values, cursor, bool) {
	var issues []mappings.Issue
	v, _ := once(q, paramCursor, &issues)
	for _, name := range sortedKeys(q) {
		if name != paramCursor && name != paramFormat {
			issues = append(issues, oo("not-supported", "_cursor: give it alone, as the link has it: it carries the whole search, parameters and page size"))
			break
		}
	}
	if len(issues) > 0 {
		writeOutcome(w, http.StatusBadRequest, issues...)
		return nil, cursor{}, false
	}
	sq, pos, err := s.cursors.open(typ, caller, v, s.now())
	switch {
	case errors.Is(err, errCursorExpired):
		writeOutcome(w, http.StatusGone, oo("processing", fmt.Sprintf(
			"_cursor: this paging link has expired (links are valid for %s); search again from the first page", shortDuration(s.cursors.ttl))))
		return nil, cursor{}, false
	case err != nil:
		writeOutcome(w, http.StatusBadRequest, oo("invalid",
			"_cursor: not a paging link this server gave out for this search and API key, or one made before a restart or by another replica "+
				"with a different server.cursorKey; search again from the first page"))
		return nil, cursor{}, false
	}
	return sq, pos, true
}

// visitor walks the clients a search may match, in id order.
type visitor func(f func(store.Stored) (bool, error)) error

// scope narrows a search to the one client its patient or identifier
// parameters name, or to every client when they name none. It also returns
// the ids the request carried, to keep them out of logged errors.
func (s *Server) scope(ctx context.Context, rq recordQuery) (visitor, []string, error) {
	var ids []string
	var found []store.Stored
	scoped, none := false, false
	add := func(st store.Stored, ok bool) {
		scoped = true
		switch {
		case !ok:
			none = true
		case len(found) == 0:
			found = append(found, st)
		case found[0].Client.ID != st.Client.ID:
			none = true // two parameters naming two clients: nothing has both
		}
	}
	if rq.patient != "" {
		ids = append(ids, rq.patient)
		st, ok, err := s.loadClient(ctx, rq.patient)
		if err != nil {
			return nil, ids, err
		}
		add(st, ok)
	}
	if rq.patientIdent != nil {
		ids = append(ids, rq.patientIdent[0], rq.patientIdent[1])
		st, ok, err := s.clientByPatient(ctx, rq.patientIdent[0], rq.patientIdent[1], "")
		if err != nil {
			return nil, ids, err
		}
		add(st, ok)
	}
	if rq.identifier != nil {
		if rq.foreign {
			add(store.Stored{}, false)
		} else {
			ids = append(ids, rq.identifier.Client)
			st, ok, err := s.loadClient(ctx, rq.identifier.Client)
			if err != nil {
				return nil, ids, err
			}
			add(st, ok)
		}
	}
	switch {
	case none:
		return func(func(store.Stored) (bool, error)) error { return nil }, ids, nil
	case scoped:
		return func(f func(store.Stored) (bool, error)) error {
			_, err := f(found[0])
			return err
		}, ids, nil
	}
	return func(f func(store.Stored) (bool, error)) error { return s.eachClient(ctx, "", f) }, ids, nil
}

// page is one page of search results.
type page struct {
	total   int
	entries []mappings.Entry
	next    *cursor
}

// collect counts every match and keeps the page the cursor points at. Only
// the clients on the page are mapped; the rest are counted from their keys.
func (s *Server) collect(typ string, rq recordQuery, visit visitor) (page, error) {
	var p page
	full := func() bool { return len(p.entries) >= rq.count }
	err := visit(func(st store.Stored) (bool, error) {
		if !s.allowsEHR(st.Client) || !rq.lastUpdated.matches(st.UpdatedAt) {
			return true, nil
		}
		var keys []mappings.Key
		for _, tk := range s.keysOf(st.Client) {
			if tk.typ == typ && (rq.identifier == nil || *rq.identifier == tk.key) {
				keys = append(keys, tk.key)
			}
		}
		p.total += len(keys)
		skip := 0
		switch c := strings.Compare(st.Client.ID, rq.cursor.client); {
		case c < 0:
			return true, nil
		case c == 0:
			skip = rq.cursor.offset
		}
		if skip >= len(keys) {
			return true, nil
		}
		if full() {
			if p.next == nil {
				p.next = &cursor{st.Client.ID, skip}
			}
			return true, nil
		}
		es, err := s.entries(st)
		if err != nil {
			return false, err
		}
		byKey := make(map[mappings.Key]mappings.Entry, len(es))
		for _, e := range es {
			byKey[e.Key] = e
		}
		for i := skip; i < len(keys); i++ {
			if full() {
				p.next = &cursor{st.Client.ID, i}
				break
			}
			e, ok := byKey[keys[i]]
			if !ok {
				return false, fmt.Errorf("mapping has no %s resource the keys list", typ)
			}
			p.entries = append(p.entries, e)
		}
		return true, nil
	})
	return p, err
}

// ---------------------------------------------------------------- bundles

type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         bundleMeta    `json:"meta"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []bundleLink  `json:"link,omitempty"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

type bundleMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
	Search   *entrySearch    `json:"search,omitempty"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

func searchset(now time.Time) bundle {
	return bundle{ResourceType: "Bundle", ID: uuid.NewString(), Meta: bundleMeta{LastUpdated: instant(now)}, Type: "searchset"}
}

func (s *Server) writeBundle(w http.ResponseWriter, r *http.Request, b bundle) {
	body, err := marshalFHIR(b)
	if err != nil {
		s.internalError(w, r, "marshal Bundle", err)
		return
	}
	writeFHIR(w, http.StatusOK, body)
}

// instant writes a FHIR instant.
func instant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// shortDuration writes 1h for 1h0m0s and 30m for 30m0s.
func shortDuration(d time.Duration) string {
	t := d.String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}
