package mappings

import (
	"slices"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// EmploymentStatusKey is the identity of a client's status record on a date.
func (o Options) EmploymentStatusKey(c *ips.Client, s ips.EmploymentSnapshot) Key {
	return o.key(KindEmploymentStatus, c.ID, s.Date.String())
}

// PRAPAREKey is the identity of the PRAPARE answer derived from a snapshot.
func (o Options) PRAPAREKey(c *ips.Client, s ips.EmploymentSnapshot) Key {
	return o.key(KindPRAPARE, c.ID, s.Date.String())
}

// EmploymentStatusRecords lists the client's employment status records by
// date, as the mapping writes them: every snapshot the specialist recorded,
// and one derived from the job records wherever a job starts (the day of its
// start) or ends (the day after its last day) and the status in force does
// not already say so. A job start makes the client employed; the end of the
// last job held makes an employed client unemployed (an IPS client is looking
// for work). A recorded snapshot on the same day wins. Nothing is derived
// after the client's enrollment closed: the program does not know what
// happened then.
func EmploymentStatusRecords(c *ips.Client) []ips.EmploymentSnapshot {
	recorded := map[ips.Date]ips.EmploymentStatus{}
	var days []ips.Date
	for _, s := range c.Employment {
		recorded[s.Date] = s.Status
		days = append(days, s.Date)
	}
	for _, j := range c.Jobs {
		days = append(days, j.Start)
		if !j.Current() {
			days = append(days, j.End.AddDays(1))
		}
	}
	slices.SortFunc(days, func(a, b ips.Date) int { return a.Compare(b) })
	days = slices.Compact(days)

	var out []ips.EmploymentSnapshot
	var inForce ips.EmploymentStatus // "" before the first record: unknown
	for _, d := range days {
		if st, ok := recorded[d]; ok {
			out = append(out, ips.EmploymentSnapshot{Date: d, Status: st})
			inForce = st
			continue
		}
		if !c.ClosedOn.IsZero() && c.ClosedOn.Before(d) {
			continue
		}
		want := inForce
		switch {
		case heldOn(c, d):
			want = ips.Employed
		case inForce == ips.Employed || inForce == "":
			want = ips.Unemployed
		}
		if want != inForce {
			out = append(out, ips.EmploymentSnapshot{Date: d, Status: want})
			inForce = want
		}
	}
	return out
}

// heldOn reports whether the client held any job on day d.
func heldOn(c *ips.Client, d ips.Date) bool {
	return slices.ContainsFunc(c.Jobs, func(j *ips.Job) bool { return j.Overlaps(d, d) })
}

// recordedOn reports whether the specialist recorded a status on day d (as
// opposed to one EmploymentStatusRecords derived from the jobs).
func recordedOn(c *ips.Client, d ips.Date) bool {
	return slices.ContainsFunc(c.Employment, func(s ips.EmploymentSnapshot) bool { return s.Date == d })
}

// jobsChangingOn lists the jobs that start on d or whose last day is the day
// before: what a status derived on d was derived from.
func jobsChangingOn(c *ips.Client, d ips.Date) []*ips.Job {
	var out []*ips.Job
	for _, j := range c.Jobs {
		if j.Start == d || (!j.Current() && j.End.AddDays(1) == d) {
			out = append(out, j)
		}
	}
	return out
}

// EmploymentStatusObservation maps a status record (one of
// EmploymentStatusRecords) to an ODH EmploymentStatus Observation (profile
// ips-employment-status). The value carries the v3 code ODH requires first and
// the SNOMED CT finding second. The period runs until the next record; the
// last one stays open while the client is enrolled and closes on the day the
// enrollment closed ("last known as of", extension ips-last-known), so a
// discharged client's status never stays current forever. A record derived
// from the jobs refers to them in derivedFrom.
func EmploymentStatusObservation(c *ips.Client, s ips.EmploymentSnapshot, o Options) *obspb.Observation {
	k := o.EmploymentStatusKey(c, s)
	v3, sn := employmentStatusV3[s.Status], employmentStatusSNOMED[s.Status]
	value := &dtpb.CodeableConcept{Coding: []*dtpb.Coding{
		fcoding(SystemV3ObservationValue, v3.Code, v3.Display),
		fcoding(SystemSNOMED, sn.Code, sn.Display),
	}}
	end := nextRecord(c, s.Date)
	lastKnown := false
	if end.IsZero() && !c.ClosedOn.IsZero() {
		end, lastKnown = knownUntil(c, s.Date), true
	}
	out := &obspb.Observation{
		Meta:       o.meta(ProfileEmploymentStatus),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category:   []*dtpb.CodeableConcept{socialHistory()},
		Code:       o.observationCode(KindEmploymentStatus, LOINCEmploymentStatus),
		Subject:    o.subject(c),
		Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_Period{Period: fperiod(s.Date, end)}},
		Issued:     o.issued(),
		Value:      &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_CodeableConcept{CodeableConcept: value}},
	}
	if !recordedOn(c, s.Date) {
		for _, j := range jobsChangingOn(c, s.Date) {
			out.DerivedFrom = append(out.DerivedFrom, o.recordRef(o.JobKey(c, j), "Observation"))
		}
		why := "the last job held ended the day before"
		if s.Status == ips.Employed {
			why = "a job started on this date"
		}
		out.Note = append(out.Note, fannotation("Derived from the IPS program's job records ("+why+"); no status was recorded that day."))
	}
	if lastKnown {
		markLastKnown(c, &out.Extension, &out.Note, end, "the status changed")
	}
	return out
}

