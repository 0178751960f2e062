package ips_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

const patient = `"patient":{"system":"urn:x","value":"v"}`

// TestDecodeEnrollmentDateRule: a referred client waits for acceptance
// without an enrollment date, and a referral closed without enrollment has
// none; every other client needs one.
func TestDecodeEnrollmentDateRule(t *testing.T) {
	for _, tc := range []struct {
		name, client string
		want         []ips.Problem
	}{
		{"referred without enrolledOn", `"status":"referred","referredOn":"2026-11-02"`, nil},
		{"declined referral", `"status":"closed","referredOn":"2026-11-02","closedOn":"2026-11-20","closedReason":"did not want the service"`, nil},
		{"active without enrolledOn", `"status":"active","referredOn":"2026-11-02"`,
			[]ips.Problem{{Path: "clients[0].enrolledOn", Message: "is required"}}},
		{"no status, no enrolledOn", `"referredOn":"2026-11-02"`,
			[]ips.Problem{{Path: "clients[0].enrolledOn", Message: "is required"}}},
		{"declined before the referral", `"status":"closed","referredOn":"2026-11-02","closedOn":"2026-11-01"`,
			[]ips.Problem{{Path: "clients[0].closedOn", Message: "is before referredOn"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ips.Decode(strings.NewReader(`{"clients":[{"id":"c1",` + patient + `,` + tc.client + `}]}`))
			var got []ips.Problem
			var ve *ips.ValidationError
			if errors.As(err, &ve) {
				got = ve.Problems
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecodePastEpisodes: earlier episodes are closed, dated and in order,
// and the current episode begins after the last of them.
func TestDecodePastEpisodes(t *testing.T) {
	const ok = `"enrolledOn":"2026-06-01","referredOn":"2026-05-20","status":"active",
	  "referral":{"connection":"clinic","serviceRequest":"sr-2"},
	  "pastEpisodes":[
	    {"referredOn":"2024-01-02","referral":{"connection":"clinic","serviceRequest":"sr-1"},"enrolledOn":"2024-01-10","closedOn":"2024-09-30","closedReason":"moved away"},
	    {"referredOn":"2025-02-01","closedOn":"2025-02-20","closedReason":"could not be reached"}]`
	cl, err := ips.Decode(strings.NewReader(`{"clients":[{"id":"c1",` + patient + `,` + ok + `}]}`))
	if err != nil {
		t.Fatalf("valid episodes rejected: %v", err)
	}
	c := cl.Clients[0]
	if len(c.PastEpisodes) != 2 || c.PastEpisodes[0].Referral.ServiceRequest != "sr-1" || c.Referral.ServiceRequest != "sr-2" {
		t.Errorf("decoded %+v", c)
	}
	if got := c.Enrollments(); len(got) != 2 || got[0].EnrolledOn != ips.MustDate("2024-01-10") || got[1].EnrolledOn != ips.MustDate("2026-06-01") {
		t.Errorf("Enrollments() = %+v; want the enrolled past episode and the current one", got)
	}

	for _, tc := range []struct {
		name, client string
		want         ips.Problem
	}{
		{"open past episode", `"enrolledOn":"2026-06-01","pastEpisodes":[{"enrolledOn":"2024-01-10"}]`,
			ips.Problem{Path: "clients[0].pastEpisodes[0].closedOn", Message: "is required"}},
		{"undated past episode", `"enrolledOn":"2026-06-01","pastEpisodes":[{"closedOn":"2024-09-30"}]`,
			ips.Problem{Path: "clients[0].pastEpisodes[0].enrolledOn", Message: "is required unless the episode has a referredOn (a referral closed without enrollment)"}},
		{"closed before enrolled", `"enrolledOn":"2026-06-01","pastEpisodes":[{"enrolledOn":"2024-01-10","closedOn":"2023-09-30"}]`,
			ips.Problem{Path: "clients[0].pastEpisodes[0].closedOn", Message: "is before enrolledOn"}},
		{"out of order", `"enrolledOn":"2026-06-01","pastEpisodes":[{"enrolledOn":"2025-01-10","closedOn":"2025-09-30"},{"enrolledOn":"2024-01-10","closedOn":"2024-09-30"}]`,
			ips.Problem{Path: "clients[0].pastEpisodes[1]", Message: "begins before the episode listed before it closed; list earlier episodes oldest first, without overlap"}},
		{"current before past closed", `"enrolledOn":"2024-06-01","pastEpisodes":[{"enrolledOn":"2024-01-10","closedOn":"2024-09-30"}]`,
			ips.Problem{Path: "clients[0].enrolledOn", Message: "is before the last of pastEpisodes closed: the current episode begins after the earlier ones"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ips.Decode(strings.NewReader(`{"clients":[{"id":"c1",` + patient + `,` + tc.client + `}]}`))
			var ve *ips.ValidationError
			if !errors.As(err, &ve) || !slices.Contains(ve.Problems, tc.want) {
				t.Errorf("got %v, want the problem %v", err, tc.want)
			}
		})
	}
}

// TestReferralLifecycle: a referral is accepted (enrolled) or declined;
// a closed client's new referral opens a new episode; a referral of a
// client in the program changes nothing.
func TestReferralLifecycle(t *testing.T) {
	d := ips.MustDate
	src := &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-9"}
	c := &ips.Client{ID: "c1", Status: ips.ClientReferred, ReferredOn: d("2026-11-02")}

	var ve *ips.ValidationError
	if err := c.Accept(d("2026-11-01")); !errors.As(err, &ve) || ve.Problems[0].Path != "enrolledOn" {
		t.Errorf("accept before the referral: %v; want an enrolledOn problem", err)
	}
	if err := c.Accept(d("2026-11-10")); err != nil || c.Status != ips.ClientActive || c.EnrolledOn != d("2026-11-10") {
		t.Fatalf("accept: %v, client %+v", err, c)
	}
	if err := c.Accept(d("2026-11-11")); !errors.Is(err, ips.ErrNotReferred) {
		t.Errorf("accept of an active client: %v; want ErrNotReferred", err)
	}
	if got := c.Refer(d("2026-12-01"), src); got != ips.ReferralIgnored || c.Status != ips.ClientActive || len(c.PastEpisodes) != 0 {
		t.Errorf("referral of an active client: %v, client %+v; want nothing changed", got, c)
	}

	c.Status, c.ClosedOn, c.ClosedReason = ips.ClientClosed, d("2027-03-31"), "working steadily"
	if got := c.Refer(d("2027-03-01"), src); got != ips.ReferralIgnored || c.Status != ips.ClientClosed {
		t.Errorf("referral dated before the closure: %v; want it ignored", got)
	}
	if got := c.Refer(d("2027-08-15"), src); got != ips.ReferralReopened {
		t.Fatalf("referral of a closed client: %v; want a new episode", got)
	}
	want := ips.Episode{ReferredOn: d("2026-11-02"), EnrolledOn: d("2026-11-10"), ClosedOn: d("2027-03-31"), ClosedReason: "working steadily"}
	if len(c.PastEpisodes) != 1 || *c.PastEpisodes[0] != want {
		t.Errorf("past episodes %+v; want %+v", c.PastEpisodes, want)
	}
	if c.Status != ips.ClientReferred || c.ReferredOn != d("2027-08-15") || c.Referral != src || !c.EnrolledOn.IsZero() || !c.ClosedOn.IsZero() || c.ClosedReason != "" || !c.Rereferred() {
		t.Errorf("client after re-referral %+v; want referred on the new date, nothing else of the old episode", c)
	}
	if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{c}}); err != nil {
		t.Errorf("re-referred client does not validate: %v", err)
	}

	if err := c.Decline(d("2027-08-20"), ""); !errors.As(err, &ve) {
		t.Errorf("decline without a reason: %v; want a problem", err)
	}
	if err := c.Decline(d("2027-08-20"), "did not want the service now"); err != nil || c.Status != ips.ClientClosed || !c.EnrolledOn.IsZero() || c.ClosedOn != d("2027-08-20") {
		t.Fatalf("decline: %v, client %+v", err, c)
	}
	if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{c}}); err != nil {
		t.Errorf("declined client does not validate: %v", err)
	}
	if got := c.Enrollments(); len(got) != 1 {
		t.Errorf("Enrollments() of a client enrolled once and declined once: %+v", got)
	}
	// The declined referral becomes an episode of its own when the client
	// is referred again.
	if c.Refer(d("2028-01-05"), nil) != ips.ReferralReopened || len(c.PastEpisodes) != 2 || !c.PastEpisodes[1].EnrolledOn.IsZero() {
		t.Errorf("re-referral after a decline: %+v", c.PastEpisodes)
	}
	if err := ips.Validate(&ips.Caseload{Clients: []*ips.Client{c}}); err != nil {
		t.Errorf("client with a declined past episode does not validate: %v", err)
	}
}
