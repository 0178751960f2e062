package faultproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// RequestLog is an opt-in record of every request the proxy receives, for
// working out after a run which request wrote what: one JSON object a
// line, written when the request's handling ends (a hung request's line
// comes when its hold ends). Unlike Fault, a line holds the request path
// and query (resource ids, search parameters) and the If-Match headers,
// so it belongs in a test's own files, over synthetic data only; the
// content of resources appears only as Describe renders it.
type RequestLog struct {
	// W receives the lines; writes are serialised.
	W io.Writer
	// Describe renders one resource (its JSON) of a request or reply body
	// as a short token, e.g. "Goal status on-hold, 3 notes". Nil logs the
	// resource type and id only.
	Describe func(resource json.RawMessage) string

	mu sync.Mutex
}

// LoggedRequest is one line of a RequestLog.
type LoggedRequest struct {
	// By names who sent a request the proxy did not see, recorded with
	// Record (e.g. "clinician" for a test's edits made on the target
	// directly); "" for the proxy's own lines.
	By     string    `json:"by,omitempty"`
	Seq    int64     `json:"seq"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Method string    `json:"method"`
	// Path is relative to the FHIR base, as Match sees it; Query is raw.
	Path    string `json:"path"`
	Query   string `json:"query,omitempty"`
	IfMatch string `json:"ifMatch,omitempty"`
	// Body describes the request's resource (a PUT or POST of one).
	Body string `json:"body,omitempty"`
	// Entries are a Bundle's entries, in order.
	Entries []LoggedEntry `json:"entries,omitempty"`
	// Fault is the injected fault, "" for none.
	Fault Kind `json:"fault,omitempty"`
	// Status is the target's answer (also for a lost reply or a hung
	// request once forwarded: what the client did not get); 0 when the
	// request was not forwarded or the target did not answer.
	Status   int    `json:"status,omitempty"`
	ETag     string `json:"etag,omitempty"`
	Location string `json:"location,omitempty"`
	// Reply describes the resource the target returned, if one.
	Reply string `json:"reply,omitempty"`
	// Results are a Bundle reply's entries (a transaction or batch
	// response, or a search set), in order.
	Results []LoggedEntry `json:"results,omitempty"`
}

// LoggedEntry is one entry of a Bundle in a request or a reply.
type LoggedEntry struct {
	Method   string `json:"method,omitempty"`
	URL      string `json:"url,omitempty"`
	IfMatch  string `json:"ifMatch,omitempty"`
	Status   string `json:"status,omitempty"`
	Location string `json:"location,omitempty"`
	ETag     string `json:"etag,omitempty"`
	Resource string `json:"resource,omitempty"`
}

// Record adds a line for a request sent to the target past the proxy (set
// By), so the log tells the whole story of a resource. Describe renders
// the request's resource in body and the reply's in reply.
func (l *RequestLog) Record(rec LoggedRequest, body, reply []byte) {
	rec.Body, rec.Entries = l.body(body)
	rec.Reply, rec.Results = l.body(reply)
	l.write(&rec)
}

func (l *RequestLog) write(rec *LoggedRequest) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.W.Write(b)
}

func (l *RequestLog) describe(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	if l.Describe != nil {
		return l.Describe(raw)
	}
	var r struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return "unreadable"
	}
	s := r.ResourceType
	if r.ID != "" {
		s += "/" + r.ID
	}
	if r.Meta.VersionID != "" {
		s += "/_history/" + r.Meta.VersionID
	}
	return s
}

// bundleJSON is the part of a Bundle the log reads.
type bundleJSON struct {
	ResourceType string `json:"resourceType"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
		Request  *struct {
			Method  string `json:"method"`
			URL     string `json:"url"`
			IfMatch string `json:"ifMatch"`
		} `json:"request"`
		Response *struct {
			Status   string `json:"status"`
			Location string `json:"location"`
			Etag     string `json:"etag"`
		} `json:"response"`
	} `json:"entry"`
}

// body describes a request or reply body: the resource, or a Bundle's
// entries.
func (l *RequestLog) body(b []byte) (string, []LoggedEntry) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return "", nil
	}
	var bun bundleJSON
	if json.Unmarshal(b, &bun) != nil {
		return "unreadable", nil
	}
	if bun.ResourceType != "Bundle" {
		return l.describe(b), nil
	}
	out := make([]LoggedEntry, 0, len(bun.Entry))
	for _, en := range bun.Entry {
		le := LoggedEntry{Resource: l.describe(en.Resource)}
		if en.Request != nil {
			le.Method, le.URL, le.IfMatch = en.Request.Method, en.Request.URL, en.Request.IfMatch
		}
		if en.Response != nil {
			le.Status, le.Location, le.ETag = en.Response.Status, en.Response.Location, en.Response.Etag
		}
		out = append(out, le)
	}
	return "Bundle", out
}

// logKey carries a request's *loggedCall to the places that see its reply.
type logKey struct{}

// loggedCall is a request being logged.
type loggedCall struct {
	mu  sync.Mutex
	rec LoggedRequest
}

// startLog begins the record of r, reading its body (and putting it back).
func (p *Proxy) startLog(r *http.Request, seq int64, path string, kind Kind) *loggedCall {
	lc := &loggedCall{rec: LoggedRequest{
		Seq: seq, Start: time.Now(), Method: r.Method, Path: path, Query: r.URL.RawQuery,
		IfMatch: r.Header.Get("If-Match"), Fault: kind,
	}}
	if r.Body != nil && r.Body != http.NoBody {
		body, ok := readBody(r)
		if ok {
			r.Body = io.NopCloser(bytes.NewReader(body))
			if !strings.Contains(r.Header.Get("Content-Type"), "x-www-form-urlencoded") {
				lc.rec.Body, lc.rec.Entries = p.reqLog.body(body)
			}
		} else {
			r.Body = io.NopCloser(bytes.NewReader(nil))
		}
	}
	return lc
}

// reply records the target's answer to a logged request.
func (p *Proxy) reply(lc *loggedCall, resp *http.Response, body []byte) {
	if lc == nil {
		return
	}
	desc, entries := p.reqLog.body(body)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.rec.Status = resp.StatusCode
	lc.rec.ETag = resp.Header.Get("ETag")
	lc.rec.Location = resp.Header.Get("Location")
	lc.rec.Reply, lc.rec.Results = desc, entries
}

func (p *Proxy) endLog(lc *loggedCall) {
	lc.mu.Lock()
	rec := lc.rec
	lc.mu.Unlock()
	rec.End = time.Now()
	p.reqLog.write(&rec)
}
