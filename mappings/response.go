package mappings

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/ipsfhir/ipsfhir/ips"
	"google.golang.org/protobuf/proto"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	qrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/questionnaire_response_go_proto"
)

// QuestionnairePlan is the canonical of the "IPS employment plan"
// Questionnaire (conformance/artifacts/questionnaires/ips-employment-plan.json)
// that PlanResponse answers.
const QuestionnairePlan = CanonicalBase + "/Questionnaire/ips-employment-plan|0.1.0"

// PlanResponseKey is the identity of a client's plan QuestionnaireResponse.
// record is "" for the one response an EHR updates in place; where the EHR
// only creates QuestionnaireResponses, each content is its own response,
// and record is "{n}-{digest}": its number in the client's sequence of
// responses and ResponseDigest of its answers (the number makes a plan
// changed back to an earlier content a new response, the newest).
func (o Options) PlanResponseKey(c *ips.Client, record string) Key {
	return o.key(KindPlanResponse, c.ID, record)
}

// ResponseDigest names the answers of the client's plan response: the
// first 16 bytes of the SHA-256 of their deterministic protobuf encoding,
// in hex. The answers hold no EHR-specific part and no write time, so the
// digest is the same whichever EHR, and whenever, the plan is written.
func ResponseDigest(c *ips.Client, o Options) string { return itemsDigest(planItems(c, o)) }

// PlanResponse maps the client's enrollment, goals, work and plan to a
// QuestionnaireResponse to the IPS employment plan Questionnaire: the path
// into the chart for EHRs that take QuestionnaireResponse but neither Goal,
// CarePlan nor a clinical note. Its authored time (Options.Now) is the date
// it speaks for. record names the response (PlanResponseKey): "" for the
// one response an EHR updates in place.
func PlanResponse(c *ips.Client, o Options, record string) (Key, *qrpb.QuestionnaireResponse) {
	items := planItems(c, o)
	k := o.PlanResponseKey(c, record)
	out := &qrpb.QuestionnaireResponse{
		Meta:          o.metaUnprofiled(),
		Identifier:    fidentifier(k.System(), k.Value()),
		Questionnaire: &dtpb.Canonical{Value: QuestionnairePlan},
		Status:        &qrpb.QuestionnaireResponse_StatusCode{Value: cpb.QuestionnaireResponseStatusCode_COMPLETED},
		Subject:       o.subject(c),
		Item:          items,
	}
	if !o.Now.IsZero() {
		out.Authored = &dtpb.DateTime{ValueUs: o.Now.UnixMicro(), Timezone: "Z", Precision: dtpb.DateTime_SECOND}
	}
	return k, out
}

