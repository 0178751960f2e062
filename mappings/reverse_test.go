package mappings

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/service_request_go_proto"
)

func TestClinicianGoalChangeComesBack(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	g := Goal(c, c.Goals[0], o)
	// A clinician marks the goal achieved and adds a note, in the EHR.
	g.LifecycleStatus.Value = cpb.GoalLifecycleStatusCode_COMPLETED
	g.AchievementStatus = fconcept(SystemGoalAchievement, "achieved", "Achieved")
	g.Note = append(g.Note, &dtpb.Annotation{Text: &dtpb.Markdown{Value: "Started at the bakery; goal met"}, Time: fdateTime(ips.MustDate("2026-03-20"))})

	k, got, err := GoalFromFHIR(g)
	if err != nil {
		t.Fatal(err)
	}
	if k != o.GoalKey(c, c.Goals[0]) {
		t.Errorf("key %+v, want %+v", k, o.GoalKey(c, c.Goals[0]))
	}
	want := *c.Goals[0]
	want.Status, want.Achievement = ips.GoalCompleted, "achieved"
	want.Notes = append(append([]ips.Note(nil), want.Notes...), ips.Note{Text: "Started at the bakery; goal met", Date: ips.MustDate("2026-03-20")})
	if d := cmp.Diff(&want, got); d != "" {
		t.Errorf("goal read back (-want +got):\n%s", d)
	}
}

func TestGoalFromFHIRListsEveryProblem(t *testing.T) {
	c := fixtureClient()
	g := Goal(c, c.Goals[0], Options{})
	g.Identifier = nil
	g.Description = nil
	g.Start = nil
	_, _, err := GoalFromFHIR(g)
	var re *ReadError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want *ReadError", err)
	}
	var paths []string
	for _, p := range re.Problems {
		paths = append(paths, p.Path)
	}
	for _, want := range []string{"Goal.identifier", "Goal.description", "Goal.startDate"} {
		if !strings.Contains(strings.Join(paths, " "), want) {
			t.Errorf("problems %v do not name %s", paths, want)
		}
	}
}

// TestReferralIsReferredWithoutEligibilityGate: an active referral makes a
// referred client (no eligibility check), not yet enrolled: enrollment is
// the specialist's acceptance.
func TestReferralIsReferredWithoutEligibilityGate(t *testing.T) {
	sr := &srpb.ServiceRequest{
		Id:         &dtpb.Id{Value: "sr-77"},
		Status:     &srpb.ServiceRequest_StatusCode{Value: cpb.RequestStatusCode_ACTIVE},
		Intent:     &srpb.ServiceRequest_IntentCode{Value: cpb.RequestIntentCode_ORDER},
		Category:   []*dtpb.CodeableConcept{sdohEmploymentCategory()},
		Subject:    &dtpb.Reference{Identifier: fidentifier("urn:oid:2.16.840.1.113883.3.9999.1", "MRN7")},
		AuthoredOn: fdateTime(ips.MustDate("2026-04-01")),
	}
	if !IsIPSReferral(sr, ReferralMatch{}) {
		t.Fatal("SDOH employment-status referral not recognised")
	}
	c, err := ReferralFromFHIR(sr, ReferralOptions{Connection: "clinic"})
	if err != nil {
		t.Fatal(err)
	}
	want := &ips.Client{ID: "ref-sr-77", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN7"},
		Status: ips.ClientReferred, ReferredOn: ips.MustDate("2026-04-01"),
		Referral: &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-77"}}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("client (-want +got):\n%s", d)
	}
	if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{c}}); err != nil {
		t.Errorf("the referred client is not a valid caseload client: %v", err)
	}

	// Subject by literal EHR id: the configured patient system names it.
	sr.Subject = fref("Patient/123")
	if _, err := ReferralFromFHIR(sr, ReferralOptions{}); err == nil {
		t.Error("literal patient reference accepted with no patient system configured")
	}
	c, err = ReferralFromFHIR(sr, ReferralOptions{PatientSystem: "https://ehr.example/Patient", ClientID: "c-9"})
	if err != nil || c.Patient.Value != "123" || c.ID != "c-9" {
		t.Errorf("literal reference: %+v, %v", c, err)
	}

	for _, st := range []cpb.RequestStatusCode_Value{cpb.RequestStatusCode_REVOKED, cpb.RequestStatusCode_COMPLETED, cpb.RequestStatusCode_DRAFT, cpb.RequestStatusCode_ON_HOLD, cpb.RequestStatusCode_ENTERED_IN_ERROR} {
		sr.Status.Value = st
		if _, err := ReferralFromFHIR(sr, ReferralOptions{}); !errors.Is(err, ErrNotActiveReferral) {
			t.Errorf("%s referral: %v, want ErrNotActiveReferral", st, err)
		}
	}
}

