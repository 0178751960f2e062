package mappings

import (
	"errors"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/service_request_go_proto"
)

// DefaultReferralCodes mark a ServiceRequest as a referral to IPS when it
// carries any of them in code or category: the Gravity SDOH employment-status
// domain, which is how SDOH referral workflows categorize help with work.
// Sites add their own local order codes in configuration.
var DefaultReferralCodes = []ips.Coding{{System: SystemSDOHCCTemporary, Code: SDOHEmploymentStatus}}

// DefaultReferralIntents are the ServiceRequest intents read as a referral:
// an order. A proposal or a plan is a suggestion, not a referral.
var DefaultReferralIntents = []string{"order"}

// RequestIntents are the codes of http://hl7.org/fhir/request-intent (R4),
// which a ServiceRequest's intent takes.
var RequestIntents = []string{"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}

// ReferralPerformer names the program as a ServiceRequest performer: a
// literal reference to its Organization or HealthcareService in the EHR
// ("HealthcareService/ips-1"), or an identifier of it.
type ReferralPerformer struct {
	Reference  string
	Identifier ips.Identifier
}

// ReferralMatch says which ServiceRequests are referrals to this program.
type ReferralMatch struct {
	// Codes mark a referral in code or category; nil means
	// DefaultReferralCodes.
	Codes []ips.Coding
	// Intents are the intents taken; nil means DefaultReferralIntents.
	Intents []string
	// Performers name the program; none means the performer is not
	// looked at.
	Performers []ReferralPerformer
}

// IsIPSReferral reports whether sr is a referral to this program, whatever
// its status: its intent is one of m.Intents, and
//
//   - it names the program as a performer (m.Performers), or
//   - it carries one of m.Codes in code or category and names no other
//     performer (with no Performers configured, any performer is taken).
//
// So with Performers configured, a request coded for employment help but
// addressed to another agency (state vocational rehabilitation) is not a
// referral here; one addressed to the program is, whatever its code.
func IsIPSReferral(sr *srpb.ServiceRequest, m ReferralMatch) bool {
	intents := m.Intents
	if intents == nil {
		intents = DefaultReferralIntents
	}
	if !containsString(intents, intentCode(sr.GetIntent().GetValue())) {
		return false
	}
	if len(m.Performers) > 0 {
		performers := sr.GetPerformer()
		for _, p := range performers {
			if namesProgram(p, m.Performers) {
				return true
			}
		}
		if len(performers) > 0 {
			return false // addressed to someone else
		}
	}
	codes := m.Codes
	if codes == nil {
		codes = DefaultReferralCodes
	}
	for _, want := range codes {
		if hasCoding(sr.GetCode(), want.System, want.Code) {
			return true
		}
		for _, cat := range sr.GetCategory() {
			if hasCoding(cat, want.System, want.Code) {
				return true
			}
		}
	}
	return false
}

func namesProgram(r *dtpb.Reference, ps []ReferralPerformer) bool {
	ref := referenceString(r)
	id := ips.Identifier{System: r.GetIdentifier().GetSystem().GetValue(), Value: r.GetIdentifier().GetValue().GetValue()}
	for _, p := range ps {
		if p.Reference != "" && (ref == p.Reference || strings.HasSuffix(ref, "/"+p.Reference)) {
			return true
		}
		if p.Identifier.Value != "" && id == p.Identifier {
			return true
		}
	}
	return false
}

// intentCode is the FHIR code of an intent ("original-order").
func intentCode(v cpb.RequestIntentCode_Value) string {
	return strings.ReplaceAll(strings.ToLower(v.String()), "_", "-")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ErrNotActiveReferral is returned for a referral that is not active: a
// draft, one revoked, completed, on hold or entered in error. Nothing to
// take in; a draft that becomes active is read when it does.
var ErrNotActiveReferral = errors.New("service request is not an active referral")

// ReferralOptions say how to read a referral.
type ReferralOptions struct {
	// ClientID is the id the new client gets; empty derives one from the
	// ServiceRequest's id ("ref-{id}").
	ClientID string
	// PatientSystem is the identifier system of the EHR's own Patient ids,
	// used when the subject is only a literal reference (Patient/123).
	PatientSystem string
	// Connection names the EHR connection the referral was read from; it
	// is recorded as the referral's source.
	Connection string
}

// ReferralFromFHIR turns an active referral to IPS into a referred client:
// status referred, referredOn the referral's authoredOn, no enrollment
// date. IPS has zero exclusion, so there is no eligibility check; the
// client is enrolled when a specialist accepts them (ips.Client.Accept).
func ReferralFromFHIR(sr *srpb.ServiceRequest, o ReferralOptions) (*ips.Client, error) {
	if sr.GetStatus().GetValue() != cpb.RequestStatusCode_ACTIVE {
		return nil, ErrNotActiveReferral
	}
	r := newReader("ServiceRequest")
	c := &ips.Client{ID: o.ClientID, Status: ips.ClientReferred, Patient: patientOf(sr.GetSubject())}
	if c.ID == "" {
		c.ID = clientIDFromResourceID(sr.GetId().GetValue())
		if c.ID == "" {
			r.fail("id", "is needed to name the new client when no client id is given")
		}
	}
	if c.Patient.Value == "" {
		if ref := referenceString(sr.GetSubject()); strings.HasPrefix(ref, "Patient/") && o.PatientSystem != "" {
			c.Patient = ips.Identifier{System: o.PatientSystem, Value: strings.TrimPrefix(ref, "Patient/")}
		} else {
			r.fail("subject", "must identify the patient (an identifier, or Patient/{id} with the EHR's patient identifier system configured)")
		}
	}
	c.ReferredOn = dateFromDateTime(sr.GetAuthoredOn())
	if c.ReferredOn.IsZero() {
		r.fail("authoredOn", "is required: it is the referral date")
	}
	if id := sr.GetId().GetValue(); id != "" && o.Connection != "" {
		c.Referral = &ips.ReferralSource{Connection: o.Connection, ServiceRequest: id}
	}
	return c, r.err()
}

// clientIDFromResourceID keeps the FHIR id alphabet, which is also the
// caseload id alphabet, within the 64-character limit.
func clientIDFromResourceID(id string) string {
	if id == "" {
		return ""
	}
	s := "ref-" + id
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
