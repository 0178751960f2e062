package faultproxy

import (
	"fmt"
	"net/http"
	"strings"
)

// Kind is one way a request can fail. The set is closed: New and the arming
// methods refuse anything else.
type Kind string

// The fault kinds. doc.go says which real-world failure each stands for and
// whether the target applied the request.
const (
	// Kind500 answers 500 with an OperationOutcome; not forwarded.
	Kind500 Kind = "500"
	// Kind502 answers 502 with an OperationOutcome; not forwarded.
	Kind502 Kind = "502"
	// Kind503 answers 503 with an OperationOutcome and no Retry-After; not
	// forwarded.
	Kind503 Kind = "503"
	// Kind429 answers 429 with an OperationOutcome and Retry-After
	// (Options.RetryAfter); not forwarded.
	Kind429 Kind = "429"
	// KindHang holds the request for Options.Hang without answering, then
	// forwards it, discards the reply and drops the client connection.
	KindHang Kind = "hang"
	// KindReset resets the client connection (TCP RST) before forwarding
	// anything.
	KindReset Kind = "reset"
	// KindLostReply forwards the request, reads the target's whole reply,
	// then resets the client connection without answering.
	KindLostReply Kind = "lost-reply"
)

// AllKinds returns every kind, in the order Stats.String lists them. It is a
// fresh slice each time.
func AllKinds() []Kind {
	return []Kind{Kind500, Kind502, Kind503, Kind429, KindHang, KindReset, KindLostReply}
}

func (k Kind) valid() bool {
	for _, known := range AllKinds() {
		if k == known {
			return true
		}
	}
	return false
}

// status is the HTTP status a status-kind answers, or 0 for the others.
func (k Kind) status() int {
	switch k {
	case Kind500:
		return http.StatusInternalServerError
	case Kind502:
		return http.StatusBadGateway
	case Kind503:
		return http.StatusServiceUnavailable
	case Kind429:
		return http.StatusTooManyRequests
	}
	return 0
}

// Match selects requests for an armed rule (Once, Nth) or for random faults
// (Options.Scope). Every field that is set must hold; the zero Match matches
// every request.
//
// Paths are relative to the FHIR base (the target's path) without the
// leading slash and without the query: "Goal/123" for PUT [base]/Goal/123,
// "Goal" for a search or a conditional update, "" for a transaction or batch
// POSTed to the base, "metadata". A request outside the FHIR base (a SMART
// token endpoint, say) keeps its whole path with the leading slash, so
// "/auth/" matches it and "Goal/" never does.
type Match struct {
	// Method is the HTTP method, compared without regard to case; "" is any.
	Method string
	// PathPrefix is a plain string prefix of the relative path: "Goal/"
	// matches instance requests (Goal/123, Goal/123/_history/4); "Goal"
	// also matches type-level ones (Goal?identifier=…) and, being a plain
	// prefix, any type whose name starts with Goal. Use Func for anything
	// finer, such as only the base (path == "").
	PathPrefix string
	// Func, when set, must also return true. It gets the method, the
	// relative path as above and the raw query; it runs under the proxy's
	// lock, so it must be quick and must not call the Proxy.
	Func func(method, path, rawQuery string) bool
}

func (m Match) matches(method, path, rawQuery string) bool {
	if m.Method != "" && !strings.EqualFold(m.Method, method) {
		return false
	}
	if !strings.HasPrefix(path, m.PathPrefix) {
		return false
	}
	return m.Func == nil || m.Func(method, path, rawQuery)
}

// Rule is a fault armed by Once or Nth.
type Rule struct {
	match Match
	kind  Kind
	left  int // matching requests still to let through, plus one
	done  chan struct{}
}

// Done is closed once the rule's fault has been applied to its request: a
// status answer written, a connection reset, a hung request held (its body
// read, nothing forwarded yet), a lost reply read from the target and the
// client connection dropped. Tests wait on it instead of sleeping.
func (r *Rule) Done() <-chan struct{} { return r.done }

// Fault is one injected fault in the proxy's log. It holds no URL, query,
// id or body: only tokens safe for a report.
type Fault struct {
	// Seq is the request's number in arrival order, from 1. With the same
	// Seed and the same requests in the same order, random faults fall on
	// the same Seq with the same Kind.
	Seq int64
	// Method is the HTTP method.
	Method string
	// ResourceType is the first path segment when it looks like a FHIR
	// resource type ("Goal"), "metadata", or "" (a Bundle POSTed to the base,
	// or a path outside the FHIR base).
	ResourceType string
	// Kind is the fault.
	Kind Kind
	// Armed is true when Once or Nth chose the request, false when the
	// random draw did.
	Armed bool
}

// String renders the fault for a report, e.g. "#12 PUT Goal lost-reply".
func (f Fault) String() string {
	rt := f.ResourceType
	if rt == "" {
		rt = "-"
	}
	s := fmt.Sprintf("#%d %s %s %s", f.Seq, f.Method, rt, f.Kind)
	if f.Armed {
		s += " (armed)"
	}
	return s
}

// resourceType returns the token Fault.ResourceType documents for a
// relative path: never anything that could be an id or carry data.
func resourceType(path string) string {
	seg, _, _ := strings.Cut(path, "/")
	if seg == "metadata" {
		return seg
	}
	if seg == "" || len(seg) > 64 || seg[0] < 'A' || seg[0] > 'Z' {
		return ""
	}
	for _, c := range seg {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return ""
		}
	}
	return seg
}

// Stats counts what the proxy did, for test assertions and run reports.
type Stats struct {
	// Requests is every request received.
	Requests int
	// Forwarded is every request sent on to the target, faulted ones
	// included (lost-reply, and hang once its hold ends).
	Forwarded int
	// Faults is the number of faults injected, by kind; kinds never
	// injected are absent.
	Faults map[Kind]int
	// UpstreamErrors counts forwards that got no answer from the target
	// (it was down or broke the connection). The proxy answers those 502
	// like a gateway, and does not count them as faults.
	UpstreamErrors int
}

// String renders the counters on one line in a fixed order, e.g.
// "requests=120 forwarded=101 upstream_errors=0 500=3 502=2 …".
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests=%d forwarded=%d upstream_errors=%d", s.Requests, s.Forwarded, s.UpstreamErrors)
	for _, k := range AllKinds() {
		fmt.Fprintf(&b, " %s=%d", k, s.Faults[k])
	}
	return b.String()
}
