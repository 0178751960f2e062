package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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

// listClients serves GET /api/v1/clients?after=ID&limit=N[&status=S]:
// clients in id order (byte order), after the given id, only those of
// status S when given (status=referred is the specialists' worklist of
// referrals waiting for acceptance; one with pastEpisodes is a
// re-referral). Keyset paging stays correct while clients are added,
// unlike offsets.
func (a *api) listClients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var issues []Issue
	for name := range q {
		if name != "after" && name != "limit" && name != "status" {
			// Names of parameters are not data; their values may be.
			issues = append(issues, issue("not-supported", name, "unknown query parameter; the parameters are after, limit and status"))
		}
	}
	status := ips.ClientStatus(q.Get("status"))
	if q.Has("status") && !slices.Contains([]ips.ClientStatus{ips.ClientReferred, ips.ClientActive, ips.ClientOnHold, ips.ClientClosed}, status) {
		issues = append(issues, issue("invalid", "status", "must be referred, active, on-hold or closed"))
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
	// One more than asked tells whether there is a next page. With a
	// status, the store is read in pages until that many match.
	var got []*ips.Client
	for from := after; len(got) <= limit; {
		batch, err := a.store.ListClients(r.Context(), from, limit+1)
		if err != nil {
			a.internalError(w, r, "list clients", err, after)
			return
		}
		for _, s := range batch {
			if status == "" || s.Client.EffectiveStatus() == status {
				got = append(got, s.Client)
			}
		}
		if len(batch) <= limit {
			break
		}
		from = batch[len(batch)-1].Client.ID
	}
	page := clientsPage{Clients: append([]*ips.Client{}, got[:min(len(got), limit)]...)}
	if len(got) > limit {
		last := page.Clients[len(page.Clients)-1].ID
		v := url.Values{"after": {last}, "limit": {strconv.Itoa(limit)}}
		if status != "" {
			v.Set("status", string(status))
		}
		w.Header().Set("Link", "</api/v1/clients?"+v.Encode()+`>; rel="next"`)
	}
	RecordOf(r.Context()).Records = len(page.Clients)
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
	saved, v, created, ok := a.save(w, r, id, mayExist, func(cur *ips.Client) (*ips.Client, []Issue, error) {
		c, issues, err := decodeClient(body, "clients[0]")
		issues = append(idIssue(body, id), issues...)
		if err != nil || len(issues) > 0 {
			return c, issues, err
		}
		// A body without pastEpisodes keeps the stored ones.
		c.KeepHistory(cur)
		var ve *ips.ValidationError
		if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{c}}); errors.As(err, &ve) {
			return nil, problemIssues(ve.Problems, "clients[0]"), nil
		} else if err != nil {
			return nil, nil, err
		}
		return c, nil, nil
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
