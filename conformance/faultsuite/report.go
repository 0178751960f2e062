package faultsuite

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
)

// Report is what one run saw. It holds counts, field names, status codes
// and the program's synthetic client and record ids (in Mismatches only):
// never descriptions, notes or patient identifiers.
type Report struct {
	Scenario   Scenario
	Store      string // sqlite or postgres
	Replicas   int
	Clients    int
	Consenting int // clients whose consent lets their records reach the EHR
	Chaos      time.Duration
	Rate       float64
	Seed       uint64
	LeaseFor   time.Duration // the replicas' sync.leaseFor
	EHRTimeout time.Duration // the connection's per-attempt request timeout
	Soak       bool          // a soak (steady load, no kills), not a chaos run
	Started    time.Time
	Elapsed    time.Duration

	// Edits made during chaos, confirmed applied. IPS edits go through
	// /api/v1 and change only IPS-owned fields; clinician edits go to the
	// peer directly and change only clinician-owned goal fields.
	IPSEdits       int
	IPSEditsByKind map[string]int
	ClinicianEdits int
	// ClinicianEditsByKind counts status and note edits.
	ClinicianEditsByKind map[string]int
	// Unconfirmed edits: the API call's outcome could not be learned (its
	// replica died mid-request and the client could not be read back
	// before the end). Their fields are not checked.
	Unconfirmed int
	// ClinicianNote says why no clinician edits were made, when none were.
	ClinicianNote string

	Kills           int
	Restarts        int
	UnexpectedExits int
	ProxyRequests   int
	Faults          map[faultproxy.Kind]int
	// FaultsByRequest counts faults by method, resource type and kind
	// ("POST Observation lost-reply"), from the proxy's last 1,000.
	FaultsByRequest map[string]int

	Drained     bool
	Drain       time.Duration // from faults off to a lasting empty outbox
	DrainWaited time.Duration // how long the wait ran (= Drain when drained)

	Conflicts         int
	ConflictFields    map[string]int
	DeadLetters       int
	DeadLetterReasons map[string]int

	// What the checks found; each counts resources or fields.
	Duplicates        int // extra copies of a record in the EHR, by business identifier (of a Provenance, by identity tag)
	Provenances       int // distinct Provenances in the EHR, where the plan writes them
	Lost              int // a consenting client's record missing from the EHR
	Stale             int // an EHR resource whose content is not the expected final one
	Reverted          int // a field the API last set that the store no longer holds
	ClinicianMissing  int // a clinician's last change the store does not hold
	StoreDrift        int // other store fields that differ from what was imported and edited
	ConsentViolations int // records of a non-consenting client found in the EHR
	// Overwritten counts clinician changes the adapter wrote over in the
	// EHR (the version right after the clinician's lost the clinician's
	// status or notes), even if a later edit hid it from the end state.
	Overwritten int
	Mismatches  []Mismatch
	// Stories explain a few of the goal mismatches: the edits of both
	// sides to the goal, the store's value, the EHR's version history.
	Stories []string

	// Failures lists every failed assertion, each saying what was
	// observed. Empty means the run passed.
	Failures []string

	// Soak's findings, copied into SoakReport.
	soakSamples    []Sample
	soakGoroutines string
	soakPermanent  int
}

// Mismatch is one finding of the checks.
type Mismatch struct {
	Check        string // duplicate, lost, stale, reverted, clinician-missing, clinician-overwritten, store-drift, consent
	ResourceType string // EHR resource type, or "store"
	Kind         string // goal, job, plan, support, employment-status, plan-note
	Field        string // the field that differs, if any
	Client       string // the program's (synthetic) client id
	Record       string
	Detail       string // codes or counts only, never free text
}

// OK reports whether every assertion held.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

func (r *Report) fail(format string, a ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, a...))
}

// FaultTotal is the number of faults injected.
func (r *Report) FaultTotal() int {
	n := 0
	for _, v := range r.Faults {
		n += v
	}
	return n
}

