package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/ips"
)

// A referral read from an EHR makes a client with status referred; the
// specialist accepts it (enrollment) or declines it here. Each is a
// read-modify-write of the client like any other write (save), so the
// change and its outbox items commit together, and If-Match applies.

// acceptBody is the body of POST /api/v1/clients/{id}/accept.
type acceptBody struct {
	EnrolledOn ips.Date `json:"enrolledOn"`
}

// declineBody is the body of POST /api/v1/clients/{id}/decline.
type declineBody struct {
	ClosedOn     ips.Date `json:"closedOn"`
	ClosedReason string   `json:"closedReason"`
}

// acceptClient serves POST /api/v1/clients/{id}/accept: a referred client
// is enrolled on the given day (status active). 409 unless the client is
// referred; 422 for a missing date or one before the referral.
func (a *api) acceptClient(w http.ResponseWriter, r *http.Request) {
	var b acceptBody
	if !decodeAction(w, r, &b) {
		return
	}
	a.referralAction(w, r, func(c *ips.Client) error { return c.Accept(b.EnrolledOn) })
}

// declineClient serves POST /api/v1/clients/{id}/decline: a referral is
// closed without enrollment (status closed, no enrolledOn). 409 unless the
// client is referred; 422 without a date and a reason.
func (a *api) declineClient(w http.ResponseWriter, r *http.Request) {
	var b declineBody
	if !decodeAction(w, r, &b) {
		return
	}
	a.referralAction(w, r, func(c *ips.Client) error { return c.Decline(b.ClosedOn, b.ClosedReason) })
}

// referralAction applies act to the stored client and saves it.
func (a *api) referralAction(w http.ResponseWriter, r *http.Request, act func(*ips.Client) error) {
	id := mux.Vars(r)["id"]
	saved, v, _, ok := a.save(w, r, id, mustExist, func(cur *ips.Client) (*ips.Client, []Issue, error) {
		c := *cur
		err := act(&c)
		var ve *ips.ValidationError
		switch {
		case errors.Is(err, ips.ErrNotReferred):
			return nil, []Issue{issue(codeBusinessRule, "status", "the client is not waiting for acceptance (status "+string(cur.EffectiveStatus())+"); only a referred client can be accepted or declined")}, nil
		case errors.As(err, &ve):
			return nil, problemIssues(ve.Problems, ""), nil
		case err != nil:
			return nil, nil, err
		}
		if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{&c}}); err != nil {
			if errors.As(err, &ve) {
				return nil, problemIssues(ve.Problems, "clients[0]"), nil
			}
			return nil, nil, err
		}
		return &c, nil, nil
	})
	if !ok {
		return
	}
	w.Header().Set("ETag", etag(v))
	writeJSON(w, http.StatusOK, saved)
}

// decodeAction reads an action's JSON body into v, refusing unknown
// fields, or writes the error response.
func decodeAction(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readBody(w, r)
	if !ok {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// The decoder's message may quote the value; say only what is
		// wrong in general.
		writeIssues(w, http.StatusUnprocessableEntity, issue("invalid", "", "the body must be a JSON object with the documented fields, dates written YYYY-MM-DD"))
		return false
	}
	return true
}
