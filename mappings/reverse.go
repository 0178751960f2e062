package mappings

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	cppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/care_plan_go_proto"
	gpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/goal_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// ReadError says why FHIR resources could not be read back as IPS records. It
// lists every problem with its FHIR path; messages never quote values.
type ReadError struct {
	Problems []ips.Problem
}

func (e *ReadError) Error() string {
	return ips.ProblemReport("cannot read FHIR as IPS records", e.Problems)
}

// reader collects problems while a resource is read, under a path prefix
// ("Bundle.entry[3].resource" inside a Bundle).
type reader struct {
	path string
	ps   *[]ips.Problem
}

func newReader(path string) reader { return reader{path: path, ps: new([]ips.Problem)} }

func (r reader) at(sub string) reader { return reader{path: r.path + "." + sub, ps: r.ps} }

func (r reader) fail(sub, format string, a ...any) {
	p := r.path
	if sub != "" {
		p += "." + sub
	}
	*r.ps = append(*r.ps, ips.Problem{Path: p, Message: fmt.Sprintf(format, a...)})
}

func (r reader) err() error {
	if len(*r.ps) == 0 {
		return nil
	}
	return &ReadError{Problems: *r.ps}
}

// ParseKey reads an ipsfhir business identifier back into a Key. It reports
// false for identifiers in any other namespace (an EHR's own, say).
func ParseKey(system, value string) (Key, bool) {
	rest, ok := strings.CutPrefix(system, "urn:ipsfhir:")
	if !ok {
		return Key{}, false
	}
	program, kind, ok := strings.Cut(rest, ":")
	if !ok || program == "" || kind == "" {
		return Key{}, false
	}
	k := Key{Program: program, Kind: Kind(kind)}
	switch k.Kind {
	case KindSpecialist:
		if value == "" || strings.Contains(value, "/") {
			return Key{}, false
		}
		k.Record = value
	case KindPlan, KindCareTeam:
		if value == "" || strings.Contains(value, "/") {
			return Key{}, false
		}
		k.Client = value
	case KindPlanResponse, KindPlanNote:
		// {client}, or {client}/{version} where each version is its own
		// (an EHR that creates but does not update them).
		client, record, _ := strings.Cut(value, "/")
		if client == "" || strings.Contains(record, "/") || (strings.Contains(value, "/") && record == "") {
			return Key{}, false
		}
		k.Client, k.Record = client, record
	case KindGoal, KindSupport, KindJob, KindEmploymentStatus, KindPRAPARE, KindReferralTask, KindEpisode:
		client, record, ok := strings.Cut(value, "/")
		if !ok || client == "" || record == "" || strings.Contains(record, "/") {
			return Key{}, false
		}
		k.Client, k.Record = client, record
	default:
		return Key{}, false
	}
	return k, true
}

// keyOf finds the resource's ipsfhir identifier of the wanted kind.
func keyOf(ids []*dtpb.Identifier, want Kind, r reader) (Key, bool) {
	for _, id := range ids {
		if k, ok := ParseKey(id.GetSystem().GetValue(), id.GetValue().GetValue()); ok && k.Kind == want {
			return k, true
		}
	}
	r.fail("identifier", "has no ipsfhir %s identifier (urn:ipsfhir:{program}:%s)", want, want)
	return Key{}, false
}

// GoalFromFHIR reads a Goal, typically one a clinician changed in the EHR,
// back into the IPS goal it was written from: status, achievement, the
// description, dates, the weekly-hours target and notes.
func GoalFromFHIR(g *gpb.Goal) (Key, *ips.Goal, error) {
	r := newReader("Goal")
	k, out := readGoal(g, r)
	return k, out, r.err()
}

