package mappings

import (
	"fmt"
	"html"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	cppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/care_plan_go_proto"
	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// PlanTitle is the CarePlan title clinicians see in the chart.
const PlanTitle = "IPS supported employment plan"

// PlanKey is the identity of a client's IPS plan.
func (o Options) PlanKey(c *ips.Client) Key { return o.key(KindPlan, c.ID, "") }

// SupportKey is the identity of one support within the plan.
func (o Options) SupportKey(c *ips.Client, s *ips.Support) Key {
	return o.key(KindSupport, c.ID, s.ID)
}

var clientToPlanStatus = map[ips.ClientStatus]cpb.RequestStatusCode_Value{
	ips.ClientReferred: cpb.RequestStatusCode_DRAFT,
	ips.ClientActive:   cpb.RequestStatusCode_ACTIVE,
	ips.ClientOnHold:   cpb.RequestStatusCode_ON_HOLD,
	ips.ClientClosed:   cpb.RequestStatusCode_COMPLETED,
}

var supportToActivityStatus = map[ips.SupportStatus]cpb.CarePlanActivityStatusCode_Value{
	ips.SupportPlanned:    cpb.CarePlanActivityStatusCode_SCHEDULED,
	ips.SupportInProgress: cpb.CarePlanActivityStatusCode_IN_PROGRESS,
	ips.SupportCompleted:  cpb.CarePlanActivityStatusCode_COMPLETED,
	ips.SupportCancelled:  cpb.CarePlanActivityStatusCode_CANCELLED,
}

// CarePlan maps a client's IPS plan to a FHIR CarePlan (profile ips-careplan,
// on US Core CarePlan): the goals it pursues, one activity per support, and a
// narrative a clinician can read in the chart. It is part of the client's
// mental health treatment plan where one is known (Options.TreatmentPlan),
// its author is the employment specialist, and it names the care team where
// that is written. Goals are referenced by their
// Bundle fullUrl, which a FHIR server rewrites to its own ids in a transaction.
func CarePlan(c *ips.Client, o Options) *cppb.CarePlan {
	k := o.PlanKey(c)
	out := &cppb.CarePlan{
		Meta:       o.meta(ProfileCarePlan),
		Text:       &dtpb.Narrative{Status: &dtpb.Narrative_StatusCode{Value: cpb.NarrativeStatusCode_GENERATED}, Div: &dtpb.Xhtml{Value: planNarrative(c, o)}},
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &cppb.CarePlan_StatusCode{Value: planStatus(c)},
		Intent:     &cppb.CarePlan_IntentCode{Value: vspb.CarePlanIntentValueSet_PLAN},
		Category: []*dtpb.CodeableConcept{
			fconcept(SystemCarePlanCategory, "assess-plan", "Assessment and Plan of Treatment"),
			sdohEmploymentCategory(),
		},
		Title:   fstr(PlanTitle),
		Subject: o.subject(c),
		Period:  enrollmentPeriod(c),
	}
	if s := o.specialistRef(c); s != nil {
		out.Author = s
		out.Contributor = []*dtpb.Reference{o.specialistRef(c)}
	}
	if ct := o.careTeamRef(c); ct != nil {
		out.CareTeam = []*dtpb.Reference{ct}
	}
	if tp := o.treatmentPlan(c); tp != nil {
		out.PartOf = []*dtpb.Reference{tp}
	}
	for _, g := range c.Goals {
		out.Goal = append(out.Goal, literalRef(o.ref(o.GoalKey(c, g))))
	}
	for _, s := range c.Supports {
		sk := o.SupportKey(c, s)
		d := &cppb.CarePlan_Activity_Detail{
			Code:        fconcept(SystemSupportType, string(s.Type), SupportTypeDisplay[s.Type]),
			Status:      &cppb.CarePlan_Activity_Detail_StatusCode{Value: supportToActivityStatus[s.Status]},
			Scheduled:   &cppb.CarePlan_Activity_Detail_ScheduledX{Choice: &cppb.CarePlan_Activity_Detail_ScheduledX_Period{Period: fperiod(s.Date, ips.Date{})}},
			Description: fstr(s.Note),
		}
		if s.Contact != nil {
			d.Extension = append(d.Extension, employerContactExtension(s.Contact))
		}
		if s.Goal != "" {
			if g := c.Goal(s.Goal); g != nil {
				d.Goal = []*dtpb.Reference{literalRef(o.ref(o.GoalKey(c, g)))}
			}
		}
		out.Activity = append(out.Activity, &cppb.CarePlan_Activity{
			// The identifier sits on the activity (not its detail): it names
			// the whole planned support, as the ips-careplan profile says.
			Extension: []*dtpb.Extension{{
				Url:   furi(ExtSupportIdentifier),
				Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Identifier{Identifier: fidentifier(sk.System(), sk.Value())}},
			}},
			Detail: d,
		})
	}
	return out
}