func faultsText(f map[faultproxy.Kind]int) string {
	var parts []string
	for _, k := range faultproxy.AllKinds() {
		if f[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", k, f[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// mismatchSummary groups the mismatches of one check by resource type and
// field.
func (r *Report) mismatchSummary(check string) string {
	m := map[string]int{}
	for _, x := range r.Mismatches {
		if x.Check != check {
			continue
		}
		k := x.ResourceType + " " + x.Kind
		if x.Field != "" {
			k += "." + x.Field
		}
		m[k]++
	}
	return countsText(m)
}

// String renders the report for people: one fact a line.
func (r *Report) String() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	res := "PASS"
	if !r.OK() {
		res = fmt.Sprintf("FAIL (%d)", len(r.Failures))
	}
	kind := "scenario"
	if r.Soak {
		kind = "soak"
	}
	w("%s %s: %s store, %d replica(s), %d clients (%d consenting), chaos %v at fault rate %.2f, seed %d, lease %v, EHR timeout %v: %s",
		kind, r.Scenario, r.Store, r.Replicas, r.Clients, r.Consenting, r.Chaos, r.Rate, r.Seed, r.LeaseFor, r.EHRTimeout, res)
	w("  edits: IPS %d (%s), clinician %d (%s), unconfirmed %d", r.IPSEdits, countsText(r.IPSEditsByKind), r.ClinicianEdits, countsText(r.ClinicianEditsByKind), r.Unconfirmed)
	if r.ClinicianNote != "" {
		w("  clinician edits: %s", r.ClinicianNote)
	}
	w("  processes: %d SIGKILLs, %d restarts, %d unexpected exits", r.Kills, r.Restarts, r.UnexpectedExits)
	w("  faults: %d of %d proxied requests: %s", r.FaultTotal(), r.ProxyRequests, faultsText(r.Faults))
	if len(r.FaultsByRequest) > 0 {
		w("    by request: %s", countsText(r.FaultsByRequest))
	}
	if r.Drained {
		w("  outbox drained %v after faults stopped", r.Drain.Round(time.Second))
	} else {
		w("  outbox NOT drained after %v", r.DrainWaited.Round(time.Second))
	}
	w("  conflicts %d (%s), dead letters %d (%s)", r.Conflicts, countsText(r.ConflictFields), r.DeadLetters, countsText(r.DeadLetterReasons))
	w("  duplicates %d, lost %d, stale %d, reverted IPS edits %d, clinician changes missing %d, clinician changes overwritten in the EHR %d, store drift %d, consent violations %d",
		r.Duplicates, r.Lost, r.Stale, r.Reverted, r.ClinicianMissing, r.Overwritten, r.StoreDrift, r.ConsentViolations)
	if r.Provenances > 0 {
		w("  Provenances %d (by identity; their duplicates are counted above)", r.Provenances)
	}
	for _, c := range []string{"duplicate", "lost", "stale", "reverted", "clinician-missing", "clinician-overwritten", "store-drift", "consent"} {
		if s := r.mismatchSummary(c); s != "none" {
			w("    %s: %s", c, s)
		}
	}
	for _, s := range r.Stories {
		w("  story: %s", s)
	}
	w("  elapsed %v", r.Elapsed.Round(time.Second))
	for _, f := range r.Failures {
		w("  FAILED: %s", f)
	}
	return b.String()
}

// MarkdownHeader is the header of the results table MarkdownRow fills.
func MarkdownHeader() string {
	return "| scenario | clients | replicas | chaos | rate | seed | IPS edits | clinician edits | kills | faults | unexpected exits | drain | conflicts | dead letters | duplicates | lost | stale | reverted | result |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
}

// MarkdownRow renders the report as one row of the results table.
func (r *Report) MarkdownRow() string {
	drain := "not drained (" + r.DrainWaited.Round(time.Second).String() + ")"
	if r.Drained {
		drain = r.Drain.Round(time.Second).String()
	}
	res := "pass"
	if !r.OK() {
		res = fmt.Sprintf("FAIL: %d assertion(s)", len(r.Failures))
	}
	name := string(r.Scenario)
	if r.Soak {
		name += " soak"
	}
	return fmt.Sprintf("| %s | %d | %d | %v | %.2f | %d | %d | %d | %d | %d (%s) | %d | %s | %d | %d | %d | %d | %d | %d | %s |",
		name, r.Clients, r.Replicas, r.Chaos, r.Rate, r.Seed, r.IPSEdits, r.ClinicianEdits, r.Kills,
		r.FaultTotal(), faultsText(r.Faults), r.UnexpectedExits, drain, r.Conflicts, r.DeadLetters,
		r.Duplicates, r.Lost, r.Stale, r.Reverted, res)
}
