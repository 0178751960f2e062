package fhirapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// readMeasure serves GET /fhir/Measure/{id}.
func (s *Server) readMeasure(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	for _, m := range s.measures {
		if m.ID == id {
			writeFHIR(w, http.StatusOK, m.Data)
			return
		}
	}
	writeOutcome(w, http.StatusNotFound, oo("not-found", "no Measure with this id"))
}

// searchMeasures serves GET /fhir/Measure?url=…: every published Measure,
// or the one with the canonical URL (a |version must match the version).
func (s *Server) searchMeasures(w http.ResponseWriter, r *http.Request) {
	q, notes, ok := searchParams(w, r, measureParams)
	if !ok {
		return
	}
	var issues []mappings.Issue
	want, byURL := once(q, "url", &issues)
	_ = count(q, &issues)
	if _, ok := q[paramCursor]; ok {
		issues = append(issues, oo("not-supported", "_cursor: Measure results are never paged"))
	}
	if len(issues) > 0 {
		writeOutcome(w, http.StatusBadRequest, issues...)
		return
	}
	wantURL, wantVersion, _ := strings.Cut(want, "|")
	base := s.baseURL
	b := searchset(s.now())
	for _, m := range s.measures {
		if byURL && (m.URL != wantURL || (wantVersion != "" && m.Version != wantVersion)) {
			continue
		}
		b.Entry = append(b.Entry, bundleEntry{FullURL: base + "/Measure/" + m.ID, Resource: m.Data, Search: &entrySearch{Mode: "match"}})
	}
	total := len(b.Entry)
	b.Total = &total
	b.Link = []bundleLink{{"self", base + "/Measure?" + q.Encode()}}
	b.addOutcome(notes)
	s.writeBundle(w, r, b)
}

// searchMeasureReports serves GET /fhir/MeasureReport?period=…: the reports
// Options.Reports computes for the period, narrowed by subject and measure.
// Reports are aggregates, few per period: never paged.
func (s *Server) searchMeasureReports(w http.ResponseWriter, r *http.Request) {
	if s.reports == nil {
		writeOutcome(w, http.StatusNotFound, oo("not-found", "MeasureReports are not configured on this server"))
		return
	}
	q, notes, ok := searchParams(w, r, measureReportParams)
	if !ok {
		return
	}
	var issues []mappings.Issue
	period, _ := once(q, "period", &issues)
	subject, bySubject := once(q, "subject", &issues)
	measureURL, byMeasure := once(q, "measure", &issues)
	_ = count(q, &issues)
	if _, ok := q[paramCursor]; ok {
		issues = append(issues, oo("not-supported", "_cursor: MeasureReport results are never paged"))
	}
	if len(issues) > 0 {
		writeOutcome(w, http.StatusBadRequest, issues...)
		return
	}
	reports, err := s.reports(r.Context(), period, api.RecordOf(r.Context()).Caller.Role == api.RoleHIE)
	if errors.Is(err, ErrBadPeriod) {
		writeOutcome(w, http.StatusBadRequest, oo("invalid", "period: not a reporting period this server computes reports for"))
		return
	}
	if err != nil {
		s.internalError(w, r, "compute MeasureReports", err)
		return
	}
	base := s.baseURL
	b := searchset(s.now())
	for _, rep := range reports {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Measure      string `json:"measure"`
			Subject      struct {
				Reference string `json:"reference"`
			} `json:"subject"`
			Reporter struct {
				Identifier struct {
					Value string `json:"value"`
				} `json:"identifier"`
			} `json:"reporter"`
		}
		if err := json.Unmarshal(rep, &head); err != nil || head.ResourceType != "MeasureReport" {
			s.internalError(w, r, "compute MeasureReports", errors.New("the Reports option returned something that is not a MeasureReport"))
			return
		}
		// A program's summary report has no subject (DEQM forbids one): the
		// program it covers is its reporter, Group/{program id} here.
		have := head.Subject.Reference
		if have == "" && head.Reporter.Identifier.Value != "" {
			have = "Group/" + head.Reporter.Identifier.Value
		}
		if bySubject && !sameReference(have, subject) {
			continue
		}
		if byMeasure && !sameCanonical(head.Measure, measureURL) {
			continue
		}
		// A computed report may have no id; a searchset entry still needs a fullUrl.
		e := bundleEntry{FullURL: "urn:uuid:" + uuid.NewString(), Resource: rep, Search: &entrySearch{Mode: "match"}}
		if head.ID != "" {
			e.FullURL = base + "/MeasureReport/" + head.ID
		}
		b.Entry = append(b.Entry, e)
	}
	total := len(b.Entry)
	b.Total = &total
	b.Link = []bundleLink{{"self", base + "/MeasureReport?" + q.Encode()}}
	b.addOutcome(notes)
	s.writeBundle(w, r, b)
}

// sameReference: "Group/p1" matches "Group/p1", and a bare id "p1" matches
// a reference to any type with that id.
func sameReference(have, want string) bool {
	if have == want {
		return true
	}
	return !strings.Contains(want, "/") && strings.HasSuffix(have, "/"+want)
}

// sameCanonical compares canonical URLs; a version on the wanted one must
// match, one on the report's alone is ignored.
func sameCanonical(have, want string) bool {
	hu, hv, _ := strings.Cut(have, "|")
	wu, wv, _ := strings.Cut(want, "|")
	if u, err := url.Parse(wu); err != nil || u.Scheme == "" {
		// A relative "Measure/{id}" names a Measure here.
		wu = strings.TrimPrefix(wu, "Measure/")
		return strings.HasSuffix(hu, "/Measure/"+wu) && (wv == "" || wv == hv)
	}
	return hu == wu && (wv == "" || wv == hv)
}