// planStatus is the CarePlan status of a client: a referral closed
// without enrollment (declined) is revoked, "terminated prior to the known
// full completion"; otherwise the status follows the client's.
func planStatus(c *ips.Client) cpb.RequestStatusCode_Value {
	st := c.EffectiveStatus()
	if st == ips.ClientClosed && c.EnrolledOn.IsZero() {
		return cpb.RequestStatusCode_REVOKED
	}
	return clientToPlanStatus[st]
}

// enrollmentPeriod is the client's current enrollment as a Period: nil for
// a client referred and waiting for acceptance, only the closing date for a
// referral closed without enrollment.
func enrollmentPeriod(c *ips.Client) *dtpb.Period {
	if c.EnrolledOn.IsZero() && c.ClosedOn.IsZero() {
		return nil
	}
	return fperiod(c.EnrolledOn, c.ClosedOn)
}

// planNarrative renders the plan as XHTML for CarePlan.text. Every value is
// escaped: descriptions and notes are free text typed by people.
func planNarrative(c *ips.Client, o Options) string {
	var b strings.Builder
	e := html.EscapeString
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	fmt.Fprintf(&b, "<p><b>%s</b>", PlanTitle)
	if o.ProgramName != "" {
		fmt.Fprintf(&b, " (%s)", e(o.ProgramName))
	}
	fmt.Fprintf(&b, ". %s.", e(enrollmentSummary(c)))
	if s := specialistLine(c); s != "" {
		fmt.Fprintf(&b, " Employment specialist: %s.", e(s))
	}
	b.WriteString("</p>")
	if len(c.Goals) > 0 {
		b.WriteString("<p>Employment goals:</p><ul>")
		for _, g := range c.Goals {
			fmt.Fprintf(&b, "<li>%s (%s", e(g.Description), e(string(g.Status)))
			if g.TargetHoursPerWeek != nil {
				fmt.Fprintf(&b, "; %s hours a week", formatHours(*g.TargetHoursPerWeek))
			}
			if !g.Due.IsZero() {
				fmt.Fprintf(&b, "; by %s", g.Due)
			}
			b.WriteString(")</li>")
		}
		b.WriteString("</ul>")
	}
	if jobs := currentJobs(c); len(jobs) > 0 {
		fmt.Fprintf(&b, "<p>%s:</p><ul>", e(currentWorkHeading(c)))
		for _, j := range jobs {
			fmt.Fprintf(&b, "<li>%s at %s since %s, %s hours a week; %s</li>", e(j.Title), e(j.Employer), j.Start, formatHours(j.HoursPerWeek), disclosedPhrase(j))
		}
		b.WriteString("</ul>")
	}
	if jobs := pastJobs(c); len(jobs) > 0 {
		b.WriteString("<p>Past jobs:</p><ul>")
		for _, j := range jobs {
			fmt.Fprintf(&b, "<li>%s at %s, %s to %s; %s; %s</li>", e(j.Title), e(j.Employer), j.Start, j.End, endedPhrase(j), disclosedPhrase(j))
		}
		b.WriteString("</ul>")
	}
	if len(c.Supports) > 0 {
		b.WriteString("<p>IPS supports:</p><ul>")
		for _, s := range c.Supports {
			fmt.Fprintf(&b, "<li>%s: %s, %s", e(SupportTypeDisplay[s.Type]), e(string(s.Status)), s.Date)
			if s.Note != "" {
				fmt.Fprintf(&b, " (%s)", e(s.Note))
			}
			b.WriteString("</li>")
		}
		b.WriteString("</ul>")
	}
	b.WriteString("</div>")
	return b.String()
}