func readGoal(g *gpb.Goal, r reader) (Key, *ips.Goal) {
	k, _ := keyOf(g.GetIdentifier(), KindGoal, r)
	out := &ips.Goal{ID: k.Record}
	if g.GetLifecycleStatus() == nil {
		r.fail("lifecycleStatus", "is required")
	} else {
		out.Status = ips.GoalStatus(codeOfEnum(g.GetLifecycleStatus().GetValue().String()))
	}
	if c := codingIn(g.GetAchievementStatus(), SystemGoalAchievement); c != nil {
		out.Achievement = ips.GoalAchievement(c.GetCode().GetValue())
		if !slices.Contains(ips.GoalAchievements, out.Achievement) {
			r.fail("achievementStatus", "is not a goal-achievement code")
		}
	}
	out.Description = g.GetDescription().GetText().GetValue()
	if out.Description == "" && len(g.GetDescription().GetCoding()) > 0 {
		out.Description = g.GetDescription().GetCoding()[0].GetDisplay().GetValue()
	}
	if out.Description == "" {
		r.fail("description", "has neither text nor a coding display")
	}
	if d := g.GetStart().GetDate(); d != nil {
		out.Start = dateFromDate(d)
	} else {
		r.fail("startDate", "is required for an IPS goal")
	}
	for i, t := range g.GetTarget() {
		if hasCoding(t.GetMeasure(), SystemIPSObservation, CodeWorkHoursPerWeek) {
			if v, ok := parseDecimal(t.GetDetail().GetQuantity().GetValue()); ok {
				out.TargetHoursPerWeek = &v
			} else {
				r.fail(fmt.Sprintf("target[%d].detailQuantity", i), "is missing or not a number")
			}
		}
		if d := t.GetDue().GetDate(); d != nil {
			out.Due = dateFromDate(d)
		}
	}
	for _, n := range g.GetNote() {
		out.Notes = append(out.Notes, ips.Note{Text: n.GetText().GetValue(), Date: dateFromDateTime(n.GetTime())})
	}
	return k, out
}

var planToClientStatus = map[cpb.RequestStatusCode_Value]ips.ClientStatus{
	cpb.RequestStatusCode_DRAFT:     ips.ClientReferred,
	cpb.RequestStatusCode_ACTIVE:    ips.ClientActive,
	cpb.RequestStatusCode_ON_HOLD:   ips.ClientOnHold,
	cpb.RequestStatusCode_COMPLETED: ips.ClientClosed,
	cpb.RequestStatusCode_REVOKED:   ips.ClientClosed,
}

var activityToSupportStatus = map[cpb.CarePlanActivityStatusCode_Value]ips.SupportStatus{
	cpb.CarePlanActivityStatusCode_NOT_STARTED: ips.SupportPlanned,
	cpb.CarePlanActivityStatusCode_SCHEDULED:   ips.SupportPlanned,
	cpb.CarePlanActivityStatusCode_IN_PROGRESS: ips.SupportInProgress,
	cpb.CarePlanActivityStatusCode_ON_HOLD:     ips.SupportInProgress,
	cpb.CarePlanActivityStatusCode_COMPLETED:   ips.SupportCompleted,
	cpb.CarePlanActivityStatusCode_CANCELLED:   ips.SupportCancelled,
	cpb.CarePlanActivityStatusCode_STOPPED:     ips.SupportCancelled,
}

// GoalResolver turns a CarePlan's goal reference ("urn:uuid:…" inside a
// Bundle, "Goal/123" from an EHR) into the IPS goal id it stands for.
type GoalResolver func(reference string) (goalID string, ok bool)

// PlanFromFHIR reads a client's IPS plan back: the client (id, patient,
// status, enrollment period, specialist) and its supports. Goals are not in a
// CarePlan; read them with GoalFromFHIR.
func PlanFromFHIR(cp *cppb.CarePlan, goals GoalResolver) (Key, *ips.Client, error) {
	r := newReader("CarePlan")
	k, c := readPlan(cp, goals, r)
	return k, c, r.err()
}

