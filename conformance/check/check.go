package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// Status is the outcome of one test.
type Status string

// The outcomes of a test.
const (
	Pass  Status = "pass"  // the EHR does what sync needs
	Fail  Status = "fail"  // it does not; Reason says what follows and what to do
	Skip  Status = "skip"  // applies, but was not run (offline, no write tests, a test it needs did not pass)
	Omit  Status = "omit"  // does not apply to this connection
	Error Status = "error" // no verdict: the EHR timed out or failed (5xx), or the answer could not be read
)

// Groups, in the order results are reported.
const (
	GroupConnectivity    = "connectivity"
	GroupAuth            = "auth"
	GroupMetadata        = "metadata"
	GroupResources       = "resources"
	GroupWritePaths      = "write-paths"
	GroupConditional     = "conditional"
	GroupVersioning      = "versioning"
	GroupChangeDetection = "change-detection"
	GroupBundles         = "bundles"
	GroupSMART           = "smart"
	GroupWriteTests      = "write-tests"
)

// Groups lists every group in report order.
var Groups = []string{GroupConnectivity, GroupAuth, GroupMetadata, GroupResources, GroupWritePaths,
	GroupConditional, GroupVersioning, GroupChangeDetection, GroupBundles, GroupSMART, GroupWriteTests}

// ResourceTypes are the FHIR types the resources group checks: the ones the
// sync engine reads or writes.
var ResourceTypes = []string{"Patient", "Goal", "CarePlan", "Observation", "DocumentReference", "ServiceRequest"}

// Result is one test's outcome.
type Result struct {
	// ID names the test, stable across releases, e.g. "metadata.fhir-version"
	// or "resources.Goal.search".
	ID     string `json:"id"`
	Group  string `json:"group"`
	Status Status `json:"status"`
	// Reason is one line for a person: what was found and, for a failure,
	// what follows from it or what to do.
	Reason string `json:"reason"`
	// Blocking says a fail or error of this test means sync cannot run.
	Blocking bool `json:"blocking"`
}

// Blocks reports whether r stops sync from running.
func (r Result) Blocks() bool { return r.Blocking && (r.Status == Fail || r.Status == Error) }

// Report is the outcome of a check.
type Report struct {
	Results []Result `json:"results"`
	// Plan is the sync plan the statement leads to; nil when there is no
	// usable R4 CapabilityStatement.
	Plan *plan.Plan `json:"plan"`
	// Ready is true when no blocking test failed or erred.
	Ready bool `json:"ready"`
}

// Auth types, spelled as in the configuration file.
const (
	AuthNone         = "none"
	AuthBearer       = "bearer"
	AuthSMARTBackend = "smart-backend"
)

// Auth is how the checked connection authenticates.
type Auth struct {
	// Type is AuthNone (or ""), AuthBearer or AuthSMARTBackend.
	Type string
	// Provider supplies the Authorization header; nil for AuthNone.
	Provider ehr.Auth
	// Alg is the JWS algorithm the smart-backend key signs with, RS384 or
	// ES384; the SMART configuration must list it.
	Alg string
	// TokenURL is the configured token endpoint; empty when it is discovered
	// from the SMART configuration.
	TokenURL string
}

// Options says what to check. Exactly one of Statement and BaseURL is set.
type Options struct {
	// Statement is a saved CapabilityStatement (JSON): an offline check that
	// sends nothing. Live-only tests are skipped with reason "offline".
	Statement []byte
	// BaseURL is the EHR's FHIR R4 base: a live check.
	BaseURL string
	// CAFile adds CA certificates (PEM) to the system's, as the connection's
	// caFile does.
	CAFile string
	Auth   Auth
	// TestPatient is the id of a test patient in the EHR (never a real
	// patient's). Live searches then use it instead of a made-up id.
	TestPatient string
	// WriteTests creates, updates and deletes one test resource for
	// TestPatient. Without it the check writes nothing.
	WriteTests bool
	// Plan is passed to plan.Build (the connection's overrides).
	Plan plan.Options
	// Timeout bounds each request. Default 20 s.
	Timeout time.Duration
}

const (
	defaultTimeout = 20 * time.Second
	// checkSystem is the identifier system of the test resources write tests
	// create: outside every program's namespace (urn:ipsfhir:{program}:…).
	checkSystem = "urn:ipsfhir:check"
	// probeID is a made-up id that matches nothing: live tests without a
	// test patient read and search with it, so no patient data comes back.
	probeID = "ipsfhir-check-probe"
)

// fhirID is FHIR's id datatype.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// ErrOptions is wrapped by Run's errors: the options cannot describe a check.
var ErrOptions = errors.New("check: invalid options")

// Run runs the check. Its error is only for options that cannot work (both
// or neither of Statement and BaseURL, a malformed test patient id, write
// tests without a test patient, a base URL the FHIR client refuses);
// everything about the EHR is in the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	r := &runner{o: o, live: o.BaseURL != ""}
	if r.live {
		c, err := ehr.New(ehr.Options{BaseURL: o.BaseURL, Connection: "check", Auth: o.Auth.Provider, CAFile: o.CAFile,
			Timeout: o.Timeout, MaxAttempts: 2, MaxRetryAfter: 5 * time.Second, MaxPages: 1})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOptions, err)
		}
		r.client = c
		u, _ := url.Parse(o.BaseURL)
		r.https = strings.EqualFold(u.Scheme, "https")
		r.loopback = isLoopback(u.Hostname())
	}
	r.run(ctx)
	return r.report(), nil
}

