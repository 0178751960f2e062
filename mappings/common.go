package mappings

import (
	"github.com/google/fhir/go/jsonformat"

	"github.com/ipsfhir/ipsfhir/ips"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
)

// meta marks every emitted resource with its profile, the adapter's
// authorship tag and the configured security labels.
func (o Options) meta(profile string, alsoClaims ...string) *dtpb.Meta {
	m := &dtpb.Meta{
		Profile: []*dtpb.Canonical{{Value: profile}},
		Tag:     []*dtpb.Coding{fcoding(SystemTags, TagAuthored, "Written by the ipsfhir adapter")},
	}
	for _, p := range alsoClaims {
		m.Profile = append(m.Profile, &dtpb.Canonical{Value: p})
	}
	for _, s := range o.security() {
		m.Security = append(m.Security, fcoding(s.System, s.Code, s.Display))
	}
	return m
}

// metaUnprofiled is meta without a profile claim: the tag and the
// security labels, for resources ipsfhir publishes no profile of (the
// plan's QuestionnaireResponse, checked against its Questionnaire).
func (o Options) metaUnprofiled() *dtpb.Meta {
	m := o.meta("")
	m.Profile = nil
	return m
}

// subject refers to the client's patient by EHR identifier, and also by the
// EHR's literal id once the caller knows it, so the resource resolves on EHRs
// that insist on literal references and can still be matched back by identifier.
func (o Options) subject(c *ips.Client) *dtpb.Reference {
	r := &dtpb.Reference{Identifier: fidentifier(c.Patient.System, c.Patient.Value)}
	if o.PatientReference != nil {
		if lit := o.PatientReference(c.Patient); lit != "" {
			r.Reference = &dtpb.Reference_Uri{Uri: &dtpb.String{Value: lit}}
			// Literal "Patient/123" is stored typed by google/fhir/go; keep one form.
			_ = jsonformat.NormalizeReference(r)
		}
	}
	return r
}

// recordRef refers to another IPS record's resource by its business
// identifier, and also by the EHR's literal id once the caller knows it, as
// subject does: the reference means the same whether or not the record was
// written to this EHR, and in a single request as in a Bundle.
func (o Options) recordRef(k Key, resourceType string) *dtpb.Reference {
	r := &dtpb.Reference{Type: furi(resourceType), Identifier: fidentifier(k.System(), k.Value())}
	if o.Reference != nil {
		if lit := o.Reference(k); lit != "" {
			r.Reference = &dtpb.Reference_Uri{Uri: &dtpb.String{Value: lit}}
			_ = jsonformat.NormalizeReference(r)
		}
	}
	return r
}

// issued is Observation.issued: when this version is made available (Now).
func (o Options) issued() *dtpb.Instant {
	if o.Now.IsZero() {
		return nil
	}
	return finstant(o.Now)
}

// patientOf reads the patient identifier a subject Reference carries.
func patientOf(r *dtpb.Reference) ips.Identifier {
	id := r.GetIdentifier()
	return ips.Identifier{System: id.GetSystem().GetValue(), Value: id.GetValue().GetValue()}
}
