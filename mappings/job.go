package mappings

import (
	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// JobKey is the identity of a client's job.
func (o Options) JobKey(c *ips.Client, j *ips.Job) Key { return o.key(KindJob, c.ID, j.ID) }

// JobObservation maps a job to an ODH PastOrPresentJob Observation (profile
// ips-job-observation). ODH has no element for weekly hours, wage or the
// competitive flag, which are the outcomes IPS is judged by, so they travel as
// components coded in the project's ips-observation CodeSystem.
//
// A job still held when the client's enrollment closed is not reported as
// current forever: its period ends on the closing day, it carries no
// isCurrentJob (nobody knows any more), and the extension ips-last-known and
// a note say that the period ends because the program stopped knowing.
func JobObservation(c *ips.Client, j *ips.Job, o Options) *obspb.Observation {
	k := o.JobKey(c, j)
	value := &dtpb.CodeableConcept{Text: fstr(j.Title)}
	if j.Occupation != nil {
		value.Coding = []*dtpb.Coding{fcoding(j.Occupation.System, j.Occupation.Code, j.Occupation.Display)}
	}
	end, lastKnown := j.End, j.Current() && !c.ClosedOn.IsZero()
	if lastKnown {
		end = knownUntil(c, j.Start)
	}
	out := &obspb.Observation{
		Meta:       o.meta(ProfileJob),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category:   []*dtpb.CodeableConcept{socialHistory()},
		Code:       o.observationCode(KindJob, LOINCPastOrPresentJob),
		Subject:    o.subject(c),
		Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_Period{Period: fperiod(j.Start, end)}},
		Issued:     o.issued(),
		Value:      &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_CodeableConcept{CodeableConcept: value}},
		Extension: []*dtpb.Extension{
			{Url: furi(ExtODHEmployer), Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Reference{Reference: &dtpb.Reference{Display: fstr(j.Employer)}}}},
		},
	}
	if lastKnown {
		markLastKnown(c, &out.Extension, &out.Note, end, "the job ended")
	} else {
		out.Extension = append(out.Extension, &dtpb.Extension{Url: furi(ExtODHIsCurrentJob), Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Boolean{Boolean: fbool(j.Current())}}})
	}
	comp := func(code *dtpb.CodeableConcept, v *obspb.Observation_Component_ValueX) {
		out.Component = append(out.Component, &obspb.Observation_Component{Code: code, Value: v})
	}
	qty := func(q *dtpb.Quantity) *obspb.Observation_Component_ValueX {
		return &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Quantity{Quantity: q}}
	}
	concept := func(cc *dtpb.CodeableConcept) *obspb.Observation_Component_ValueX {
		return &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_CodeableConcept{CodeableConcept: cc}}
	}
	if j.Industry != nil {
		comp(loinc(LOINCIndustry), concept(fconcept(j.Industry.System, j.Industry.Code, j.Industry.Display)))
	}
	if j.DaysPerWeek > 0 {
		comp(loinc(LOINCWorkDaysPerWeek), qty(fquantity(float64(j.DaysPerWeek), SystemUCUM, "d", "days per week")))
		comp(loinc(LOINCWorkHoursPerDay), qty(fquantity(roundTo(j.HoursPerWeek/float64(j.DaysPerWeek), 2), SystemUCUM, "h", "hours per day")))
	}
	comp(ipsObs(CodeWorkHoursPerWeek), qty(fquantity(j.HoursPerWeek, SystemUCUM, "h/wk", "hours per week")))
	comp(ipsObs(CodeHourlyWage), qty(fquantity(j.HourlyWage.Value, SystemISO4217, j.HourlyWage.Currency, j.HourlyWage.Currency+"/h")))
	comp(ipsObs(CodeCompetitive), concept(yesNo(j.Competitive)))
	if j.Disclosed != nil {
		comp(ipsObs(CodeDisclosed), concept(yesNo(*j.Disclosed)))
	}
	if j.EndReason != "" {
		comp(ipsObs(CodeJobEndReason), concept(fconcept(SystemJobEndReason, string(j.EndReason), JobEndReasonDisplay[j.EndReason])))
	}
	return out
}

func socialHistory() *dtpb.CodeableConcept {
	return fconcept(SystemObsCategory, "social-history", "Social History")
}

func loinc(code string) *dtpb.CodeableConcept { return fconcept(SystemLOINC, code, loincDisplay[code]) }

func ipsObs(code string) *dtpb.CodeableConcept {
	return fconcept(SystemIPSObservation, code, IPSObservationDisplay[code])
}

func roundTo(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	r := v * p
	if r < 0 {
		return float64(int64(r-0.5)) / p
	}
	return float64(int64(r+0.5)) / p
}

// yesNo codes a yes/no answer in HL7 v2 table 0136.
func yesNo(b bool) *dtpb.CodeableConcept {
	if b {
		return fconcept(SystemYesNo, "Y", "Yes")
	}
	return fconcept(SystemYesNo, "N", "No")
}