// itemsDigest names a plan's answers: the first 16 bytes of the SHA-256 of
// their deterministic protobuf encoding, in hex.
func itemsDigest(items []*qrpb.QuestionnaireResponse_Item) string {
	h := sha256.New()
	for _, it := range items {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(it)
		if err != nil {
			panic("mappings: encode a QuestionnaireResponse item: " + err.Error())
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func planItems(c *ips.Client, o Options) []*qrpb.QuestionnaireResponse_Item {
	var out []*qrpb.QuestionnaireResponse_Item
	if o.ProgramName != "" {
		out = append(out, qrItem("program", "IPS program", qrString(o.ProgramName)))
	}
	enr := []*qrpb.QuestionnaireResponse_Item{qrItem("enrollment.status", "Status in the program", qrString(string(c.EffectiveStatus())))}
	enr = appendDate(enr, "enrollment.referred", "Referred on", c.ReferredOn)
	enr = appendDate(enr, "enrollment.enrolled", "Enrolled on", c.EnrolledOn)
	enr = appendDate(enr, "enrollment.closed", "Closed on", c.ClosedOn)
	if c.ClosedReason != "" {
		enr = append(enr, qrItem("enrollment.closed-reason", "Why the enrollment closed", qrString(c.ClosedReason)))
	}
	out = append(out, qrGroup("enrollment", "Enrollment", enr))
	var sp []*qrpb.QuestionnaireResponse_Item
	if c.Specialist != "" {
		sp = append(sp, qrItem("specialist.name", "Name", qrString(c.Specialist)))
	}
	if c.SpecialistContact != "" {
		sp = append(sp, qrItem("specialist.contact", "How to reach them", qrString(c.SpecialistContact)))
	}
	if len(sp) > 0 {
		out = append(out, qrGroup("specialist", "Employment specialist", sp))
	}
	for _, g := range sortedGoals(c) {
		gi := []*qrpb.QuestionnaireResponse_Item{
			qrItem("goal.description", "The goal, in the client's own words", qrString(g.Description)),
			qrItem("goal.status", "Status", qrCoding(SystemGoalStatus, string(g.Status))),
		}
		if g.Achievement != "" {
			gi = append(gi, qrItem("goal.achievement", "Achievement", qrCoding(SystemGoalAchievement, string(g.Achievement))))
		}
		if g.TargetHoursPerWeek != nil {
			gi = append(gi, qrItem("goal.target-hours", "Target hours a week", qrDecimal(*g.TargetHoursPerWeek)))
		}
		gi = appendDate(gi, "goal.start", "Since", g.Start)
		gi = appendDate(gi, "goal.due", "Due", g.Due)
		out = append(out, qrGroup("goal", "Employment goal", gi))
	}
	for _, j := range append(currentJobs(c), pastJobs(c)...) {
		ji := []*qrpb.QuestionnaireResponse_Item{qrItem("job.title", "Job title", qrString(j.Title))}
		if j.Employer != "" {
			ji = append(ji, qrItem("job.employer", "Employer", qrString(j.Employer)))
		}
		ji = appendDate(ji, "job.start", "Started", j.Start)
		ji = appendDate(ji, "job.end", "Ended", j.End)
		if j.EndReason != "" {
			ji = append(ji, qrItem("job.end-reason", "Why it ended", qrString(JobEndReasonDisplay[j.EndReason])))
		}
		ji = append(ji,
			qrItem("job.hours", "Hours a week", qrDecimal(j.HoursPerWeek)),
			qrItem("job.competitive", "Competitive job", qrBool(j.Competitive)))
		if j.Disclosed != nil {
			ji = append(ji, qrItem("job.disclosed", "The employer knows of the client's condition", qrBool(*j.Disclosed)))
		}
		out = append(out, qrGroup("job", "Job", ji))
	}
	next, done := splitSupports(c)
	for _, s := range append(next, done...) {
		si := []*qrpb.QuestionnaireResponse_Item{
			qrItem("step.type", "Kind of support", qrString(SupportTypeDisplay[s.Type])),
			qrItem("step.status", "Status", qrString(string(s.Status))),
		}
		si = appendDate(si, "step.date", "Date", s.Date)
		if s.Note != "" {
			si = append(si, qrItem("step.note", "Note", qrString(s.Note)))
		}
		out = append(out, qrGroup("step", "Next step or support of the plan", si))
	}
	return out
}

func qrItem(linkID, text string, v *qrpb.QuestionnaireResponse_Item_Answer_ValueX) *qrpb.QuestionnaireResponse_Item {
	return &qrpb.QuestionnaireResponse_Item{
		LinkId: fstr(linkID), Text: fstr(text),
		Answer: []*qrpb.QuestionnaireResponse_Item_Answer{{Value: v}},
	}
}

func qrGroup(linkID, text string, items []*qrpb.QuestionnaireResponse_Item) *qrpb.QuestionnaireResponse_Item {
	return &qrpb.QuestionnaireResponse_Item{LinkId: fstr(linkID), Text: fstr(text), Item: items}
}

func appendDate(items []*qrpb.QuestionnaireResponse_Item, linkID, text string, d ips.Date) []*qrpb.QuestionnaireResponse_Item {
	if d.IsZero() {
		return items
	}
	return append(items, qrItem(linkID, text, &qrpb.QuestionnaireResponse_Item_Answer_ValueX{
		Choice: &qrpb.QuestionnaireResponse_Item_Answer_ValueX_Date{Date: fdate(d)}}))
}

func qrString(s string) *qrpb.QuestionnaireResponse_Item_Answer_ValueX {
	return &qrpb.QuestionnaireResponse_Item_Answer_ValueX{Choice: &qrpb.QuestionnaireResponse_Item_Answer_ValueX_StringValue{StringValue: fstr(s)}}
}

func qrDecimal(v float64) *qrpb.QuestionnaireResponse_Item_Answer_ValueX {
	return &qrpb.QuestionnaireResponse_Item_Answer_ValueX{Choice: &qrpb.QuestionnaireResponse_Item_Answer_ValueX_Decimal{Decimal: fdecimal(v)}}
}

func qrBool(b bool) *qrpb.QuestionnaireResponse_Item_Answer_ValueX {
	return &qrpb.QuestionnaireResponse_Item_Answer_ValueX{Choice: &qrpb.QuestionnaireResponse_Item_Answer_ValueX_Boolean{Boolean: fbool(b)}}
}

func qrCoding(system, code string) *qrpb.QuestionnaireResponse_Item_Answer_ValueX {
	return &qrpb.QuestionnaireResponse_Item_Answer_ValueX{Choice: &qrpb.QuestionnaireResponse_Item_Answer_ValueX_Coding{Coding: fcoding(system, code, "")}}
}
