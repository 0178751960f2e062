package mappings

import (
	"errors"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/service_request_go_proto"
)

// DefaultReferralCodes mark a ServiceRequest as a referral to IPS when it
// carries any of them in code or category: the Gravity SDOH employment-status
// domain, which is how SDOH referral workflows categorize help with work.
// Sites add their own local order codes in configuration.
var DefaultReferralCodes = []ips.Coding{{System: SystemSDOHCCTemporary, Code: SDOHEmploymentStatus}}

// IsIPSReferral reports whether sr is a referral to the IPS program: it
// carries one of codes (DefaultReferralCodes when codes is nil) in its code or
// category.
func IsIPSReferral(sr *srpb.ServiceRequest, codes []ips.Coding) bool {
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

// ErrNotActiveReferral is returned for a referral that was revoked, entered
// in error or is only a draft: nothing to enroll.
var ErrNotActiveReferral = errors.New("service request is not an active or completed referral")

// ReferralOptions say how to read a referral.
type ReferralOptions struct {
	// ClientID is the id the new client gets; empty derives one from the
	// ServiceRequest's id ("ref-{id}").
	ClientID string
	// PatientSystem is the identifier system of the EHR's own Patient ids,
	// used when the subject is only a literal reference (Patient/123).
	PatientSystem string
}

// ReferralFromFHIR turns a referral to IPS into a new enrollment. IPS has zero
// exclusion: every referred person who wants to work is enrolled, so there is
// no eligibility check, and the referral date is also the enrollment date.
func ReferralFromFHIR(sr *srpb.ServiceRequest, o ReferralOptions) (*ips.Client, error) {
	switch sr.GetStatus().GetValue() {
	case cpb.RequestStatusCode_ACTIVE, cpb.RequestStatusCode_COMPLETED:
	default:
		return nil, ErrNotActiveReferral
	}
	r := newReader("ServiceRequest")
	c := &ips.Client{ID: o.ClientID, Status: ips.ClientActive, Patient: patientOf(sr.GetSubject())}
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
	c.EnrolledOn = c.ReferredOn
	if c.ReferredOn.IsZero() {
		r.fail("authoredOn", "is required: it is the referral date")
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