func readPlan(cp *cppb.CarePlan, goals GoalResolver, r reader) (Key, *ips.Client) {
	k, _ := keyOf(cp.GetIdentifier(), KindPlan, r)
	c := &ips.Client{ID: k.Client, Patient: patientOf(cp.GetSubject())}
	if c.Patient.System == "" || c.Patient.Value == "" {
		r.fail("subject.identifier", "must carry the patient's EHR identifier (system and value)")
	}
	if st, ok := planToClientStatus[cp.GetStatus().GetValue()]; ok {
		c.Status = st
	} else {
		r.fail("status", "cannot be an IPS client status (want draft, active, on-hold, completed or revoked)")
	}
	c.EnrolledOn = dateFromDateTime(cp.GetPeriod().GetStart())
	c.ClosedOn = dateFromDateTime(cp.GetPeriod().GetEnd())
	switch st := cp.GetStatus().GetValue(); {
	case !c.EnrolledOn.IsZero():
	case st == cpb.RequestStatusCode_DRAFT:
		// Referred, not yet enrolled: no enrollment period.
	case st == cpb.RequestStatusCode_REVOKED && !c.ClosedOn.IsZero():
		// A referral closed without enrollment: the period has only
		// its end, the closing date.
	default:
		r.fail("period.start", "is required: it is the enrollment date")
	}
	if cs := cp.GetContributor(); len(cs) > 0 {
		c.Specialist = cs[0].GetDisplay().GetValue()
	}
	for i, a := range cp.GetActivity() {
		if s := readSupport(a, goals, r.at(fmt.Sprintf("activity[%d]", i))); s != nil {
			c.Supports = append(c.Supports, s)
		}
	}
	return k, c
}

func readSupport(a *cppb.CarePlan_Activity, goals GoalResolver, r reader) *ips.Support {
	s := &ips.Support{}
	found := false
	for _, e := range a.GetExtension() {
		if e.GetUrl().GetValue() != ExtSupportIdentifier {
			continue
		}
		id := e.GetValue().GetIdentifier()
		if k, ok := ParseKey(id.GetSystem().GetValue(), id.GetValue().GetValue()); ok && k.Kind == KindSupport {
			s.ID, found = k.Record, true
		}
	}
	if !found {
		r.fail("extension", "has no ipsfhir support identifier (%s)", ExtSupportIdentifier)
	}
	d := a.GetDetail()
	r = r.at("detail")
	if c := codingIn(d.GetCode(), SystemSupportType); c != nil && slices.Contains(ips.SupportTypes, ips.SupportType(c.GetCode().GetValue())) {
		s.Type = ips.SupportType(c.GetCode().GetValue())
	} else {
		r.fail("code", "must hold a code of %s", SystemSupportType)
	}
	if st, ok := activityToSupportStatus[d.GetStatus().GetValue()]; ok {
		s.Status = st
	} else {
		r.fail("status", "cannot be an IPS support status")
	}
	s.Date = dateFromDateTime(d.GetScheduled().GetPeriod().GetStart())
	if s.Date.IsZero() {
		r.fail("scheduledPeriod.start", "is required: it is the support's date")
	}
	s.Note = d.GetDescription().GetValue()
	for i, e := range d.GetExtension() {
		if e.GetUrl().GetValue() == ExtEmployerContact {
			s.Contact = readEmployerContact(e, r.at(fmt.Sprintf("extension[%d]", i)))
		}
	}
	for i, g := range d.GetGoal() {
		ref := referenceString(g)
		if goals == nil {
			r.fail(fmt.Sprintf("goal[%d]", i), "cannot be resolved: no goals are known")
			continue
		}
		id, ok := goals(ref)
		if !ok {
			r.fail(fmt.Sprintf("goal[%d]", i), "refers to a goal that is not an ipsfhir goal of this client")
			continue
		}
		s.Goal = id
	}
	return s
}

// readEmployerContact reads the ips-employer-contact extension.
func readEmployerContact(e *dtpb.Extension, r reader) *ips.Contact {
	ct := &ips.Contact{}
	for _, sub := range e.GetExtension() {
		switch sub.GetUrl().GetValue() {
		case "mode":
			c := sub.GetValue().GetCoding()
			for mode, m := range contactModes {
				if c.GetSystem().GetValue() == SystemParticipationMode && c.GetCode().GetValue() == m[0] {
					ct.Mode = mode
				}
			}
		case "onBehalfOf":
			switch b := ips.ContactBehalf(sub.GetValue().GetCode().GetValue()); b {
			case ips.ContactForClient, ips.ContactForProgram:
				ct.OnBehalfOf = b
			default:
				r.fail("extension:onBehalfOf", "must be client or program")
			}
		}
	}
	if ct.Mode == "" {
		r.fail("extension:mode", "must be a %s coding FACE, PHONE, VIDEOCONF or WRITTEN", SystemParticipationMode)
	}
	return ct
}

