package fhirapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
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
	// Who: IPS client ids (patient, subject), patient identifiers
	// (patient:identifier, subject:identifier). Every one given must name
	// the same client; nobody is set when one names no patient at all
	// (subject=Group/…).
	patients      []string
	patientIdents [][2]string
	nobody        bool
	identifier    *mappings.Key // nil: any; a zero Key with foreign: matches nothing
	foreign       bool          // identifier names no record of this program and type
	ids           []string      // _id: nil, any; else the ids every _id allows
	codes         [][]tokenValue
	lastUpdated   dateFilter

	count    int
	sort     order
	summary  string   // "" (or false), count or data
	elements []string // _elements: nil, every element; else the top-level elements asked for
	cursor   cursor   // where the page starts; zero: the first page
}

// order is the order of search results.
type order int

const (
	byClient      order = iota // client id, then mapping order (the default)
	byUpdated                  // _sort=_lastUpdated: the client's last save, then client id
	byUpdatedDesc              // _sort=-_lastUpdated: the latest save first, then client id
)

// subsetted reports whether the search returns resources cut down by
// _elements or _summary=data (tagged SUBSETTED).
func (rq recordQuery) subsetted() bool { return rq.elements != nil || rq.summary == "data" }

// parseRecordQuery reads a record search. issues are what makes it fail
// (400); notes what it ignored, under lenient handling: a value of a
// supported result parameter the facade does not support (a _sort order, a
// _summary mode), which it also drops from q, so the cursor does not keep it.
func parseRecordQuery(typ string, q url.Values, strict bool) (rq recordQuery, issues, notes []mappings.Issue) {
	rq.count = count(q, &issues)
	for _, name := range []string{"patient", "subject"} {
		if v, ok := once(q, name, &issues); ok {
			id, ok := patientRef(v)
			switch {
			case ok:
				rq.patients = append(rq.patients, id)
			case name == "subject" && otherSubject.MatchString(v):
				rq.nobody = true // a Group or other non-Patient subject: ours are all patients
			default:
				issues = append(issues, oo("invalid", name+": must be Patient/{id} (or {id}), where id is the IPS client id; use "+name+":identifier=system|value for the EHR's patient identifier"))
			}
		}
		if v, ok := once(q, name+":identifier", &issues); ok {
			if sys, val, ok := token(v); ok {
				rq.patientIdents = append(rq.patientIdents, [2]string{sys, val})
			} else {
				issues = append(issues, oo("invalid", name+":identifier: must be system|value, both given"))
			}
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
	rq.ids = parseIDs(q, &issues)
	if typ == "Observation" {
		for _, occurrence := range q["code"] {
			var anyOf []tokenValue
			for _, v := range strings.Split(occurrence, ",") {
				t, ok := parseToken(v)
				if !ok {
					issues = append(issues, oo("invalid", "code: each value must be system|code, code, |code or system|"))
					break
				}
				anyOf = append(anyOf, t)
			}
			rq.codes = append(rq.codes, anyOf)
		}
	}
	rq.lastUpdated = parseDates(q, "_lastUpdated", &issues)
	if v, ok := once(q, paramSort, &issues); ok {
		switch v {
		case "_lastUpdated":
			rq.sort = byUpdated
		case "-_lastUpdated":
			rq.sort = byUpdatedDesc
		default:
			refuseOrIgnore(q, paramSort, "only _lastUpdated and -_lastUpdated are supported", strict, &issues, &notes)
		}
	}
	if v, ok := once(q, paramSummary, &issues); ok {
		switch v {
		case "count", "data":
			rq.summary = v
		case "false":
		default:
			refuseOrIgnore(q, paramSummary, "only count, data and false are supported", strict, &issues, &notes)
		}
	}
	if v, ok := once(q, paramElements, &issues); ok {
		if els, ok := parseElements(typ, v); ok {
			rq.elements = els
		} else {
			issues = append(issues, oo("invalid", "_elements: must be a comma-separated list of top-level element names, such as status,subject (or "+typ+".status)"))
		}
	}
	return rq, issues, notes
}

// otherSubject is a reference to something other than a Patient.
var otherSubject = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$`)

// parseIDs reads _id: each occurrence a comma-separated list of ids (any
// of them), every occurrence applying (all of them). nil: no _id.
func parseIDs(q url.Values, issues *[]mappings.Issue) []string {
	occurrences, ok := q["_id"]
	if !ok {
		return nil
	}
	var allowed []string
	for i, occurrence := range occurrences {
		var these []string
		for _, v := range strings.Split(occurrence, ",") {
			if !fhirID.MatchString(v) {
				*issues = append(*issues, oo("invalid", "_id: each value must be a resource id (letters, digits, - and ., at most 64)"))
				return nil
			}
			these = append(these, v)
		}
		if i == 0 {
			allowed = these
		} else {
			allowed = slices.DeleteFunc(allowed, func(id string) bool { return !slices.Contains(these, id) })
		}
	}
	if allowed == nil {
		allowed = []string{}
	}
	return allowed
}

// searchRecords serves GET /fhir/{type}?… and POST /fhir/{type}/_search.
// The Bundle's self and next links carry a sealed cursor (cursor.go) and
// nothing else: the search's values never go back into a URL, whichever way
// they came. What a lenient search ignored is said in an OperationOutcome
// entry (search.mode outcome) on every page.
func searchRecords(typ string) func(*Server, http.ResponseWriter, *http.Request) {
	params := recordParams(typ)
	extra := append(slices.Clone(recordModifiers), recordResults...)
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		q, ignored, ok := searchParams(w, r, params, extra...)
		if !ok {
			return
		}
		caller := api.RecordOf(r.Context()).Caller
		var pos cursor
		// notes are what the search ignored, which its links keep saying;
		// ignored, after a cursor, what this one request added to it.
		var notes []mappings.Issue
		if _, paged := q[paramCursor]; paged {
			if q, pos, notes, ok = s.openCursor(w, typ, caller, q); !ok {
				return
			}
		} else {
			notes, ignored = ignored, nil
		}
		rq, issues, more := parseRecordQuery(typ, q, preferences(r.Header.Values("Prefer")).strict)
		if len(issues) > 0 {
			writeOutcome(w, http.StatusBadRequest, issues...)
			return
		}
		notes = append(notes, more...)
		rq.cursor = pos
		if rq.identifier != nil && !rq.foreign && rq.identifier.Program != s.mapping.Program {
			rq.foreign = true
		}
		visit, ids, err := s.scope(r.Context(), typ, rq)
		if err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		p, err := s.collect(typ, rq, visit)
		if err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		// The search as the cursor keeps it: the parameters it used, the
		// page size made explicit, and no _format (answers are JSON
		// whatever it says); and what it ignored.
		sealed := url.Values{}
		for k, v := range q {
			if k != paramFormat {
				sealed[k] = v
			}
		}
		sealed.Set(paramCount, strconv.Itoa(rq.count))
		var sealedNotes []string
		for _, n := range notes {
			sealedNotes = append(sealedNotes, n.Message)
		}
		b := searchset(s.now())
		b.Total = &p.total
		link := func(rel string, at cursor) error {
			c, err := s.cursors.seal(typ, caller, sealed, at, sealedNotes, s.now())
			if err == nil {
				b.Link = append(b.Link, bundleLink{rel, s.baseURL + "/" + typ + "?" + paramCursor + "=" + c})
			}
			return err
		}
		if err := link("self", pos); err != nil {
			s.internalError(w, r, "search "+typ, err, ids...)
			return
		}
		if p.next != nil {
			if err := link("next", *p.next); err != nil {
				s.internalError(w, r, "search "+typ, err, ids...)
				return
			}
		}
		for _, e := range p.entries {
			body, err := mappings.MarshalCompact(e.Resource)
			if err == nil && rq.subsetted() {
				body, err = subset(typ, body, rq.elements, rq.summary == "data")
			}
			if err != nil {
				s.internalError(w, r, "marshal "+typ, err, ids...)
				return
			}
			b.Entry = append(b.Entry, bundleEntry{FullURL: s.baseURL + "/" + typ + "/" + resourceID(e.Key), Resource: body, Search: &entrySearch{Mode: "match"}})
		}
		b.addOutcome(append(notes, ignored...))
		s.writeBundle(w, r, b)
	}
}

// openCursor replaces a request's parameters with the search its _cursor
// holds, and returns where the page starts and what the search ignored. The
// cursor carries the whole search, so nothing else may come with it but
// _format. On a problem it writes the answer and reports false: 400 for a
// cursor this server did not seal for this search and caller (or sealed
// under another key: another replica's, or this one's before a restart
// without a configured key), 410 for an expired one; both say to search
// again.
func (s *Server) openCursor(w http.ResponseWriter, typ string, caller api.Key, q url.Values) (url.Values, cursor, []mappings.Issue, bool) {
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
		return nil, cursor{}, nil, false
	}
	sq, pos, sealedNotes, err := s.cursors.open(typ, caller, v, s.now())
	switch {
	case errors.Is(err, errCursorExpired):
		writeOutcome(w, http.StatusGone, oo("processing", fmt.Sprintf(
			"_cursor: this paging link has expired (links are valid for %s); search again from the first page", shortDuration(s.cursors.ttl))))
		return nil, cursor{}, nil, false
	case err != nil:
		writeOutcome(w, http.StatusBadRequest, oo("invalid",
			"_cursor: not a paging link this server gave out for this search and API key, or one made before a restart or by another replica "+
				"with a different server.cursorKey; search again from the first page"))
		return nil, cursor{}, nil, false
	}
	var notes []mappings.Issue
	for _, n := range sealedNotes {
		notes = append(notes, warning("not-supported", n))
	}
	return sq, pos, notes, true
}

// visitor walks the clients a search may match.
type visitor func(f func(store.Stored) (bool, error)) error

// scope narrows a search to the clients its patient, subject, identifier
// and _id parameters name (each one given narrows it further), or to every
// client when they name none. It also returns the ids the request carried,
// to keep them out of logged errors.
func (s *Server) scope(ctx context.Context, typ string, rq recordQuery) (visitor, []string, error) {
	var ids []string
	var found []store.Stored // in client id order
	scoped := false
	narrow := func(sts ...store.Stored) {
		var kept []store.Stored
		for _, st := range sts {
			dup := slices.ContainsFunc(kept, func(k store.Stored) bool { return k.Client.ID == st.Client.ID })
			in := !scoped || slices.ContainsFunc(found, func(f store.Stored) bool { return f.Client.ID == st.Client.ID })
			if in && !dup {
				kept = append(kept, st)
			}
		}
		slices.SortFunc(kept, func(a, b store.Stored) int { return strings.Compare(a.Client.ID, b.Client.ID) })
		found, scoped = kept, true
	}
	one := func(st store.Stored, ok bool) {
		if ok {
			narrow(st)
		} else {
			narrow()
		}
	}
	if rq.nobody {
		narrow()
	}
	for _, id := range rq.patients {
		ids = append(ids, id)
		st, ok, err := s.loadClient(ctx, id)
		if err != nil {
			return nil, ids, err
		}
		one(st, ok)
	}
	for _, pi := range rq.patientIdents {
		ids = append(ids, pi[0], pi[1])
		st, ok, err := s.clientByPatient(ctx, pi[0], pi[1], "")
		if err != nil {
			return nil, ids, err
		}
		one(st, ok)
	}
	if rq.identifier != nil {
		if rq.foreign {
			narrow()
		} else {
			ids = append(ids, rq.identifier.Client)
			st, ok, err := s.loadClient(ctx, rq.identifier.Client)
			if err != nil {
				return nil, ids, err
			}
			one(st, ok)
		}
	}
	if rq.ids != nil {
		// The read index finds the client of each id.
		ids = append(ids, rq.ids...)
		var sts []store.Stored
		for _, id := range rq.ids {
			st, _, ok, err := s.locate(ctx, typ, id)
			if err != nil {
				return nil, ids, err
			}
			if ok {
				sts = append(sts, st)
			}
		}
		narrow(sts...)
	}
	if scoped {
		return func(f func(store.Stored) (bool, error)) error {
			for _, st := range found {
				if more, err := f(st); err != nil || !more {
					return err
				}
			}
			return nil
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

// candidate is a client with resources a search matches, from the
// resource the page would start at.
type candidate struct {
	st   store.Stored
	keys []mappings.Key
	skip int
}

// compare orders clients as the search's results are ordered: -1 when the
// client saved at a with id a comes before the one saved at b with id b.
func (o order) compare(atA time.Time, idA string, atB time.Time, idB string) int {
	switch o {
	case byUpdated:
		if c := atA.Compare(atB); c != 0 {
			return c
		}
	case byUpdatedDesc:
		if c := atB.Compare(atA); c != 0 {
			return c
		}
	}
	return strings.Compare(idA, idB)
}

// collect counts every match and keeps the page the cursor points at. Only
// the clients on the page are mapped; the rest are counted from their keys.
// The clients the page could come from are kept in order as the visit finds
// them, at most one more than the page holds resources (each has at least
// one), so memory stays bounded by the page size whatever the order.
func (s *Server) collect(typ string, rq recordQuery, visit visitor) (page, error) {
	var p page
	limit := rq.count + 1
	if rq.count == 0 || rq.summary == "count" {
		limit = 0 // the total alone
	}
	var cands []candidate
	err := visit(func(st store.Stored) (bool, error) {
		if !s.allowsEHR(st.Client) || !rq.lastUpdated.matches(st.UpdatedAt) {
			return true, nil
		}
		var keys []mappings.Key
		for _, tk := range s.keysOf(st.Client) {
			if tk.typ == typ && rq.matches(tk.key, s.codingsOf(tk.key.Kind)) {
				keys = append(keys, tk.key)
			}
		}
		p.total += len(keys)
		skip := 0
		if !rq.cursor.first() {
			switch c := rq.sort.compare(st.UpdatedAt, st.Client.ID, rq.cursor.at, rq.cursor.client); {
			case c < 0:
				return true, nil
			case c == 0:
				skip = rq.cursor.offset
			}
		}
		if skip >= len(keys) || limit == 0 {
			return true, nil
		}
		c := candidate{st, keys, skip}
		i, _ := slices.BinarySearchFunc(cands, c, func(a, b candidate) int {
			return rq.sort.compare(a.st.UpdatedAt, a.st.Client.ID, b.st.UpdatedAt, b.st.Client.ID)
		})
		if i < limit {
			cands = slices.Insert(cands, i, c)
			if len(cands) > limit {
				cands = cands[:limit]
			}
		}
		return true, nil
	})
	if err != nil {
		return p, err
	}
	full := func() bool { return len(p.entries) >= rq.count }
	for _, c := range cands {
		if full() {
			p.next = &cursor{c.st.Client.ID, c.st.UpdatedAt, c.skip}
			break
		}
		es, err := s.entries(c.st)
		if err != nil {
			return p, err
		}
		byKey := make(map[mappings.Key]mappings.Entry, len(es))
		for _, e := range es {
			byKey[e.Key] = e
		}
		for i := c.skip; i < len(c.keys); i++ {
			if full() {
				p.next = &cursor{c.st.Client.ID, c.st.UpdatedAt, i}
				break
			}
			e, ok := byKey[c.keys[i]]
			if !ok {
				return p, fmt.Errorf("mapping has no %s resource the keys list", typ)
			}
			p.entries = append(p.entries, e)
		}
		if p.next != nil {
			break
		}
	}
	return p, nil
}

// matches applies the search's record-level parameters (identifier, _id,
// code) to one resource, given by its key and the codings of its code.
func (rq recordQuery) matches(k mappings.Key, codings []ips.Coding) bool {
	if rq.identifier != nil && *rq.identifier != k {
		return false
	}
	if rq.ids != nil && !slices.Contains(rq.ids, resourceID(k)) {
		return false
	}
	for _, anyOf := range rq.codes {
		if !slices.ContainsFunc(anyOf, func(t tokenValue) bool { return t.matchesAny(codings) }) {
			return false
		}
	}
	return true
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
