package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// statement is the part of a CapabilityStatement the check reads beyond
// what the plan keeps. Unknown fields are ignored.
type statement struct {
	ResourceType string   `json:"resourceType"`
	FHIRVersion  string   `json:"fhirVersion"`
	Kind         string   `json:"kind"`
	Format       []string `json:"format"`
	Software     struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"software"`
	Rest []stRest `json:"rest"`

	server int // index of the rest entry with mode server
}

type stRest struct {
	Mode        string `json:"mode"`
	Interaction []struct {
		Code string `json:"code"`
	} `json:"interaction"`
	Security *struct {
		Service []struct {
			Coding []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"coding"`
		} `json:"service"`
		Extension []stExtension `json:"extension"`
	} `json:"security"`
	Resource []stResource `json:"resource"`
}

type stExtension struct {
	URL string `json:"url"`
}

type stResource struct {
	Type              string `json:"type"`
	Versioning        string `json:"versioning"`
	ConditionalCreate bool   `json:"conditionalCreate"`
	ConditionalUpdate bool   `json:"conditionalUpdate"`
}

// resource returns the statement's entry for type t, or a zero one.
func (s *statement) resource(t string) stResource {
	for _, r := range s.Rest[s.server].Resource {
		if r.Type == t {
			return r
		}
	}
	return stResource{}
}

// rootInteractions are the server's system-level interactions (batch,
// transaction, search-system, history-system).
func (s *statement) rootInteractions() []string {
	var out []string
	for _, i := range s.Rest[s.server].Interaction {
		out = append(out, i.Code)
	}
	return out
}

// Patterns for what the check quotes from a statement: only values of
// these shapes, so a server cannot get free text into a reason.
var (
	typeName    = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
	versionText = regexp.MustCompile(`^[0-9][0-9A-Za-z.\-]{0,15}$`)
	formatText  = regexp.MustCompile(`^[a-z][a-z0-9+/.\-]{0,40}$`)
)

// connectivityAndMetadata reads the statement (live: GET /metadata, which
// also tells whether the EHR is reachable over verified TLS), checks it and
// builds the plan.
func (r *runner) connectivityAndMetadata(ctx context.Context) {
	raw := r.o.Statement
	if !r.live {
		r.add(GroupConnectivity, "connectivity.reachable", Skip, true, "offline")
		r.add(GroupConnectivity, "connectivity.tls", Skip, true, "offline")
		r.add(GroupMetadata, "metadata.read", Skip, true, "offline: the statement was read from a file")
	} else {
		start := time.Now()
		body, err := r.client.Metadata(ctx)
		if !r.connectivity(err, time.Since(start)) {
			return
		}
		raw = body
	}
	r.statementTests(raw)
}

// connectivity reports reachability and TLS from the /metadata call, and
// metadata.read; it reports whether the statement was read.
func (r *runner) connectivity(err error, took time.Duration) bool {
	var e *ehr.Error
	errors.As(err, &e)
	switch {
	case err == nil:
		r.add(GroupConnectivity, "connectivity.reachable", Pass, true, "GET /metadata answered in %d ms", took.Milliseconds())
	case e != nil && e.Status != 0:
		r.add(GroupConnectivity, "connectivity.reachable", Pass, true, "GET /metadata answered HTTP %d in %d ms", e.Status, took.Milliseconds())
	case certError(err):
		r.add(GroupConnectivity, "connectivity.reachable", Pass, true, "the server answered the TLS handshake")
		r.add(GroupConnectivity, "connectivity.tls", Fail, true,
			"TLS verification failed: %s; trust the EHR's CA with caFile (--ca-file), never by turning verification off", certReason(err))
		r.add(GroupMetadata, "metadata.read", Skip, true, "not read: TLS verification failed")
		return false
	case protocolError(err):
		r.add(GroupConnectivity, "connectivity.reachable", Pass, true, "the server accepted the connection")
		r.add(GroupConnectivity, "connectivity.tls", Fail, true,
			"TLS verification failed: the server does not speak TLS on this address; check the base URL's scheme and port")
		r.add(GroupMetadata, "metadata.read", Skip, true, "not read: no TLS")
		return false
	default:
		r.add(GroupConnectivity, "connectivity.reachable", verdict(err), true,
			"cannot reach the EHR: %s; check the base URL, DNS and firewall", describe(err))
		r.add(GroupConnectivity, "connectivity.tls", Skip, true, "not reached")
		r.add(GroupMetadata, "metadata.read", Skip, true, "not reached")
		return false
	}
	switch {
	case r.https && r.o.CAFile != "":
		r.add(GroupConnectivity, "connectivity.tls", Pass, true, "https; the certificate verified against the system CAs and caFile (verification is always on)")
	case r.https:
		r.add(GroupConnectivity, "connectivity.tls", Pass, true, "https; the certificate verified against the system CAs (verification is always on)")
	case r.loopback:
		r.add(GroupConnectivity, "connectivity.tls", Pass, true, "warning: plain http, accepted only because the host is a loopback address (a local TLS proxy or a test server)")
	default:
		r.add(GroupConnectivity, "connectivity.tls", Fail, true,
			"plain http to a remote host: tokens and patient data would cross the network in clear; use the EHR's https base URL (only /metadata was requested)")
	}
	if e != nil {
		hint := "check that the base URL is the EHR's FHIR R4 base"
		switch e.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = "the CapabilityStatement is public by the FHIR specification, and ipsfhir reads it without credentials; ask the EHR to allow that"
		case http.StatusNotAcceptable:
			hint = "the EHR refused application/fhir+json; ipsfhir speaks FHIR JSON only"
		}
		r.add(GroupMetadata, "metadata.read", verdict(err), true, "GET /metadata answered %s: %s", describe(err), hint)
		return false
	}
	r.add(GroupMetadata, "metadata.read", Pass, true, "GET /metadata answered HTTP 200")
	return true
}

