package mappings

import (
	"strconv"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	eocpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/episode_of_care_go_proto"
)

// EpisodeKey is the identity of a client's n-th enrollment episode (1 the
// earliest): past episodes only ever gain a successor, so the numbers stay.
func (o Options) EpisodeKey(c *ips.Client, n int) Key {
	return o.key(KindEpisode, c.ID, "episode-"+strconv.Itoa(n))
}

// EpisodeOfCare is one episode mapped, with its key.
type EpisodeOfCare struct {
	Key      Key
	Resource *eocpb.EpisodeOfCare
}

// EpisodesOfCare maps the client's enrollment episodes, the past ones and
// the current one, oldest first, to EpisodeOfCare: status waitlist while
// referred, active, onhold, finished once closed, cancelled for a referral
// declined without enrollment; period from the enrollment (or, not yet
// enrolled, the referral) to the closure; referralRequest the referral's
// ServiceRequest when it was read from connection (the EHR these resources
// go to).
func EpisodesOfCare(c *ips.Client, o Options, connection string) []EpisodeOfCare {
	var out []EpisodeOfCare
	add := func(e ips.Episode, st ips.ClientStatus) {
		k := o.EpisodeKey(c, len(out)+1)
		status := cpb.EpisodeOfCareStatusCode_ACTIVE
		switch {
		case st == ips.ClientReferred:
			status = cpb.EpisodeOfCareStatusCode_WAITLIST
		case st == ips.ClientOnHold:
			status = cpb.EpisodeOfCareStatusCode_ONHOLD
		case !e.ClosedOn.IsZero() && e.EnrolledOn.IsZero():
			status = cpb.EpisodeOfCareStatusCode_CANCELLED
		case !e.ClosedOn.IsZero():
			status = cpb.EpisodeOfCareStatusCode_FINISHED
		}
		start := e.EnrolledOn
		if start.IsZero() {
			start = e.ReferredOn
		}
		r := &eocpb.EpisodeOfCare{
			Meta:       o.metaUnprofiled(),
			Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
			Status:     &eocpb.EpisodeOfCare_StatusCode{Value: status},
			Type:       []*dtpb.CodeableConcept{episodeType()},
			Patient:    o.subject(c),
			Period:     fperiod(start, e.ClosedOn),
		}
		if o.ProgramName != "" {
			r.ManagingOrganization = &dtpb.Reference{Display: fstr(o.ProgramName)}
		}
		if e.Referral != nil && e.Referral.Connection == connection && e.Referral.ServiceRequest != "" {
			r.ReferralRequest = []*dtpb.Reference{literalRef("ServiceRequest/" + e.Referral.ServiceRequest)}
		}
		out = append(out, EpisodeOfCare{Key: k, Resource: r})
	}
	for _, e := range c.PastEpisodes {
		if e != nil {
			add(*e, ips.ClientClosed)
		}
	}
	if cur := c.CurrentEpisode(); !cur.EnrolledOn.IsZero() || !cur.ReferredOn.IsZero() {
		add(cur, c.EffectiveStatus())
	}
	return out
}

// episodeType says what the episode is: IPS supported employment, in the
// Gravity SDOH employment domain.
func episodeType() *dtpb.CodeableConcept {
	cc := fconcept(SystemSDOHCCTemporary, SDOHEmploymentStatus, "Employment Status")
	cc.Text = fstr("IPS supported employment (Individual Placement and Support)")
	return cc
}
