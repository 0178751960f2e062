package ips_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
)

func ptr[T any](v T) *T { return &v }

// unordered builds a caseload with every list out of order, defaults left
// out, and every pointer field set, so Normalize has work everywhere. Each
// call returns a new value, which lets tests compare before and after.
func unordered() *ips.Caseload {
	d := ips.MustDate
	return &ips.Caseload{
		Program: &ips.Program{ID: "riverside-ips", Name: "Riverside Community Mental Health IPS Program"},
		Clients: []*ips.Client{
			{
				ID: "c2", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN1000002"},
				EnrolledOn: d("2025-01-10"), ClosedOn: d("2025-09-30"), // status left to default: closed
				Referral: &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-2"},
				PastEpisodes: []*ips.Episode{{ReferredOn: d("2023-02-01"), EnrolledOn: d("2023-02-10"), ClosedOn: d("2023-12-01"),
					Referral: &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-1"}}},
			},
			{
				ID: "c1", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN1000001"},
				EnrolledOn:  d("2025-03-04"), // status left to default: active
				Consent:     &ips.Consent{EHR: ptr(true), HIE: ptr(false)},
				Preferences: &ips.WorkPreferences{JobTypes: []string{"bakery", "grocery"}, HoursPerWeek: ptr(20.0), Schedule: "mornings"},
				Goals: []*ips.Goal{
					{ID: "g2", Description: "Finish my GED", Status: ips.GoalProposed, Start: d("2025-05-01")},
					{ID: "g1", Description: "I want to work part time at a bakery, mornings", Status: ips.GoalActive, Start: d("2025-03-04"),
						TargetHoursPerWeek: ptr(20.0), Notes: []ips.Note{{Text: "Client's own words.", Date: d("2025-03-04")}}},
				},
				Supports: []*ips.Support{
					{ID: "s2", Type: ips.SupportEmployerContact, Status: ips.SupportCompleted, Date: d("2025-03-11"), Goal: "g1"},
					{ID: "s1", Type: ips.SupportCareerProfile, Status: ips.SupportCompleted, Date: d("2025-03-04")},
				},
				Jobs: []*ips.Job{
					{ID: "j2", Employer: "Golden Crust Bakery", Title: "Baker's assistant", Start: d("2025-08-01"), HoursPerWeek: 24,
						HourlyWage: ips.Money{Value: 16, Currency: "USD"}, Competitive: true, Disclosed: ptr(false),
						Occupation: &ips.Coding{System: "http://terminology.hl7.org/CodeSystem/PHOccupationCDCCensus2010", Code: "7800", Display: "Bakers"},
						Industry:   &ips.Coding{System: "http://terminology.hl7.org/CodeSystem/PHIndustryCDCCensus2010", Code: "1190", Display: "Retail bakeries"}},
					{ID: "j1", Employer: "Sunrise Bakery", Title: "Baker's assistant", Start: d("2025-04-14"), End: d("2025-07-15"), EndReason: "quit-with-plan",
						HoursPerWeek: 16, HourlyWage: ips.Money{Value: 15.5, Currency: "USD"}, Competitive: true},
				},
				Employment: []ips.EmploymentSnapshot{
					{Date: d("2025-08-01"), Status: ips.Employed},
					{Date: d("2025-03-04"), Status: ips.Unemployed},
					{Date: d("2025-04-14"), Status: ips.Employed},
					{Date: d("2025-07-16"), Status: ips.Unemployed},
				},
			},
			{
				ID: "c3", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN1000003"},
				EnrolledOn: d("2025-06-01"), Status: ips.ClientOnHold,
			},
		},
	}
}

func TestNormalizeAppliesDefaultsAndOrder(t *testing.T) {
	got := ips.Normalize(unordered())

	want := unordered()
	c2, c1, c3 := want.Clients[0], want.Clients[1], want.Clients[2]
	want.Clients = []*ips.Client{c1, c2, c3}
	c1.Status = ips.ClientActive // no status, no closing date
	c2.Status = ips.ClientClosed // no status, closed on a date
	// c3 keeps its explicit on-hold.
	c1.Goals = []*ips.Goal{c1.Goals[1], c1.Goals[0]}
	c1.Supports = []*ips.Support{c1.Supports[1], c1.Supports[0]}
	c1.Jobs = []*ips.Job{c1.Jobs[1], c1.Jobs[0]}
	e := c1.Employment
	c1.Employment = []ips.EmploymentSnapshot{e[1], e[2], e[3], e[0]}

	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
	if again := ips.Normalize(got); !cmp.Equal(got, again) {
		t.Errorf("Normalize is not idempotent:\n%s", cmp.Diff(got, again))
	}
}

// TestNormalizeEqualMeaningEqualResult: two caseloads that differ only in
// list order and in spelling out a default normalize to the same value, which
// is what the FHIR round trip relies on.
func TestNormalizeEqualMeaningEqualResult(t *testing.T) {
	a := unordered()
	b := ips.Normalize(unordered())
	b.Clients[1].Status = "" // closed by default again
	if diff := cmp.Diff(ips.Normalize(a), ips.Normalize(b)); diff != "" {
		t.Errorf("same meaning, different normal forms (-a +b):\n%s", diff)
	}
}

func TestNormalizeDoesNotModifyItsInput(t *testing.T) {
	in := unordered()
	ips.Normalize(in)
	if diff := cmp.Diff(unordered(), in); diff != "" {
		t.Errorf("Normalize modified its input (-before +after):\n%s", diff)
	}
}

// TestNormalizeSharesNothing: a caller may edit the normalized copy (the
// reverse mapping does) without touching the caseload it came from.
func TestNormalizeSharesNothing(t *testing.T) {
	in := unordered()
	out := ips.Normalize(in)
	out.Program.Name = "changed"
	for _, c := range out.Clients {
		c.ID += "-changed"
		if c.Consent != nil {
			*c.Consent.EHR = false
			*c.Consent.HIE = true
		}
		if p := c.Preferences; p != nil {
			p.JobTypes[0] = "changed"
			*p.HoursPerWeek = 99
		}
		for _, g := range c.Goals {
			g.Description = "changed"
			if g.TargetHoursPerWeek != nil {
				*g.TargetHoursPerWeek = 99
			}
			for i := range g.Notes {
				g.Notes[i].Text = "changed"
			}
		}
		for _, s := range c.Supports {
			s.Note = "changed"
		}
		for _, j := range c.Jobs {
			j.Employer = "changed"
			if j.Occupation != nil {
				j.Occupation.Code = "changed"
			}
			if j.Industry != nil {
				j.Industry.Code = "changed"
			}
			if j.Disclosed != nil {
				*j.Disclosed = true
			}
		}
		for i := range c.Employment {
			c.Employment[i].Status = ips.NotInLaborForce
		}
		if c.Referral != nil {
			c.Referral.ServiceRequest = "changed"
		}
		for _, e := range c.PastEpisodes {
			e.ClosedReason = "changed"
			e.Referral.ServiceRequest = "changed"
		}
	}
	if diff := cmp.Diff(unordered(), in); diff != "" {
		t.Errorf("editing Normalize's result changed its input (-before +after):\n%s", diff)
	}
}

func TestNormalizeWithoutProgram(t *testing.T) {
	in := &ips.Caseload{Clients: []*ips.Client{{ID: "c1", EnrolledOn: ips.MustDate("2025-03-04")}}}
	out := ips.Normalize(in)
	if out.Program != nil || out.ProgramID() != ips.DefaultProgramID {
		t.Errorf("Normalize invented a program: %+v", out.Program)
	}
}