// JobFromFHIR reads a job back from its ODH PastOrPresentJob Observation.
func JobFromFHIR(o *obspb.Observation) (Key, *ips.Job, error) {
	r := newReader("Observation")
	k, j := readJob(o, r)
	return k, j, r.err()
}

func readJob(o *obspb.Observation, r reader) (Key, *ips.Job) {
	k, _ := keyOf(o.GetIdentifier(), KindJob, r)
	j := &ips.Job{ID: k.Record}
	if !hasCoding(o.GetCode(), SystemLOINC, LOINCPastOrPresentJob) {
		r.fail("code", "is not LOINC %s (History of Occupation)", LOINCPastOrPresentJob)
	}
	p := o.GetEffective().GetPeriod()
	j.Start, j.End = dateFromDateTime(p.GetStart()), dateFromDateTime(p.GetEnd())
	if j.Start.IsZero() {
		r.fail("effectivePeriod.start", "is required: it is the job's start date")
	}
	if lastKnown(o) {
		// The period ends where the program stopped knowing (the
		// enrollment closed), not where the job ended.
		j.End = ips.Date{}
	}
	v := o.GetValue().GetCodeableConcept()
	j.Title = v.GetText().GetValue()
	if j.Title == "" {
		r.fail("valueCodeableConcept.text", "is required: it is the job title")
	}
	if cs := v.GetCoding(); len(cs) > 0 {
		j.Occupation = codingOf(cs[0])
	}
	for _, e := range o.GetExtension() {
		if e.GetUrl().GetValue() == ExtODHEmployer {
			j.Employer = e.GetValue().GetReference().GetDisplay().GetValue()
		}
	}
	if j.Employer == "" {
		r.fail("extension", "has no employer (%s with valueReference.display)", ExtODHEmployer)
	}
	var hours, wage, competitive bool
	for i, c := range o.GetComponent() {
		cr := r.at(fmt.Sprintf("component[%d]", i))
		q := c.GetValue().GetQuantity()
		switch {
		case hasCoding(c.GetCode(), SystemLOINC, LOINCIndustry):
			if cs := c.GetValue().GetCodeableConcept().GetCoding(); len(cs) > 0 {
				j.Industry = codingOf(cs[0])
			}
		case hasCoding(c.GetCode(), SystemLOINC, LOINCWorkDaysPerWeek):
			if v, ok := parseDecimal(q.GetValue()); ok && v == float64(int(v)) && v >= 1 && v <= 7 {
				j.DaysPerWeek = int(v)
			} else {
				cr.fail("valueQuantity", "must be a whole number of days from 1 to 7")
			}
		case hasCoding(c.GetCode(), SystemIPSObservation, CodeWorkHoursPerWeek):
			if v, ok := parseDecimal(q.GetValue()); ok {
				j.HoursPerWeek, hours = v, true
			} else {
				cr.fail("valueQuantity", "must be a number of hours")
			}
		case hasCoding(c.GetCode(), SystemIPSObservation, CodeHourlyWage):
			v, ok := parseDecimal(q.GetValue())
			if !ok || q.GetSystem().GetValue() != SystemISO4217 || q.GetCode().GetValue() == "" {
				cr.fail("valueQuantity", "must be an amount with an ISO 4217 currency code")
				continue
			}
			j.HourlyWage, wage = ips.Money{Value: v, Currency: q.GetCode().GetValue()}, true
		case hasCoding(c.GetCode(), SystemIPSObservation, CodeCompetitive):
			if v, ok := readYesNo(c.GetValue().GetCodeableConcept()); ok {
				j.Competitive, competitive = v, true
			} else {
				cr.fail("valueCodeableConcept", "must be %s Y or N", SystemYesNo)
			}
		case hasCoding(c.GetCode(), SystemIPSObservation, CodeDisclosed):
			if v, ok := readYesNo(c.GetValue().GetCodeableConcept()); ok {
				j.Disclosed = &v
			} else {
				cr.fail("valueCodeableConcept", "must be %s Y or N", SystemYesNo)
			}
		case hasCoding(c.GetCode(), SystemIPSObservation, CodeJobEndReason):
			cc := codingIn(c.GetValue().GetCodeableConcept(), SystemJobEndReason)
			if cc == nil || !slices.Contains(ips.JobEndReasons, ips.JobEndReason(cc.GetCode().GetValue())) {
				cr.fail("valueCodeableConcept", "must hold a code of %s", SystemJobEndReason)
				continue
			}
			j.EndReason = ips.JobEndReason(cc.GetCode().GetValue())
		}
	}
	for _, req := range []struct {
		code  string
		found bool
	}{{CodeWorkHoursPerWeek, hours}, {CodeHourlyWage, wage}, {CodeCompetitive, competitive}} {
		if !req.found {
			r.fail("component", "has no %s component", req.code)
		}
	}
	return k, j
}

