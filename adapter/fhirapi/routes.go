package fhirapi

import (
	"net/http"
	"slices"
)

// prefix is where the facade is mounted.
const prefix = "/fhir"

const metadataPath = prefix + "/metadata"

// A route is one thing the facade serves. The table drives the router and
// the parameters each search accepts, and the CapabilityStatement test checks
// the published statement against it: add a route here and the test says what
// to declare.
type route struct {
	method string
	path   string // gorilla/mux template
	access access
	// What the route is in CapabilityStatement terms: resource ("" at
	// system level), and an interaction code (read, search-type) or an
	// operation name (export). Routes with neither (status polling, file
	// downloads, the statement itself) are part of another's protocol.
	resource    string
	interaction string
	operation   string
	// params are the search parameters a search-type route accepts.
	params  []param
	handler func(*Server, http.ResponseWriter, *http.Request)
}

// param is a search parameter: its name, FHIR search type and definition.
type param struct {
	name, typ, definition string
}

// The record types the facade serves, in the order of the statement.
var recordTypes = []string{"Goal", "CarePlan", "Observation", "DocumentReference"}

// recordParams are the search parameters of a record type: the same for
// every type, and code for Observation.
func recordParams(typ string) []param {
	ps := []param{
		{"patient", "reference", "http://hl7.org/fhir/SearchParameter/clinical-patient"},
		{"subject", "reference", "http://hl7.org/fhir/SearchParameter/" + typ + "-subject"},
		{"identifier", "token", "http://hl7.org/fhir/SearchParameter/clinical-identifier"},
		{"_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"},
		{"_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
	}
	if typ == "Observation" {
		ps = append(ps, param{"code", "token", "http://hl7.org/fhir/SearchParameter/clinical-code"})
	}
	return ps
}

// recordModifiers are the modified parameter names a record search takes
// besides its search parameters.
var recordModifiers = []string{"patient:identifier", "subject:identifier"}

var measureParams = []param{
	{"url", "uri", "http://hl7.org/fhir/SearchParameter/Measure-url"},
}

var measureReportParams = []param{
	{"period", "date", "http://hl7.org/fhir/SearchParameter/MeasureReport-period"},
	{"subject", "reference", "http://hl7.org/fhir/SearchParameter/MeasureReport-subject"},
	{"measure", "reference", "http://hl7.org/fhir/SearchParameter/MeasureReport-measure"},
}

// Result parameters. Every search accepts _count, _cursor and _format;
// record searches also _sort, _summary and _elements. They shape the result
// and are not declared as searchParam: the statement's rest.documentation
// names them.
const (
	paramCount    = "_count"
	paramCursor   = "_cursor" // the sealed search and page of self and next links (cursor.go)
	paramFormat   = "_format" // JSON only
	paramSort     = "_sort"   // _lastUpdated or -_lastUpdated
	paramSummary  = "_summary"
	paramElements = "_elements"
)

// resultParams are the result parameters of every search; recordResults
// those a record search takes besides.
var (
	resultParams  = []string{paramCount, paramCursor, paramFormat}
	recordResults = []string{paramSort, paramSummary, paramElements}
)

// Paths of the Bulk Data protocol after the kick-off.
const (
	statusPath = prefix + "/bulk-status/{job}"
	filePath   = prefix + "/bulk-files/{job}/{file}"
)

func routes() []route {
	rs := []route{
		{method: http.MethodGet, path: metadataPath, access: public, handler: (*Server).metadata},
		// HEAD: clients and load balancers probe the base this way.
		{method: http.MethodHead, path: metadataPath, access: public, handler: (*Server).metadata},
	}
	for _, t := range recordTypes {
		rs = append(rs,
			route{method: http.MethodGet, path: prefix + "/" + t + "/{id}", access: records, resource: t, interaction: "read", handler: readRecord(t)},
			route{method: http.MethodGet, path: prefix + "/" + t, access: records, resource: t, interaction: "search-type", params: recordParams(t), handler: searchRecords(t)},
			route{method: http.MethodPost, path: prefix + "/" + t + "/_search", access: records, resource: t, interaction: "search-type", params: recordParams(t), handler: searchRecords(t)},
		)
	}
	rs = append(rs,
		// Bulk Data kick-off: GET with query parameters, or POST with a
		// Parameters body (or, as Medplum's client sends it, query
		// parameters and no body).
		route{method: http.MethodGet, path: prefix + "/$export", access: bulk, operation: "export", handler: kickOff(false)},
		route{method: http.MethodPost, path: prefix + "/$export", access: bulk, operation: "export", handler: kickOff(false)},
		route{method: http.MethodGet, path: prefix + "/Group/{id}/$export", access: bulk, resource: "Group", operation: "export", handler: kickOff(true)},
		route{method: http.MethodPost, path: prefix + "/Group/{id}/$export", access: bulk, resource: "Group", operation: "export", handler: kickOff(true)},
		route{method: http.MethodGet, path: statusPath, access: bulk, handler: (*Server).exportStatus},
		route{method: http.MethodDelete, path: statusPath, access: bulk, handler: (*Server).exportDelete},
		route{method: http.MethodGet, path: filePath, access: bulk, handler: (*Server).exportFile},

		route{method: http.MethodGet, path: prefix + "/Measure/{id}", access: outcomes, resource: "Measure", interaction: "read", handler: (*Server).readMeasure},
		route{method: http.MethodGet, path: prefix + "/Measure", access: outcomes, resource: "Measure", interaction: "search-type", params: measureParams, handler: (*Server).searchMeasures},
		route{method: http.MethodPost, path: prefix + "/Measure/_search", access: outcomes, resource: "Measure", interaction: "search-type", params: measureParams, handler: (*Server).searchMeasures},
		route{method: http.MethodGet, path: prefix + "/MeasureReport", access: outcomes, resource: "MeasureReport", interaction: "search-type", params: measureReportParams, handler: (*Server).searchMeasureReports},
		route{method: http.MethodPost, path: prefix + "/MeasureReport/_search", access: outcomes, resource: "MeasureReport", interaction: "search-type", params: measureReportParams, handler: (*Server).searchMeasureReports},

		route{method: http.MethodGet, path: prefix + "/AuditEvent", access: auditTrail, resource: "AuditEvent", interaction: "search-type", params: auditEventParams, handler: (*Server).searchAuditEvents},
	)
	return rs
}

// servedTypes lists the resource types some route serves.
func servedTypes() []string {
	var out []string
	for _, rt := range routes() {
		if rt.resource != "" && !slices.Contains(out, rt.resource) {
			out = append(out, rt.resource)
		}
	}
	return out
}

func servedType(t string) bool { return slices.Contains(servedTypes(), t) }
