package check

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// missingMeans says what follows, for sync, when a type cannot be read and
// searched.
var missingMeans = map[string]string{
	"Patient":           "ipsfhir cannot look patients up by identifier, so resources refer to them by identifier only",
	"Goal":              "clinicians' changes to employment goals cannot be read back",
	"CarePlan":          "the IPS plan cannot be linked to the treatment plan",
	"Observation":       "job outcomes written as Observations cannot be found again before a retried create",
	"DocumentReference": "the chart note cannot be found again before a retried create",
	"ServiceRequest":    "referrals to IPS are not read; clients are enrolled through the API and imports",
}

// searchParamFor is the parameter the live search of a type uses: the one
// the sync engine searches it by.
func searchParamFor(t string) string {
	if t == "Patient" {
		return "identifier"
	}
	return "patient"
}

// used reports whether the plan reads or writes type t, so that a failing
// live request of t stops sync.
func (r *runner) used(t string) bool {
	if t == "Patient" {
		_, ok := r.p.Type("Patient").Searches("identifier")
		return ok && r.p.Allows("Patient", "search-type")
	}
	for _, c := range r.p.Concepts {
		if c.ResourceType == t && (c.Path == plan.Native || c.Path == plan.ReadOnly) {
			return true
		}
	}
	return false
}

// resources checks that each type is declared with read and search by
// patient (identifier for Patient), and runs that search live.
func (r *runner) resources(ctx context.Context) {
	const g = GroupResources
	send, why := r.canSend()
	for _, t := range ResourceTypes {
		rp := r.p.Type(t)
		param := searchParamFor(t)
		spelled, hasParam := rp.Searches(param)
		read, search := r.p.Allows(t, "read"), r.p.Allows(t, "search-type")
		id := "resources." + t
		switch {
		case rp == nil:
			r.add(g, id+".declared", Fail, false, "%s is not in the statement: %s", t, missingMeans[t])
		case !read || !search:
			r.add(g, id+".declared", Fail, false, "%s declares %s, not read and search-type: %s", t, r.interactions(t), missingMeans[t])
		case !hasParam:
			r.add(g, id+".declared", Fail, false, "%s declares read and search-type but not the %s search parameter: %s", t, param, missingMeans[t])
		default:
			r.add(g, id+".declared", Pass, false, "declares %s; searches %s", r.interactions(t), spelled)
		}

		blocking := r.used(t)
		switch {
		case !send:
			r.add(g, id+".search", Skip, blocking, "%s", why)
		case !search || !hasParam:
			r.add(g, id+".search", Omit, blocking, "search by %s is not declared: not sent", param)
		default:
			r.liveSearch(ctx, t, spelled, blocking)
		}
		if t == "Patient" {
			r.testPatient(ctx, send, why)
		}
	}
}

// testPatient reads the test patient, if one was given.
func (r *runner) testPatient(ctx context.Context, send bool, why string) {
	const g = GroupResources
	r.patientOK = true
	switch {
	case r.o.TestPatient == "":
		r.add(g, "resources.Patient.read", Omit, false, "no test patient given")
	case !send:
		r.patientOK = false
		r.add(g, "resources.Patient.read", Skip, false, "%s", why)
	case !r.p.Allows("Patient", "read"):
		r.add(g, "resources.Patient.read", Omit, false, "Patient read is not declared: the test patient cannot be checked")
	default:
		if _, err := r.client.Read(ctx, "Patient", r.o.TestPatient); err != nil {
			r.patientOK = false
			hint := ""
			if errors.Is(err, ehr.ErrNotFound) {
				hint = ": check the test patient id"
			}
			r.add(g, "resources.Patient.read", verdict(err), false, "reading the test patient answered %s%s", describe(err), hint)
		} else {
			r.add(g, "resources.Patient.read", Pass, false, "the test patient can be read")
		}
	}
}

// liveSearch searches t by patient (by a made-up identifier for Patient).
func (r *runner) liveSearch(ctx context.Context, t, param string, blocking bool) {
	id := "resources." + t + ".search"
	var value, what string
	switch {
	case t == "Patient":
		value, what = checkSystem+"|"+probeID, "a made-up identifier"
	case r.o.TestPatient != "":
		value, what = "Patient/"+r.o.TestPatient, "the test patient"
	default:
		value, what = "Patient/"+probeID, "a made-up patient id"
	}
	n, err := r.search(ctx, t, url.Values{param: {value}})
	switch {
	case err == nil:
		r.add(GroupResources, id, Pass, blocking, "search by %s (%s) answered a Bundle of %d", param, what, n)
	case errors.Is(err, ehr.ErrNotFound) && t != "Patient" && r.o.TestPatient == "":
		r.add(GroupResources, id, Pass, blocking, "search by %s answered %s for a made-up patient id (give a test patient to search a real one)", param, describe(err))
	case errors.Is(err, errNotBundle):
		r.add(GroupResources, id, Fail, blocking, "search by %s (%s) did not answer a searchset Bundle", param, what)
	default:
		r.add(GroupResources, id, verdict(err), blocking, "search by %s (%s) answered %s although %s declares it%s", param, what, describe(err), t, consequence(blocking))
	}
}

func consequence(blocking bool) string {
	if blocking {
		return "; sync relies on it"
	}
	return ""
}

// interactions lists what t declares, for reasons.
func (r *runner) interactions(t string) string {
	rp := r.p.Type(t)
	if rp == nil || len(rp.Interactions) == 0 {
		return "nothing"
	}
	return strings.Join(rp.Interactions, ", ")
}

var errNotBundle = errors.New("the answer is not a searchset Bundle")

// search runs one page of a search and returns the number of matches.
// Only one page: the check needs to know the search works, not the data.
func (r *runner) search(ctx context.Context, t string, q url.Values) (int, error) {
	entries, err := r.searchEntries(ctx, t, q)
	return len(entries), err
}

// searchEntries runs one page of a search and returns the matches.
func (r *runner) searchEntries(ctx context.Context, t string, q url.Values) ([]json.RawMessage, error) {
	resp, err := r.client.Do(ctx, ehr.Request{Method: http.MethodGet, Path: t, Query: q, ResourceType: t})
	if err != nil {
		return nil, err
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if json.Unmarshal(resp.Body, &b) != nil || b.ResourceType != "Bundle" || (b.Type != "" && b.Type != "searchset") {
		return nil, errNotBundle
	}
	var out []json.RawMessage
	for _, e := range b.Entry {
		if e.Search.Mode == "" || e.Search.Mode == "match" {
			out = append(out, e.Resource)
		}
	}
	return out, nil
}