// readYesNo reads a yes/no answer coded in HL7 v2 table 0136.
func readYesNo(cc *dtpb.CodeableConcept) (bool, bool) {
	switch codingIn(cc, SystemYesNo).GetCode().GetValue() {
	case "Y":
		return true, true
	case "N":
		return false, true
	}
	return false, false
}

// lastKnown reports whether an Observation's period was closed because the
// client's enrollment closed (extension ips-last-known).
func lastKnown(o *obspb.Observation) bool {
	return slices.ContainsFunc(o.GetExtension(), func(e *dtpb.Extension) bool { return e.GetUrl().GetValue() == ExtLastKnown })
}

var v3ToEmploymentStatus = func() map[string]ips.EmploymentStatus {
	m := map[string]ips.EmploymentStatus{}
	for st, c := range employmentStatusV3 {
		m[c.Code] = st
	}
	return m
}()

var snomedToEmploymentStatus = func() map[string]ips.EmploymentStatus {
	m := map[string]ips.EmploymentStatus{}
	for st, c := range employmentStatusSNOMED {
		m[c.Code] = st
	}
	return m
}()

// DerivedEmploymentStatus reports whether an employment status Observation
// is one the mapping derived from job records (derivedFrom names an
// ipsfhir job) rather than a status the specialist recorded. Reading a
// caseload back skips these: they are derived again from the jobs.
func DerivedEmploymentStatus(o *obspb.Observation) bool {
	for _, ref := range o.GetDerivedFrom() {
		id := ref.GetIdentifier()
		if k, ok := ParseKey(id.GetSystem().GetValue(), id.GetValue().GetValue()); ok && k.Kind == KindJob {
			return true
		}
	}
	return false
}

// EmploymentStatusFromFHIR reads a status snapshot back from its ODH
// EmploymentStatus Observation.
func EmploymentStatusFromFHIR(o *obspb.Observation) (Key, ips.EmploymentSnapshot, error) {
	r := newReader("Observation")
	k, s := readEmploymentStatus(o, r)
	return k, s, r.err()
}

func readEmploymentStatus(o *obspb.Observation, r reader) (Key, ips.EmploymentSnapshot) {
	k, _ := keyOf(o.GetIdentifier(), KindEmploymentStatus, r)
	var s ips.EmploymentSnapshot
	if !hasCoding(o.GetCode(), SystemLOINC, LOINCEmploymentStatus) {
		r.fail("code", "is not LOINC %s (employment status)", LOINCEmploymentStatus)
	}
	s.Date = dateFromDateTime(o.GetEffective().GetPeriod().GetStart())
	if s.Date.IsZero() {
		r.fail("effectivePeriod.start", "is required")
	}
	// The v3 code ODH requires, else (from systems that send only that) the
	// SNOMED CT finding.
	cc := o.GetValue().GetCodeableConcept()
	st, ok := v3ToEmploymentStatus[codingIn(cc, SystemV3ObservationValue).GetCode().GetValue()]
	if !ok {
		st, ok = snomedToEmploymentStatus[codingIn(cc, SystemSNOMED).GetCode().GetValue()]
	}
	if !ok {
		r.fail("valueCodeableConcept", "must hold an employment status: a v3-ObservationValue code (Employed, Unemployed, NotInLaborForce) or the SNOMED CT finding")
	}
	s.Status = st
	return k, s
}

func codingOf(c *dtpb.Coding) *ips.Coding {
	return &ips.Coding{System: c.GetSystem().GetValue(), Code: c.GetCode().GetValue(), Display: c.GetDisplay().GetValue()}
}
