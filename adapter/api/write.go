package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Every write is a read-modify-write of one client aggregate, saved with
// one SaveClients call: the record and the outbox items that will carry it
// to each EHR commit in one transaction, or neither does. The version the
// client was read at makes the save conditional, so a write that lands in
// between is never overwritten unseen.

// existence says what a write expects of the client it addresses.
type existence int

const (
	mustExist    existence = iota // records of a client: 404 without it
	mayExist                      // PUT of a client: creates it if missing
	mustNotExist                  // POST of a client: 409 if it exists
)

// codeBusinessRule is the issue code of a request the client's state does
// not allow; save answers it with 409 instead of 422.
const codeBusinessRule = "business-rule"

// build turns the current client (nil if there is none) into the one to
// save, or returns the issues that make the request invalid.
type build func(cur *ips.Client) (*ips.Client, []Issue, error)

// save runs the read-modify-write for client id and writes the error
// response itself; ok is false when it did. created reports that the client
// did not exist before.
//
// With If-Match, the write happens only if the client is still at a listed
// version (412 otherwise, also when another write wins the race). Without
// it, a write that loses a race is simply redone on the new version: the
// caller asked for the change whatever the version.
func (a *api) save(w http.ResponseWriter, r *http.Request, id string, want existence, b build) (saved *ips.Client, v store.Version, created, ok bool) {
	ctx := r.Context()
	tags, conditional := ifMatch(r)
	for attempt := 1; ; attempt++ {
		cur, ver, err := a.store.GetClient(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			cur, ver = nil, 0
		case err != nil:
			a.internalError(w, r, "read client", err, id)
			return nil, 0, false, false
		}
		switch {
		case cur == nil && want == mustExist:
			writeIssues(w, http.StatusNotFound, issue("not-found", "", "no client with this id"))
			return nil, 0, false, false
		case cur != nil && want == mustNotExist:
			writeIssues(w, http.StatusConflict, issue("duplicate", "id", "a client with this id exists; change it with PUT /api/v1/clients/{id}"))
			return nil, 0, false, false
		case conditional && (cur == nil || !tags.match(ver)):
			w.Header().Set("ETag", etag(ver))
			writeIssues(w, http.StatusPreconditionFailed, issue("conflict", "", "the client is not at the version in If-Match; read it again and reapply the change"))
			return nil, 0, false, false
		}
		next, issues, err := b(cur)
		if err != nil {
			a.internalError(w, r, "decode request", err, id)
			return nil, 0, false, false
		}
		if len(issues) > 0 {
			status := http.StatusUnprocessableEntity
			if slices.ContainsFunc(issues, func(i Issue) bool { return i.Code == codeBusinessRule }) {
				// The request is well formed but the client's state does
				// not allow it (accepting a client who is not referred).
				status = http.StatusConflict
			}
			writeIssues(w, status, issues...)
			return nil, 0, false, false
		}
		vs, err := a.store.SaveClients(ctx, []store.Stored{{Client: next, Version: ver}}, a.connections())
		switch {
		case err == nil:
			return next, vs[0], cur == nil, true
		case errors.Is(err, store.ErrConflict) && conditional:
			writeIssues(w, http.StatusPreconditionFailed, issue("conflict", "", "the client changed while this request was applied; read it again and reapply the change"))
		case errors.Is(err, store.ErrConflict) && want == mustNotExist:
			writeIssues(w, http.StatusConflict, issue("duplicate", "id", "a client with this id was created meanwhile; change it with PUT /api/v1/clients/{id}"))
		case errors.Is(err, store.ErrConflict) && attempt < writeAttempts:
			continue
		case errors.Is(err, store.ErrConflict):
			writeIssues(w, http.StatusConflict, issue("conflict", "", "the client kept changing while this request was applied; try again"))
		case errors.Is(err, store.ErrInvalid):
			// The API checks everything the store checks, so this is a bug;
			// the store's message may name the client and is not passed on.
			a.log.LogAttrs(ctx, slog.LevelError, "store refused a write as invalid", RecordOf(ctx).RouteAttr())
			writeIssues(w, http.StatusBadRequest, issue("invalid", "", "the store refused the record as invalid"))
		default:
			a.internalError(w, r, "save client", err, id)
		}
		return nil, 0, false, false
	}
}

// etags is an If-Match header's list; any means "*".
type etags struct {
	any  bool
	list []string
}

func (t etags) match(v store.Version) bool {
	if t.any {
		return true
	}
	want := etag(v)
	for _, s := range t.list {
		if s == want { // If-Match compares strongly: W/"1" never matches
			return true
		}
	}
	return false
}

func ifMatch(r *http.Request) (etags, bool) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return etags{}, false
	}
	var t etags
	for _, v := range vals {
		for s := range strings.SplitSeq(v, ",") {
			s = strings.TrimSpace(s)
			if s == "*" {
				t.any = true
			} else if s != "" {
				t.list = append(t.list, s)
			}
		}
	}
	return t, true
}

// etag is a client's version as a strong entity tag.
func etag(v store.Version) string { return `"` + strconv.FormatInt(int64(v), 10) + `"` }

// readBody reads a JSON request body, or writes the error response and
// returns ok false.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeIssues(w, http.StatusUnsupportedMediaType, issue("not-supported", "", "the body must be JSON (Content-Type: application/json)"))
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeIssues(w, http.StatusRequestEntityTooLarge, issue("too-costly", "", fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes)))
		return nil, false
	case err != nil:
		writeIssues(w, http.StatusBadRequest, issue("structure", "", "the body could not be read"))
		return nil, false
	}
	if msg, bad := syntaxProblem(body); bad {
		writeIssues(w, http.StatusBadRequest, issue("structure", "", msg))
		return nil, false
	}
	return body, true
}

// syntaxProblem says where a body stops being one JSON value, by position
// only (the text around it is patient data).
func syntaxProblem(body []byte) (string, bool) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "the body is empty; it must be a JSON object", true
	}
	if json.Valid(body) {
		return "", false
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	err := dec.Decode(&v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(body[:min(int(se.Offset), len(body))], []byte("\n"))
		return fmt.Sprintf("not valid JSON: syntax error near line %d (byte %d)", line, se.Offset), true
	}
	return "not valid JSON: the body must be exactly one JSON object", true
}

// decodeClient checks a client body exactly as a caseload file's client is
// checked (same schema, same rules, every problem listed), by decoding it as
// a caseload of one. body is known to be one JSON value, so placing it in
// the array cannot add a second client.
func decodeClient(doc []byte, root string) (*ips.Client, []Issue, error) {
	var b bytes.Buffer
	b.Grow(len(doc) + 16)
	b.WriteString(`{"clients":[`)
	b.Write(doc)
	b.WriteString(`]}`)
	cl, err := ips.Decode(&b)
	var ve *ips.ValidationError
	if errors.As(err, &ve) {
		return nil, problemIssues(ve.Problems, root), nil
	}
	if err != nil {
		return nil, nil, err
	}
	return cl.Clients[0], nil, nil
}

// idIssue checks that the id in a body, if it is a string, is the one in
// the URL. Anything else about the id is left to decodeClient, which names
// it in the same words as for a caseload file.
func idIssue(body []byte, want string) []Issue {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		return nil
	}
	var got string
	if raw, ok := probe["id"]; !ok || json.Unmarshal(raw, &got) != nil || got == want {
		return nil
	}
	return []Issue{issue("invalid", "id", "must equal the id in the URL")}
}