// enrollmentSummary says where the client stands in the program, with the
// dates that matter: "Enrolled 2026-01-05; active", "Enrolled 2026-01-05;
// closed 2026-06-30 (moved away)", "Referred 2026-01-02; not yet enrolled".
func enrollmentSummary(c *ips.Client) string {
	st := c.EffectiveStatus()
	switch {
	case st == ips.ClientReferred:
		d := c.ReferredOn
		if d.IsZero() {
			d = c.EnrolledOn
		}
		return "Referred " + d.String() + "; not yet enrolled"
	case c.EnrolledOn.IsZero():
		// A referral closed without enrollment (declined).
		s := "Referred " + c.ReferredOn.String() + "; closed " + c.ClosedOn.String() + " without enrollment"
		if c.ReferredOn.IsZero() {
			s = "Referral closed " + c.ClosedOn.String() + " without enrollment"
		}
		if c.ClosedReason != "" {
			s += " (" + c.ClosedReason + ")"
		}
		return s
	case st == ips.ClientClosed || !c.ClosedOn.IsZero():
		s := "Enrolled " + c.EnrolledOn.String() + "; closed " + c.ClosedOn.String()
		if c.ClosedReason != "" {
			s += " (" + c.ClosedReason + ")"
		}
		return s
	case st == ips.ClientOnHold:
		return "Enrolled " + c.EnrolledOn.String() + "; on hold"
	}
	return "Enrolled " + c.EnrolledOn.String() + "; " + string(st)
}

// specialistLine names the employment specialist and how to reach them.
func specialistLine(c *ips.Client) string {
	switch {
	case c.Specialist != "" && c.SpecialistContact != "":
		return c.Specialist + " (" + c.SpecialistContact + ")"
	case c.Specialist != "":
		return c.Specialist
	case c.SpecialistContact != "":
		return "contact " + c.SpecialistContact
	}
	return ""
}

// currentWorkHeading titles the jobs not ended: current work, or for a
// closed client the work held when the program last knew.
func currentWorkHeading(c *ips.Client) string {
	if c.ClosedOn.IsZero() {
		return "Current work"
	}
	return "Work when the enrollment closed (last known as of " + c.ClosedOn.String() + ")"
}

// disclosedPhrase says whether the employer knows of the client's condition.
func disclosedPhrase(j *ips.Job) string {
	switch {
	case j.Disclosed == nil:
		return "disclosure to this employer not recorded"
	case *j.Disclosed:
		return "condition disclosed to this employer"
	}
	return "condition not disclosed to this employer"
}

// endedPhrase says why a job ended.
func endedPhrase(j *ips.Job) string {
	if j.EndReason == "" {
		return "ended, reason not recorded"
	}
	return "ended: " + strings.ToLower(JobEndReasonDisplay[j.EndReason])
}

// currentJobs lists jobs not yet ended, newest first.
func currentJobs(c *ips.Client) []*ips.Job {
	var out []*ips.Job
	for _, j := range c.Jobs {
		if j.Current() {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *ips.Job) int { return b.Start.Compare(a.Start) })
	return out
}

// pastJobs lists ended jobs, the most recently ended first.
func pastJobs(c *ips.Client) []*ips.Job {
	var out []*ips.Job
	for _, j := range c.Jobs {
		if !j.Current() {
			out = append(out, j)
		}
	}
	slices.SortStableFunc(out, func(a, b *ips.Job) int { return b.End.Compare(a.End) })
	return out
}

func formatHours(h float64) string { return fdecimal(h).GetValue() }

// contactModes maps IPS contact modes to v3 ParticipationMode codes and
// displays.
var contactModes = map[ips.ContactMode][2]string{
	ips.ContactFaceToFace: {"FACE", "face-to-face"},
	ips.ContactPhone:      {"PHONE", "telephone"},
	ips.ContactVideo:      {"VIDEOCONF", "videoconferencing"},
	ips.ContactWritten:    {"WRITTEN", "written"},
}

// employerContactExtension is the ips-employer-contact extension of a
// support that was a contact with an employer.
func employerContactExtension(ct *ips.Contact) *dtpb.Extension {
	m := contactModes[ct.Mode]
	e := &dtpb.Extension{Url: furi(ExtEmployerContact), Extension: []*dtpb.Extension{{
		Url:   furi("mode"),
		Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Coding{Coding: fcoding(SystemParticipationMode, m[0], m[1])}},
	}}}
	if ct.OnBehalfOf != "" {
		e.Extension = append(e.Extension, &dtpb.Extension{
			Url:   furi("onBehalfOf"),
			Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Code{Code: fcode(string(ct.OnBehalfOf))}},
		})
	}
	return e
}