// TestReferralMatching: only an order (or a configured intent) that carries
// a referral code, or names the program as performer, is a referral to this
// program; a proposal to the state vocational-rehabilitation agency is not.
func TestReferralMatching(t *testing.T) {
	vr := &dtpb.Reference{Identifier: fidentifier("urn:oid:2.16.840.1.113883.3.9999.77", "state-vr"), Display: fstr("State Vocational Rehabilitation")}
	program := fref("HealthcareService/ips-riverside")
	programByID := &dtpb.Reference{Identifier: fidentifier("urn:oid:2.16.840.1.113883.3.9999.77", "ips-riverside")}
	performers := []ReferralPerformer{
		{Reference: "HealthcareService/ips-riverside"},
		{Identifier: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.77", Value: "ips-riverside"}},
	}
	sr := func(intent cpb.RequestIntentCode_Value, coded bool, performer ...*dtpb.Reference) *srpb.ServiceRequest {
		s := &srpb.ServiceRequest{
			Status:    &srpb.ServiceRequest_StatusCode{Value: cpb.RequestStatusCode_ACTIVE},
			Intent:    &srpb.ServiceRequest_IntentCode{Value: intent},
			Code:      fconcept(SystemLOINC, "24627-2", "Chest CT"),
			Performer: performer,
		}
		if coded {
			s.Category = []*dtpb.CodeableConcept{sdohEmploymentCategory()}
		}
		return s
	}
	order, proposal, plan := cpb.RequestIntentCode_ORDER, cpb.RequestIntentCode_PROPOSAL, cpb.RequestIntentCode_PLAN
	for _, tc := range []struct {
		name string
		sr   *srpb.ServiceRequest
		m    ReferralMatch
		want bool
	}{
		{"coded order", sr(order, true), ReferralMatch{}, true},
		{"coded proposal to the VR agency", sr(proposal, true, vr), ReferralMatch{}, false},
		{"coded proposal to the VR agency, performers configured", sr(proposal, true, vr), ReferralMatch{Performers: performers}, false},
		{"coded plan", sr(plan, true), ReferralMatch{}, false},
		{"coded order to the VR agency, performers configured", sr(order, true, vr), ReferralMatch{Performers: performers}, false},
		{"coded order to the VR agency, no performers configured", sr(order, true, vr), ReferralMatch{}, true},
		{"coded order without performer, performers configured", sr(order, true), ReferralMatch{Performers: performers}, true},
		{"uncoded order to the program (reference)", sr(order, false, program), ReferralMatch{Performers: performers}, true},
		{"uncoded order to the program (identifier)", sr(order, false, vr, programByID), ReferralMatch{Performers: performers}, true},
		{"uncoded order, no performer", sr(order, false), ReferralMatch{Performers: performers}, false},
		{"uncoded proposal to the program", sr(proposal, false, program), ReferralMatch{Performers: performers}, false},
		{"coded proposal, proposals configured", sr(proposal, true), ReferralMatch{Intents: []string{"order", "proposal"}}, true},
		{"site code", sr(order, false), ReferralMatch{Codes: []ips.Coding{{System: SystemLOINC, Code: "24627-2"}}}, true},
		{"unrelated order", sr(order, false), ReferralMatch{}, false},
	} {
		if got := IsIPSReferral(tc.sr, tc.m); got != tc.want {
			t.Errorf("%s: IsIPSReferral = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCaseloadFromBundleRefusesWhatItCannotPlace(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	goal := Goal(c, c.Goals[0], o)
	b := &bpb.Bundle{Entry: []*bpb.Bundle_Entry{
		{Resource: &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Goal{Goal: goal}}},
		{Resource: &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_ServiceRequest{ServiceRequest: &srpb.ServiceRequest{}}}},
	}}
	_, err := CaseloadFromBundle(b, ReferralOptions{})
	var re *ReadError
	if !errors.As(err, &re) || len(re.Problems) != 2 {
		t.Fatalf("got %v, want two problems (orphan goal, non-IPS service request)", err)
	}
	if re.Problems[0].Path != "Bundle.entry[1].resource" || re.Problems[1].Path != "Bundle.entry[0].resource.identifier" {
		t.Errorf("problem paths %q, %q", re.Problems[0].Path, re.Problems[1].Path)
	}
	for _, p := range re.Problems {
		if strings.Contains(p.Message, c.Patient.Value) || strings.Contains(p.Message, c.ID) {
			t.Errorf("problem quotes patient data: %s", p)
		}
	}
}

func TestCaseloadFromBundleRefusesMixedPrograms(t *testing.T) {
	a := &ips.Caseload{Program: &ips.Program{ID: "a"}, Clients: []*ips.Client{fixtureClient()}}
	other := fixtureClient()
	other.ID, other.Patient.Value = "c-0002", "MRN100002"
	bb := &ips.Caseload{Program: &ips.Program{ID: "b"}, Clients: []*ips.Client{other}}
	b1, _ := CaseloadBundle(a, Options{}, Collection)
	b2, _ := CaseloadBundle(bb, Options{}, Collection)
	b1.Entry = append(b1.Entry, b2.Entry...)
	if _, err := CaseloadFromBundle(b1, ReferralOptions{}); err == nil || !strings.Contains(err.Error(), "programs") {
		t.Errorf("mixed programs: %v", err)
	}
}
