package mappings

import (
	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	taskpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/task_go_proto"
	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// SystemTaskCode is FHIR's task-code CodeSystem (fulfill: fulfil the
// focal request).
const SystemTaskCode = "http://hl7.org/fhir/CodeSystem/task-code"

// ReferralTaskKey is the identity of the Task that answers one referral:
// the client and the EHR's ServiceRequest id.
func (o Options) ReferralTaskKey(c *ips.Client, serviceRequest string) Key {
	return o.key(KindReferralTask, c.ID, serviceRequest)
}

// ReferralTask answers the referral the client's current episode began
// with, the way the SDOH Clinical Care closed loop does: a Task whose focus
// is the referral's ServiceRequest, for the patient, owned by the program,
// to fulfil the request. Its status says where the referral stands:
// received while the client waits for acceptance, accepted once enrolled,
// rejected when declined (closed without enrollment). The reason a referral
// was declined stays in the program (free text); the Task says only that
// it was. nil when the current episode did not begin with a referral read
// from an EHR.
func ReferralTask(c *ips.Client, o Options) (Key, *taskpb.Task) {
	src := c.Referral
	if src == nil || src.ServiceRequest == "" {
		return Key{}, nil
	}
	k := o.ReferralTaskKey(c, src.ServiceRequest)
	answer, reason := ReferralAnswer(c)
	status := cpb.TaskStatusCode_RECEIVED
	switch answer {
	case TaskAccepted:
		status = cpb.TaskStatusCode_ACCEPTED
	case TaskRejected:
		status = cpb.TaskStatusCode_REJECTED
	}
	out := &taskpb.Task{
		Meta:       o.metaUnprofiled(),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &taskpb.Task_StatusCode{Value: status},
		Intent:     &taskpb.Task_IntentCode{Value: vspb.TaskIntentValueSet_ORDER},
		Code:       fconcept(SystemTaskCode, "fulfill", "Fulfill the focal request"),
		Focus:      literalRef("ServiceRequest/" + src.ServiceRequest),
		ForValue:   o.subject(c),
	}
	if !c.ReferredOn.IsZero() {
		out.AuthoredOn = fdateTime(c.ReferredOn)
	}
	if o.ProgramName != "" {
		out.Owner = &dtpb.Reference{Display: fstr(o.ProgramName)}
	}
	if reason != "" {
		out.StatusReason = &dtpb.CodeableConcept{Text: fstr(reason)}
	}
	return k, out
}

// Task statuses (FHIR task-status codes) a referral's answer takes.
const (
	TaskReceived = "received"
	TaskAccepted = "accepted"
	TaskRejected = "rejected"
)

// ReferralAnswer is where the referral of the client's current episode
// stands, as a Task status: received while the client waits for
// acceptance, accepted once enrolled, rejected when closed without
// enrollment. reason is the Task's statusReason text, set only when
// rejected: a fixed phrase, never the specialist's own words, which stay
// in the program.
func ReferralAnswer(c *ips.Client) (status, reason string) {
	switch {
	case !c.EnrolledOn.IsZero():
		return TaskAccepted, ""
	case c.EffectiveStatus() == ips.ClientClosed:
		return TaskRejected, "Closed by the IPS program without enrollment"
	}
	return TaskReceived, ""
}