// knownUntil is the day an open period of a closed client's record ends: the
// day the enrollment closed, or the record's own start if that came later.
func knownUntil(c *ips.Client, start ips.Date) ips.Date {
	if c.ClosedOn.Before(start) {
		return start
	}
	return c.ClosedOn
}

// markLastKnown says, for machines (extension ips-last-known) and people
// (a note), that a period ends on d because the program stopped knowing, not
// because of what notEnded says ("the job ended").
func markLastKnown(c *ips.Client, ext *[]*dtpb.Extension, notes *[]*dtpb.Annotation, d ips.Date, notEnded string) {
	*ext = append(*ext, &dtpb.Extension{Url: furi(ExtLastKnown), Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Date{Date: fdate(d)}}})
	*notes = append(*notes, fannotation("Last known as of "+d.String()+": the client's IPS enrollment closed on "+c.ClosedOn.String()+"; the period ends there, not because "+notEnded+"."))
}

// nextRecord is the date of the first status record after d, or the zero Date.
func nextRecord(c *ips.Client, d ips.Date) ips.Date {
	for _, s := range EmploymentStatusRecords(c) {
		if d.Before(s.Date) {
			return s.Date
		}
	}
	return ips.Date{}
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
// PRAPARE (profile ips-prapare-employment). Nobody answered a survey: the
// answer is derived from the employment status record and the jobs held that
// day, so it has no survey category and says what it came from in
// derivedFrom. Being derived, it is not read back.
func PRAPAREObservation(c *ips.Client, s ips.EmploymentSnapshot, o Options) *obspb.Observation {
	k := o.PRAPAREKey(c, s)
	ans := PRAPAREAnswer(c, s)
	from := []*dtpb.Reference{o.recordRef(o.EmploymentStatusKey(c, s), "Observation")}
	if s.Status == ips.Employed {
		for _, j := range c.Jobs {
			if j.Overlaps(s.Date, s.Date) {
				from = append(from, o.recordRef(o.JobKey(c, j), "Observation"))
			}
		}
	}
	return &obspb.Observation{
		Meta:       o.meta(ProfilePRAPARE),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category: []*dtpb.CodeableConcept{
			socialHistory(),
			fconcept(SystemUSCoreCategory, "sdoh", "SDOH"),
			sdohEmploymentCategory(),
		},
		Code:        loinc(LOINCPRAPARE),
		Subject:     o.subject(c),
		Effective:   &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: fdateTime(s.Date)}},
		Issued:      o.issued(),
		Value:       &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_CodeableConcept{CodeableConcept: fconcept(SystemLOINC, ans, prapareDisplay[ans])}},
		DerivedFrom: from,
	}
}