// statementTests checks the statement and builds the plan from it.
func (r *runner) statementTests(raw []byte) {
	const g = GroupMetadata
	st := &statement{server: -1}
	if err := json.Unmarshal(raw, st); err != nil {
		reason := "not JSON (an HTML page? check the base URL)"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			reason = fmt.Sprintf("not a valid CapabilityStatement: %s has the wrong JSON type", te.Field)
		}
		r.add(g, "metadata.statement", Fail, true, "%s", reason)
		return
	}
	if st.ResourceType != "CapabilityStatement" {
		what := "no resourceType"
		switch {
		case typeName.MatchString(st.ResourceType):
			what = "a " + st.ResourceType
		case st.ResourceType != "":
			what = "not a FHIR resource"
		}
		r.add(g, "metadata.statement", Fail, true, "the answer is %s, not a CapabilityStatement; check that the base URL is the FHIR R4 base", what)
		return
	}
	st.server = slices.IndexFunc(st.Rest, func(x stRest) bool { return x.Mode == "server" })
	if st.server < 0 {
		r.add(g, "metadata.statement", Fail, true, "the CapabilityStatement has no rest entry with mode server: it describes a client, not a FHIR server")
		return
	}
	who := ""
	if st.Software.Name != "" && len(st.Software.Name) <= 60 {
		who = ", from " + strings.TrimSpace(st.Software.Name+" "+st.Software.Version)
	}
	kind := ""
	if st.Kind == "instance" || st.Kind == "capability" || st.Kind == "requirements" {
		kind = " (kind " + st.Kind + ")"
	}
	r.add(g, "metadata.statement", Pass, true, "a CapabilityStatement%s with a server part declaring %d resource types%s",
		kind, len(st.Rest[st.server].Resource), who)

	r4 := strings.HasPrefix(st.FHIRVersion, "4.0.")
	switch {
	case r4:
		r.add(g, "metadata.fhir-version", Pass, true, "FHIR %s (R4)", st.FHIRVersion)
	case versionText.MatchString(st.FHIRVersion):
		r.add(g, "metadata.fhir-version", Fail, true, "declares FHIR %s; ipsfhir speaks R4 (4.0.x): use the EHR's R4 endpoint", st.FHIRVersion)
	default:
		r.add(g, "metadata.fhir-version", Fail, true, "declares no usable fhirVersion; ipsfhir speaks R4 (4.0.x)")
	}

	var formats []string
	hasJSON := false
	for _, f := range st.Format {
		f = strings.ToLower(strings.TrimSpace(f))
		if formatText.MatchString(f) {
			formats = append(formats, f)
		}
		if f == "json" || strings.HasSuffix(f, "/json") || strings.HasSuffix(f, "+json") {
			hasJSON = true
		}
	}
	switch {
	case hasJSON:
		r.add(g, "metadata.formats", Pass, true, "formats %s include JSON", strings.Join(formats, ", "))
	case len(st.Format) == 0:
		r.add(g, "metadata.formats", Fail, false, "declares no format; ipsfhir speaks JSON only, and the live tests show whether the EHR answers it")
	default:
		r.add(g, "metadata.formats", Fail, true, "declares formats %s but not JSON; ipsfhir speaks FHIR JSON only", strings.Join(formats, ", "))
	}
	if !r4 {
		return
	}
	p, err := plan.Build(raw, r.o.Plan)
	if err != nil {
		r.add(GroupWritePaths, "write-paths.plan", Fail, true, "no sync plan: %v", err)
		return
	}
	r.st, r.p = st, p
}

// certError reports a failed TLS certificate verification.
func certError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// certReason names what is wrong with the certificate.
func certReason(err error) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return "the certificate is signed by an unknown authority"
	case errors.As(err, &he):
		return "the certificate is not valid for this host name"
	case errors.As(err, &ci):
		if ci.Reason == x509.Expired {
			return "the certificate has expired or is not yet valid"
		}
		return "the certificate is not valid"
	}
	return "the certificate could not be verified"
}

func protocolError(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}