func (o Options) validate() error {
	switch {
	case len(o.Statement) > 0 && o.BaseURL != "":
		return fmt.Errorf("%w: give a statement or a base URL, not both", ErrOptions)
	case len(o.Statement) == 0 && o.BaseURL == "":
		return fmt.Errorf("%w: give a statement or a base URL", ErrOptions)
	case o.TestPatient != "" && !fhirID.MatchString(o.TestPatient):
		return fmt.Errorf("%w: the test patient must be a FHIR id (1-64 letters, digits, '-', '.')", ErrOptions)
	case o.TestPatient != "" && o.BaseURL == "":
		return fmt.Errorf("%w: a test patient needs a live check", ErrOptions)
	case o.WriteTests && o.TestPatient == "":
		return fmt.Errorf("%w: write tests need a test patient", ErrOptions)
	}
	switch o.Auth.Type {
	case "", AuthNone:
		if o.Auth.Provider != nil {
			return fmt.Errorf("%w: auth type none with credentials", ErrOptions)
		}
	case AuthBearer, AuthSMARTBackend:
		if o.Auth.Provider == nil && o.BaseURL != "" {
			return fmt.Errorf("%w: auth type %s without credentials", ErrOptions, o.Auth.Type)
		}
	default:
		return fmt.Errorf("%w: unknown auth type", ErrOptions)
	}
	return nil
}

// runner is one check in progress. Tests run in order, and later ones read
// what earlier ones found.
type runner struct {
	o       Options
	live    bool
	client  *ehr.Client
	results []Result

	// https and loopback describe the base URL: plain http to a remote
	// host gets nothing but the /metadata request.
	https, loopback bool
	// st is the parsed statement, p the plan; nil when unusable.
	st *statement
	p  *plan.Plan
	// authOK: authenticated requests work (or the check is offline).
	authOK bool
	// patientOK: the test patient could be read.
	patientOK bool
	// probeType is the type authenticated probes read.
	probeType string
	// writes holds what the write tests found, for the conditional and
	// versioning groups.
	writes writeFindings
}

func (r *runner) add(group, id string, s Status, blocking bool, format string, args ...any) {
	r.results = append(r.results, Result{ID: id, Group: group, Status: s, Reason: fmt.Sprintf(format, args...), Blocking: blocking})
}

func (r *runner) run(ctx context.Context) {
	r.connectivityAndMetadata(ctx)
	if r.p == nil {
		r.skipRest("no usable R4 CapabilityStatement (see metadata)")
		return
	}
	r.auth(ctx)
	r.resources(ctx)
	r.writePaths()
	r.writeTests(ctx)
	r.conditional()
	r.versioning()
	r.changeDetection(ctx)
	r.bundles()
	r.smart(ctx)
}

// canSend reports whether authenticated live tests may run, and if not why.
func (r *runner) canSend() (bool, string) {
	switch {
	case !r.live:
		return false, "offline"
	case !r.https && !r.loopback:
		return false, "not sent: plain http to a remote host (see connectivity.tls)"
	case !r.authOK:
		return false, "not sent: authentication does not work (see auth)"
	}
	return true, ""
}

// skipRest reports every group after metadata as skipped.
func (r *runner) skipRest(reason string) {
	for _, g := range Groups {
		switch g {
		case GroupConnectivity, GroupMetadata:
			continue
		}
		r.add(g, g, Skip, false, "%s", reason)
	}
}

func (r *runner) report() *Report {
	order := func(g string) int { return slices.Index(Groups, g) }
	slices.SortStableFunc(r.results, func(a, b Result) int { return order(a.Group) - order(b.Group) })
	rep := &Report{Results: r.results, Plan: r.p, Ready: true}
	for _, res := range r.results {
		if res.Blocks() {
			rep.Ready = false
		}
	}
	return rep
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// describe says what went wrong with an EHR call, in words that carry no
// patient data: ehr.Error's message holds the operation, the HTTP status,
// the kind and OperationOutcome issue codes, never a URL or a body.
func describe(err error) string {
	var e *ehr.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	switch {
	case e.Status != 0 && len(e.IssueCodes) > 0:
		return fmt.Sprintf("HTTP %d (%s, issues %s)", e.Status, e.Kind.String(), strings.Join(e.IssueCodes, ","))
	case e.Status != 0:
		return fmt.Sprintf("HTTP %d (%s)", e.Status, e.Kind.String())
	case e.Cause() != "":
		// A transport failure: its token, never the socket addresses
		// the underlying error quotes.
		return e.Token()
	}
	return e.Kind.String()
}

// verdict is the status of a test whose request failed with err: error when
// the EHR gave no verdict (timeouts, 5xx, unreadable answers), else fail.
func verdict(err error) Status {
	if errors.Is(err, ehr.ErrTransient) || errors.Is(err, ehr.ErrOutcomeUnknown) || errors.Is(err, context.Canceled) {
		return Error
	}
	return Fail
}

// status returns the HTTP status of a failed call, 0 if none.
func status(err error) int {
	var e *ehr.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
