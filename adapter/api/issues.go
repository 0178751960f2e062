package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Issue is one problem with a request, shaped like an issue of a FHIR
// OperationOutcome (severity, code from http://hl7.org/fhir/issue-type) so
// that one reader handles errors from /api and /fhir alike. Path is where
// in the request body the problem is ("" for the body as a whole or the
// request itself). Message names what is wrong, never a value.
type Issue struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Path     string `json:"path"`
	Message  string `json:"message"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Issues []Issue `json:"issues"`
}

func issue(code, path, message string) Issue {
	return Issue{Severity: "error", Code: code, Path: path, Message: message}
}

func internalIssue() Issue {
	return issue("exception", "", "internal error; the server log has the cause")
}

func writeIssues(w http.ResponseWriter, status int, issues ...Issue) {
	writeJSON(w, status, ErrorBody{Issues: issues})
}

// writeJSON writes v. Every response may hold patient data, so none is
// cached by browsers or proxies.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only values the API built itself are written; a failure is a bug
		// and its message names a type, not content.
		status = http.StatusInternalServerError
		body, _ = json.Marshal(ErrorBody{Issues: []Issue{internalIssue()}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// problemIssues turns caseload problems into issues. Decode reports paths
// in a caseload of one client; they are rewritten to be relative to the
// request body, whose own path in that caseload is root. Paths elsewhere
// in the client (a record endpoint whose change breaks another record)
// keep their place in the client, prefixed "client.".
func problemIssues(ps []ips.Problem, root string) []Issue {
	out := make([]Issue, 0, len(ps))
	for _, p := range ps {
		out = append(out, issue("invalid", relPath(p.Path, root), p.Message))
	}
	return out
}

func relPath(path, root string) string {
	const client = "clients[0]"
	switch {
	case path == root:
		return ""
	case strings.HasPrefix(path, root+"."):
		return path[len(root)+1:]
	case root == client:
		return path
	case path == client:
		return "client"
	case strings.HasPrefix(path, client+"."):
		return "client." + path[len(client)+1:]
	}
	return path
}
