package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// clientsPage is the body of GET /api/v1/clients: a caseload document, so
// a page can be fed to `ipsfhir map` or back to an import as it is. The
// cursor to the next page is in the Link header, not the body, to keep it
// that way.
type clientsPage struct {
	Clients []*ips.Client `json:"clients"`
}

// listClients serves GET /api/v1/clients?after=ID&limit=N: clients in id
// order (byte order), after the given id. Keyset paging stays correct
// while clients are added, unlike offsets.
func (a *api) listClients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var issues []Issue
	for name := range q {
		if name != "after" && name != "limit" {
			// Names of parameters are not data; their values may be.
			issues = append(issues, issue("not-supported", name, "unknown query parameter; the parameters are after and limit"))
		}
	}
	limit := DefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			issues = append(issues, issue("invalid", "limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxPageSize)))
		}
		limit = n
	}
	if len(issues) > 0 {
		writeIssues(w, http.StatusBadRequest, issues...)
		return
	}
	after := q.Get("after")
	// One more than asked tells whether there is a next page.
	got, err := a.store.ListClients(r.Context(), after, limit+1)
	if err != nil {
		a.internalError(w, r, "list clients", err, after)
		return
	}
	page := clientsPage{Clients: make([]*ips.Client, 0, min(len(got), limit))}
	for _, s := range got[:min(len(got), limit)] {
		page.Clients = append(page.Clients, s.Client)
	}
	if len(got) > limit {
		last := page.Clients[len(page.Clients)-1].ID
		next := "/api/v1/clients?" + url.Values{"after": {last}, "limit": {strconv.Itoa(limit)}}.Encode()
		w.Header().Set("Link", "<"+next+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, page)
}

// getClient serves GET /api/v1/clients/{id}, with the version as ETag.
func (a *api) getClient(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	c, v, err := a.store.GetClient(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeIssues(w, http.StatusNotFound, issue("not-found", "", "no client with this id"))
		return
	}
	if err != nil {
		a.internalError(w, r, "read client", err, id)
		return
	}
	w.Header().Set("ETag", etag(v))
	writeJSON(w, http.StatusOK, c)
}

// createClient serves POST /api/v1/clients: a new client, whose id is in
// the body. 409 if the id is taken.
func (a *api) createClient(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	c, issues, err := decodeClient(body, "clients[0]")
	if err != nil {
		a.internalError(w, r, "decode request", err)
		return
	}
	if len(issues) > 0 {
		writeIssues(w, http.StatusUnprocessableEntity, issues...)
		return
	}
	saved, v, _, ok := a.save(w, r, c.ID, mustNotExist, func(*ips.Client) (*ips.Client, []Issue, error) { return c, nil, nil })
	if !ok {
		return
	}
	w.Header().Set("Location", clientPath(saved.ID))
	w.Header().Set("ETag", etag(v))
	writeJSON(w, http.StatusCreated, saved)
}

// putClient serves PUT /api/v1/clients/{id}: the whole client, replaced
// (or created: 201). The body's id must be the URL's.
func (a *api) putClient(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	saved, v, created, ok := a.save(w, r, id, mayExist, func(*ips.Client) (*ips.Client, []Issue, error) {
		c, issues, err := decodeClient(body, "clients[0]")
		return c, append(idIssue(body, id), issues...), err
	})
	if !ok {
		return
	}
	w.Header().Set("ETag", etag(v))
	status := http.StatusOK
	if created {
		w.Header().Set("Location", clientPath(saved.ID))
		status = http.StatusCreated
	}
	writeJSON(w, status, saved)
}

func clientPath(id string) string { return "/api/v1/clients/" + url.PathEscape(id) }
