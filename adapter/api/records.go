package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// recordKind is one of a client's record lists: goals, supports or jobs.
// They are served alike, as sub-resources of the client that owns them.
type recordKind struct {
	plural   string // URL segment and field of the client JSON
	singular string // for messages
	count    func(c *ips.Client) int
	id       func(c *ips.Client, i int) string
	item     func(c *ips.Client, i int) any
}

var kinds = []recordKind{
	{"goals", "goal",
		func(c *ips.Client) int { return len(c.Goals) },
		func(c *ips.Client, i int) string { return c.Goals[i].ID },
		func(c *ips.Client, i int) any { return c.Goals[i] }},
	{"supports", "support",
		func(c *ips.Client) int { return len(c.Supports) },
		func(c *ips.Client, i int) string { return c.Supports[i].ID },
		func(c *ips.Client, i int) any { return c.Supports[i] }},
	{"jobs", "job",
		func(c *ips.Client) int { return len(c.Jobs) },
		func(c *ips.Client, i int) string { return c.Jobs[i].ID },
		func(c *ips.Client, i int) any { return c.Jobs[i] }},
}

// find returns the index of the record with id rid, or -1.
func (k recordKind) find(c *ips.Client, rid string) int {
	for i := range k.count(c) {
		if k.id(c, i) == rid {
			return i
		}
	}
	return -1
}

// listRecords serves GET /api/v1/clients/{id}/{kind}: {"goals": [...]},
// with the client's version as ETag (records have no version of their own).
func (a *api) listRecords(k recordKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, v, ok := a.readClient(w, r)
		if !ok {
			return
		}
		items := make([]any, k.count(c))
		for i := range items {
			items[i] = k.item(c, i)
		}
		w.Header().Set("ETag", etag(v))
		RecordOf(r.Context()).Records = len(items)
		writeJSON(w, http.StatusOK, map[string][]any{k.plural: items})
	}
}

// getRecord serves GET /api/v1/clients/{id}/{kind}/{rid}.
func (a *api) getRecord(k recordKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, v, ok := a.readClient(w, r)
		if !ok {
			return
		}
		i := k.find(c, mux.Vars(r)["rid"])
		if i < 0 {
			writeIssues(w, http.StatusNotFound, issue("not-found", "", fmt.Sprintf("the client has no %s with this id", k.singular)))
			return
		}
		w.Header().Set("ETag", etag(v))
		writeJSON(w, http.StatusOK, k.item(c, i))
	}
}

// createRecord serves POST /api/v1/clients/{id}/{kind}: a new record,
// whose id is in the body, added to the client.
func (a *api) createRecord(k recordKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.writeRecord(w, r, k, "")
	}
}

// putRecord serves PUT /api/v1/clients/{id}/{kind}/{rid}: the record
// replaced, or added (201) if the client has none with this id.
func (a *api) putRecord(k recordKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.writeRecord(w, r, k, mux.Vars(r)["rid"])
	}
}

// writeRecord adds (rid "") or replaces a record. The body is placed, as
// it came, into the client's JSON, and the whole client is checked as a
// caseload's client is: the record's own fields, and the rules that tie it
// to the rest of the client (unique ids; a support's goal must exist).
func (a *api) writeRecord(w http.ResponseWriter, r *http.Request, k recordKind, rid string) {
	id := mux.Vars(r)["id"]
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var (
		at    int  // index of the record in the saved client
		added bool // the record is new
	)
	saved, v, _, ok := a.save(w, r, id, mustExist, func(cur *ips.Client) (*ips.Client, []Issue, error) {
		at = -1
		if rid != "" {
			at = k.find(cur, rid)
		}
		added = at < 0
		doc, i, err := splice(cur, k, at, body)
		if err != nil {
			return nil, nil, err
		}
		at = i
		var issues []Issue
		if rid != "" {
			issues = idIssue(body, rid)
		}
		c, more, err := decodeClient(doc, fmt.Sprintf("clients[0].%s[%d]", k.plural, at))
		return c, append(issues, more...), err
	})
	if !ok {
		return
	}
	w.Header().Set("ETag", etag(v))
	status := http.StatusOK
	if added {
		w.Header().Set("Location", clientPath(id)+"/"+k.plural+"/"+url.PathEscape(k.id(saved, at)))
		status = http.StatusCreated
	}
	writeJSON(w, status, k.item(saved, at))
}

// splice returns cur's JSON with body in place of the kind's record at
// index at, or appended when at is negative, and the record's index.
// body is known to be one JSON value.
func splice(cur *ips.Client, k recordKind, at int, body []byte) ([]byte, int, error) {
	doc, err := json.Marshal(cur)
	if err != nil {
		return nil, 0, fmt.Errorf("encode stored client: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return nil, 0, fmt.Errorf("split stored client: %w", err)
	}
	var list []json.RawMessage
	if raw, ok := fields[k.plural]; ok {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, 0, fmt.Errorf("split stored %s: %w", k.plural, err)
		}
	}
	if at < 0 {
		list = append(list, json.RawMessage(body))
		at = len(list) - 1
	} else {
		list[at] = json.RawMessage(body)
	}
	if fields[k.plural], err = json.Marshal(list); err != nil {
		return nil, 0, fmt.Errorf("join %s: %w", k.plural, err)
	}
	if doc, err = json.Marshal(fields); err != nil {
		return nil, 0, fmt.Errorf("join client: %w", err)
	}
	return doc, at, nil
}

// readClient reads the client of a record route, or writes 404/500.
func (a *api) readClient(w http.ResponseWriter, r *http.Request) (*ips.Client, store.Version, bool) {
	id := mux.Vars(r)["id"]
	c, v, err := a.store.GetClient(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeIssues(w, http.StatusNotFound, issue("not-found", "", "no client with this id"))
		return nil, 0, false
	}
	if err != nil {
		a.internalError(w, r, "read client", err, id)
		return nil, 0, false
	}
	return c, v, true
}
