package mappings

import (
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// fixtureClient is one client with every optional field set, so golden files
// show every element the mappings can emit.
func fixtureClient() *ips.Client {
	h20, h30 := 20.0, 30.0
	yes, no := true, false
	return &ips.Client{
		ID:         "c-0001",
		Patient:    ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN100001"},
		EnrolledOn: ips.MustDate("2026-01-05"),
		ReferredOn: ips.MustDate("2026-01-02"),
		Status:     ips.ClientActive,
		Specialist: "Jordan Reyes",
		// Staff contact, shown in the chart.
		SpecialistContact: "jreyes@riverside.example",
		Consent:           &ips.Consent{EHR: &yes, HIE: &no},
		Disclosure:        ips.DisclosurePartial,
		Preferences: &ips.WorkPreferences{
			JobTypes: []string{"bakery", "grocery"}, HoursPerWeek: &h20, Schedule: "weekday mornings", Location: "on the 12 bus line",
		},
		Goals: []*ips.Goal{
			{ID: "g1", Description: "I want to work mornings at a bakery", Status: ips.GoalActive, Achievement: "improving",
				TargetHoursPerWeek: &h20, Start: ips.MustDate("2026-01-06"), Due: ips.MustDate("2026-07-01"),
				Notes: []ips.Note{{Text: "Discussed at MH team meeting; psychiatrist supportive", Date: ips.MustDate("2026-02-03")}}},
			{ID: "g2", Description: "Work full time & keep my benefits <SSI>", Status: ips.GoalProposed, TargetHoursPerWeek: &h30, Start: ips.MustDate("2026-03-01")},
		},
		Supports: []*ips.Support{
			{ID: "s1", Type: ips.SupportCareerProfile, Status: ips.SupportCompleted, Date: ips.MustDate("2026-01-08"), Goal: "g1"},
			{ID: "s2", Type: ips.SupportBenefitsPlanning, Status: ips.SupportInProgress, Date: ips.MustDate("2026-01-20"), Goal: "g2", Note: "referred to WIPA counselor"},
			{ID: "s3", Type: ips.SupportFollowAlongOnJob, Status: ips.SupportPlanned, Date: ips.MustDate("2026-03-10")},
			{ID: "s4", Type: ips.SupportTransportation, Status: ips.SupportCancelled, Date: ips.MustDate("2026-01-15")},
		},
		Jobs: []*ips.Job{
			{ID: "j1", Employer: "Corner Grocery", Title: "Stock clerk", Start: ips.MustDate("2026-01-26"), End: ips.MustDate("2026-02-20"),
				EndReason: "temporary-job-ended", HoursPerWeek: 12, HourlyWage: ips.Money{Value: 15.25, Currency: "USD"}, Competitive: true, Disclosed: &no},
			{ID: "j2", Employer: "Sunrise Bakery", Title: "Baker's assistant", Start: ips.MustDate("2026-03-02"),
				Occupation:   &ips.Coding{System: "http://terminology.hl7.org/CodeSystem/PHOccupationalDataForHealthODH", Code: "51-3011.00.000000", Display: "Bakers"},
				Industry:     &ips.Coding{System: "http://terminology.hl7.org/CodeSystem/PHOccupationalDataForHealthODH", Code: "311811.000000", Display: "Retail bakeries"},
				HoursPerWeek: 22.5, DaysPerWeek: 5, HourlyWage: ips.Money{Value: 17, Currency: "USD"}, Competitive: true, Disclosed: &yes},
		},
		Employment: []ips.EmploymentSnapshot{
			{Date: ips.MustDate("2026-01-05"), Status: ips.Unemployed},
			{Date: ips.MustDate("2026-01-26"), Status: ips.Employed},
			{Date: ips.MustDate("2026-02-20"), Status: ips.Unemployed},
			{Date: ips.MustDate("2026-03-02"), Status: ips.Employed},
		},
	}
}

func fixtureOptions() Options {
	return Options{Program: "riverside-ips", ProgramName: "Riverside Clinic IPS", PRAPARE: true, Now: time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)}
}

// fixtureClosedClient is fixtureClient discharged on 2026-06-30 while still
// working at the bakery: what the program last knew.
func fixtureClosedClient() *ips.Client {
	c := fixtureClient()
	c.Status, c.ClosedOn, c.ClosedReason = ips.ClientClosed, ips.MustDate("2026-06-30"), "moved out of the area"
	return c
}

// fixtureUnrecordedStart is fixtureClient without the status recorded on
// the day the bakery job started: the mapping derives it from the job.
func fixtureUnrecordedStart() *ips.Client {
	c := fixtureClient()
	c.Employment = c.Employment[:3]
	return c
}
