package mappings

import (
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	gpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/goal_go_proto"
)

// GoalKey is the identity of a client's goal.
func (o Options) GoalKey(c *ips.Client, g *ips.Goal) Key { return o.key(KindGoal, c.ID, g.ID) }

// Goal maps an IPS employment goal to a FHIR Goal (profile ips-goal, on US
// Core Goal and SDOHCC Goal). The description keeps the client's own words.
func Goal(c *ips.Client, g *ips.Goal, o Options) *gpb.Goal {
	k := o.GoalKey(c, g)
	out := &gpb.Goal{
		Meta:            o.meta(ProfileGoal, ProfileSDOHCCGoal),
		Identifier:      []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		LifecycleStatus: &gpb.Goal_LifecycleStatusCode{Value: goalStatusCode(g.Status)},
		Category:        []*dtpb.CodeableConcept{sdohEmploymentCategory()},
		Description:     &dtpb.CodeableConcept{Text: fstr(g.Description)},
		Subject:         o.subject(c),
		ExpressedBy:     o.subject(c),
		Start:           &gpb.Goal_StartX{Choice: &gpb.Goal_StartX_Date{Date: fdate(g.Start)}},
	}
	if g.Achievement != "" {
		out.AchievementStatus = fconcept(SystemGoalAchievement, string(g.Achievement), "")
	}
	if g.TargetHoursPerWeek != nil || !g.Due.IsZero() {
		t := &gpb.Goal_Target{}
		if g.TargetHoursPerWeek != nil {
			t.Measure = fconcept(SystemIPSObservation, CodeWorkHoursPerWeek, IPSObservationDisplay[CodeWorkHoursPerWeek])
			t.Detail = &gpb.Goal_Target_DetailX{Choice: &gpb.Goal_Target_DetailX_Quantity{
				Quantity: fquantity(*g.TargetHoursPerWeek, SystemUCUM, "h/wk", "hours per week")}}
		}
		if !g.Due.IsZero() {
			t.Due = &gpb.Goal_Target_DueX{Choice: &gpb.Goal_Target_DueX_Date{Date: fdate(g.Due)}}
		}
		out.Target = []*gpb.Goal_Target{t}
	}
	for _, n := range g.Notes {
		a := &dtpb.Annotation{Text: &dtpb.Markdown{Value: n.Text}}
		if !n.Date.IsZero() {
			a.Time = fdateTime(n.Date)
		}
		out.Note = append(out.Note, a)
	}
	return out
}

func sdohEmploymentCategory() *dtpb.CodeableConcept {
	return fconcept(SystemSDOHCCTemporary, SDOHEmploymentStatus, "Employment Status")
}

// goalStatusCode converts the FHIR code ("on-hold") to google/fhir/go's enum
// (ON_HOLD). The domain only admits valid codes, so a miss is a bug upstream.
func goalStatusCode(s ips.GoalStatus) cpb.GoalLifecycleStatusCode_Value {
	return cpb.GoalLifecycleStatusCode_Value(cpb.GoalLifecycleStatusCode_Value_value[enumName(string(s))])
}

// enumName is google/fhir/go's enum spelling of a FHIR code.
func enumName(code string) string { return strings.ToUpper(strings.ReplaceAll(code, "-", "_")) }

// codeOfEnum is the FHIR code of a google/fhir/go enum name.
func codeOfEnum(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "-")) }
