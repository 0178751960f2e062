package api

import (
	_ "embed"
	"net/http"
)

// openAPIPath is where the API's OpenAPI description is served, without a
// key: like a FHIR server's /fhir/metadata, it describes the API and holds
// no data.
const openAPIPath = "/api/v1/openapi.json"

// openAPI is the OpenAPI 3.1 description of /api/v1, /admin and /metrics.
// Tests hold it to the router (every route and method, both ways, and the
// roles each operation admits), to the responses the handlers write, and to
// ips/caseload.schema.json, whose definitions it copies; docs/API.md is
// rendered from it.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI serves the OpenAPI description.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(openAPI)
}
