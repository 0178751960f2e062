package ehr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// ErrPageLimit is wrapped by a Search that would follow more than
// Options.MaxPages pages. No partial result is returned: a reconcile that
// saw half the resources would take the rest for deleted.
var ErrPageLimit = because("search has more pages than MaxPages")

// ErrForeignLink is wrapped by a Search whose next link leaves the base URL.
// The client refuses to follow it: it would carry our token elsewhere.
var ErrForeignLink = because("search next link leaves the base URL")

// fhirID is FHIR's id datatype.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// IsID reports whether s has the form of a FHIR resource id.
func IsID(s string) bool { return fhirID.MatchString(s) }

// Metadata returns the EHR's CapabilityStatement JSON (GET [base]/metadata,
// without credentials: the statement is public by the FHIR spec).
func (c *Client) Metadata(ctx context.Context) ([]byte, error) {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "metadata", op: "metadata", label: "CapabilityStatement", noAuth: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// SmartConfiguration returns [base]/.well-known/smart-configuration (JSON,
// public, fetched without credentials).
func (c *Client) SmartConfiguration(ctx context.Context) ([]byte, error) {
	resp, err := c.Do(ctx, Request{
		Method: http.MethodGet, Path: ".well-known/smart-configuration",
		Header: http.Header{"Accept": {"application/json"}},
		op:     "smart-configuration", label: "smart-configuration", noAuth: true,
	})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Read returns the current version of resourceType/id.
func (c *Client) Read(ctx context.Context, resourceType, id string) (*Response, error) {
	op, err := checkType("read", resourceType)
	if err != nil {
		return nil, err
	}
	if !fhirID.MatchString(id) {
		return nil, &Error{Op: op, Kind: KindInvalid, Err: because("not a FHIR id")}
	}
	return c.Do(ctx, Request{Method: http.MethodGet, Path: resourceType + "/" + id, ResourceType: resourceType, op: op})
}

// Create POSTs body as a new resourceType. With ifNoneExist (search
// criteria such as "identifier=https://ipsfhir.org/id|g-1") it is a
// conditional create: the EHR returns the match (200) instead of creating
// a duplicate (201), so it is safe to retry. Without it the create is not
// retried after a lost answer and fails with KindOutcomeUnknown: look the
// resource up before creating it again.
func (c *Client) Create(ctx context.Context, resourceType string, body []byte, ifNoneExist string) (*Response, error) {
	op, err := checkType("create", resourceType)
	if err != nil {
		return nil, err
	}
	h := http.Header{"Prefer": {"return=representation"}}
	ifNoneExist = strings.TrimPrefix(ifNoneExist, "?")
	if ifNoneExist != "" {
		h.Set("If-None-Exist", ifNoneExist)
	}
	return c.Do(ctx, Request{
		Method: http.MethodPost, Path: resourceType, Body: body, Header: h,
		Idempotent: ifNoneExist != "", ResourceType: resourceType, op: op,
	})
}

// Update PUTs body. target is either an id ("123") or conditional-update
// criteria ("identifier=https://ipsfhir.org/id|g-1", a leading "?" is
// allowed). ifMatch, when set, is the version the caller last saw (a
// version id such as "3" or an ETag such as W/"3"); a stale one fails with
// KindConflict.
//
// A PUT is retried after a lost answer. With ifMatch, the retry of an
// update that was in fact applied answers 412: read the resource and
// compare before treating the conflict as someone else's change.
func (c *Client) Update(ctx context.Context, resourceType, target string, body []byte, ifMatch string) (*Response, error) {
	return c.update(ctx, resourceType, target, body, ifMatch, false)
}

// UpdateOnce is Update without If-Match for a write that must not be
// repeated: a conditional update that may create the resource, where a
// copy of it held by a slow EHR and applied after a later write would
// undo that write. It is sent once, like a plain create: after a lost
// answer (a timeout, a reset, a gateway's 502 or 504) it fails with
// KindOutcomeUnknown, and the caller looks the resource up before
// writing it again.
func (c *Client) UpdateOnce(ctx context.Context, resourceType, target string, body []byte) (*Response, error) {
	return c.update(ctx, resourceType, target, body, "", true)
}

func (c *Client) update(ctx context.Context, resourceType, target string, body []byte, ifMatch string, once bool) (*Response, error) {
	op, err := checkType("update", resourceType)
	if err != nil {
		return nil, err
	}
	var path string
	switch {
	case strings.Contains(target, "="):
		path = resourceType + "?" + strings.TrimPrefix(target, "?")
	case fhirID.MatchString(target):
		path = resourceType + "/" + target
	default:
		return nil, &Error{Op: op, Kind: KindInvalid, Err: because("target is neither a FHIR id nor search criteria")}
	}
	h := http.Header{"Prefer": {"return=representation"}}
	if ifMatch != "" {
		h.Set("If-Match", etagFor(ifMatch))
	}
	return c.Do(ctx, Request{Method: http.MethodPut, Path: path, Body: body, Header: h, Once: once, ResourceType: resourceType, op: op})
}

// etagFor turns a version id into the weak ETag FHIR servers expect, and
// leaves an ETag as it is.
func etagFor(v string) string {
	if strings.HasPrefix(v, `W/"`) || strings.HasPrefix(v, `"`) {
		return v
	}
	return `W/"` + v + `"`
}

// Transaction POSTs a transaction Bundle to the base. idempotent says every
// entry is conditional (conditional create or update by identifier), so the
// whole Bundle is safe to send again after a lost answer.
func (c *Client) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*Response, error) {
	return c.postBundle(ctx, "transaction", bundle, idempotent)
}

// Batch POSTs a batch Bundle to the base; see Transaction for idempotent.
// A batch answers 200 with one response per entry: entry failures are in
// the returned Bundle, not in the error.
func (c *Client) Batch(ctx context.Context, bundle []byte, idempotent bool) (*Response, error) {
	return c.postBundle(ctx, "batch", bundle, idempotent)
}

func (c *Client) postBundle(ctx context.Context, kind string, bundle []byte, idempotent bool) (*Response, error) {
	// The kind is checked, not the whole body: the EHR refuses malformed
	// JSON, and reading every byte of each Bundle cost more than sending it
	// (see topStrings).
	if v, ok := topStrings(bundle, "resourceType", "type"); !ok || v[0] != "Bundle" || v[1] != kind {
		return nil, &Error{Op: kind, Kind: KindInvalid, Err: because("not a Bundle of type " + kind)}
	}
	return c.Do(ctx, Request{Method: http.MethodPost, Body: bundle, Idempotent: idempotent, op: kind, label: "Bundle"})
}

// Entry is one entry of a search result.
type Entry struct {
	// FullURL is the entry's fullUrl (absolute URL of the resource).
	FullURL string
	// Mode is search.mode: "match", "include" or "outcome" ("" if absent).
	Mode string
	// Resource is the resource's JSON, as the EHR sent it.
	Resource json.RawMessage
}

// Search runs a type-level search and follows the Bundle's next links,
// returning the entries of every page. It follows a link only when it is
// under the base URL (an EHR's paging must not send our token to another
// host) and at most Options.MaxPages pages; either problem fails the whole
// search. A query longer than a URL comfortably holds goes as POST
// [type]/_search, which is safe to repeat.
func (c *Client) Search(ctx context.Context, resourceType string, query url.Values) ([]Entry, error) {
	op, err := checkType("search", resourceType)
	if err != nil {
		return nil, err
	}
	req := Request{Method: http.MethodGet, Path: resourceType, Query: query, ResourceType: resourceType, op: op}
	if enc := query.Encode(); len(enc) > maxGetQuery {
		req = Request{
			Method: http.MethodPost, Path: resourceType + "/_search", Body: []byte(enc),
			Header:     http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			Idempotent: true, ResourceType: resourceType, op: op, read: true,
		}
	}
	return c.pages(ctx, req, op, "search")
}

// History returns the versions of resourceType/id the EHR keeps (its
// _history), newest first as FHIR orders them, following next links as
// Search does. Each entry's Resource is one version.
func (c *Client) History(ctx context.Context, resourceType, id string) ([]Entry, error) {
	op, err := checkType("history", resourceType)
	if err != nil {
		return nil, err
	}
	if !fhirID.MatchString(id) {
		return nil, &Error{Op: op, Kind: KindInvalid, Err: because("not a FHIR id")}
	}
	req := Request{Method: http.MethodGet, Path: resourceType + "/" + id + "/_history", ResourceType: resourceType, op: op}
	return c.pages(ctx, req, op, "history")
}

// pages runs req and follows the answer Bundle's next links (see Search),
// returning the entries of every page. what names the Bundle in errors.
func (c *Client) pages(ctx context.Context, req Request, op, what string) ([]Entry, error) {
	resourceType := req.ResourceType
	var out []Entry
	for page := 1; ; page++ {
		resp, err := c.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Link         []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			} `json:"link"`
			Entry []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
				Search   struct {
					Mode string `json:"mode"`
				} `json:"search"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(resp.Body, &b); err != nil || b.ResourceType != "Bundle" {
			return nil, &Error{Op: op, Status: resp.Status, Kind: KindOther, Err: because(what + " answer is not a Bundle")}
		}
		for _, e := range b.Entry {
			out = append(out, Entry{FullURL: e.FullURL, Mode: e.Search.Mode, Resource: e.Resource})
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return out, nil
		}
		if page >= c.maxPages {
			return nil, &Error{Op: op, Kind: KindOther, Err: &detail{msg: fmt.Sprintf("%s (%d)", ErrPageLimit, c.maxPages), err: ErrPageLimit}}
		}
		rel, ok := c.underBase(next)
		if !ok {
			return nil, &Error{Op: op, Kind: KindOther, Err: ErrForeignLink}
		}
		req = Request{Method: http.MethodGet, Path: rel, ResourceType: resourceType, op: op}
	}
}

// underBase returns link relative to the base URL if it is under it (same
// scheme, host, port and path prefix, no user info).
func (c *Client) underBase(link string) (string, bool) {
	u, err := url.Parse(link)
	if err != nil {
		return "", false
	}
	if !u.IsAbs() {
		u = c.base.JoinPath("/").ResolveReference(u)
	}
	if u.User != nil || !strings.EqualFold(u.Scheme, c.base.Scheme) ||
		!strings.EqualFold(u.Hostname(), c.base.Hostname()) || port(u) != port(c.base) {
		return "", false
	}
	basePath := strings.TrimRight(c.base.EscapedPath(), "/") + "/"
	rel, ok := strings.CutPrefix(u.EscapedPath(), basePath)
	if !ok || rel == "" {
		return "", false
	}
	if u.RawQuery != "" {
		rel += "?" + u.RawQuery
	}
	return rel, true
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// checkType returns the operation name for verb on resourceType, or an
// error that does not quote a resourceType that is not one.
func checkType(verb, resourceType string) (string, error) {
	if !typeName.MatchString(resourceType) {
		return verb, &Error{Op: verb, Kind: KindInvalid, Err: because("not a FHIR resource type")}
	}
	return verb + " " + resourceType, nil
}
