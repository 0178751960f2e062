package mappings

import (
	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// EmploymentStatusKey is the identity of a client's status snapshot.
func (o Options) EmploymentStatusKey(c *ips.Client, s ips.EmploymentSnapshot) Key {
	return o.key(KindEmploymentStatus, c.ID, s.Date.String())
}

// PRAPAREKey is the identity of the PRAPARE answer derived from a snapshot.
func (o Options) PRAPAREKey(c *ips.Client, s ips.EmploymentSnapshot) Key {
	return o.key(KindPRAPARE, c.ID, s.Date.String())
}

// EmploymentStatusObservation maps a status snapshot to an ODH
// EmploymentStatus Observation (profile ips-employment-status). The period
// runs until the client's next snapshot and stays open while it is current.
func EmploymentStatusObservation(c *ips.Client, s ips.EmploymentSnapshot, o Options) *obspb.Observation {
	k := o.EmploymentStatusKey(c, s)
	v3, sn := employmentStatusV3[s.Status], employmentStatusSNOMED[s.Status]
	// ODH requires the v3 code; the SNOMED CT finding follows for EHRs that
	// read NIOSH's newer value set.
	value := &dtpb.CodeableConcept{Coding: []*dtpb.Coding{fcoding(SystemV3ObservationValue, v3.Code, v3.Display), fcoding(SystemSNOMED, sn.Code, sn.Display)}}
	return &obspb.Observation{
		Meta:       o.meta(ProfileEmploymentStatus),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category:   []*dtpb.CodeableConcept{socialHistory()},
		Code:       o.observationCode(KindEmploymentStatus, LOINCEmploymentStatus),
		Subject:    o.subject(c),
		Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_Period{Period: fperiod(s.Date, nextSnapshot(c, s.Date))}},
		Value:      &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_CodeableConcept{CodeableConcept: value}},
	}
}

// nextSnapshot is the date of the first snapshot after d, or the zero Date.
func nextSnapshot(c *ips.Client, d ips.Date) ips.Date {
	var next ips.Date
	for _, s := range c.Employment {
		if d.Before(s.Date) && (next.IsZero() || s.Date.Before(next)) {
			next = s.Date
		}
	}
	return next
}

// PRAPAREAnswer derives the PRAPARE "Employment status - current" answer from
// a snapshot and the jobs held that day: full time at 35 or more weekly hours
// across jobs, part time below.
func PRAPAREAnswer(c *ips.Client, s ips.EmploymentSnapshot) string {
	switch s.Status {
	case ips.Unemployed:
		return PRAPAREUnemployed
	case ips.NotInLaborForce:
		return PRAPARENotSeeking
	}
	var hours float64
	for _, j := range c.Jobs {
		if j.Overlaps(s.Date, s.Date) {
			hours += j.HoursPerWeek
		}
	}
	if hours >= FullTimeHoursPerWeek {
		return PRAPAREFullTime
	}
	return PRAPAREPartTime
}

// PRAPAREObservation carries the PRAPARE answer for sites that screen with
// PRAPARE (profile ips-prapare-employment). It is derived, so not read back.
func PRAPAREObservation(c *ips.Client, s ips.EmploymentSnapshot, o Options) *obspb.Observation {
	k := o.PRAPAREKey(c, s)
	ans := PRAPAREAnswer(c, s)
	return &obspb.Observation{
		Meta:       o.meta(ProfilePRAPARE),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category: []*dtpb.CodeableConcept{
			socialHistory(),
			fconcept(SystemObsCategory, "survey", "Survey"),
			fconcept(SystemUSCoreCategory, "sdoh", "SDOH"),
		},
		Code:      loinc(LOINCPRAPARE),
		Subject:   o.subject(c),
		Effective: &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: fdateTime(s.Date)}},
		Value:     &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_CodeableConcept{CodeableConcept: fconcept(SystemLOINC, ans, prapareDisplay[ans])}},
	}
}
