package outcomes

import (
	"errors"
	"fmt"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Audience is who a quarter's reports are for.
type Audience int

const (
	// AudienceProgram is the program's own report (the director's table,
	// HTML and PNG): every client the program served in the quarter is
	// counted, whatever they agreed to share with HIEs. It must not leave
	// the program for an HIE.
	AudienceProgram Audience = iota + 1
	// AudienceHIE is what leaves for an HIE (MeasureReports served to hie
	// callers, `ipsfhir report --for hie`, the inputs of an aggregation):
	// only clients whose consent allows HIE reporting are counted.
	AudienceHIE
)

func (a Audience) String() string {
	switch a {
	case AudienceProgram:
		return "program"
	case AudienceHIE:
		return "hie"
	}
	return "unknown"
}

// Reasons a client is left out of a quarter's counts (codes of the
// ips-excluded extension's reason). Each client left out has exactly one:
// the first of these, in this order, that applies.
const (
	// ExcludedNoEnrollmentDate: no enrollment date is recorded (in any
	// episode), so the client cannot be placed on the caseload of any
	// quarter; a referral closed without enrollment is one.
	ExcludedNoEnrollmentDate = "no-enrollment-date"
	// ExcludedReferred: status "referred": referred to the program but not
	// (yet) accepted onto a specialist's caseload, and no earlier episode
	// in the quarter. IPS counts the caseload served, and a referral is not
	// service.
	ExcludedReferred = "referred-not-enrolled"
	// ExcludedEnrolledAfter: enrolled after the quarter's last day.
	ExcludedEnrolledAfter = "enrolled-after-quarter"
	// ExcludedClosedBefore: closed before the quarter's first day.
	ExcludedClosedBefore = "closed-before-quarter"
	// ExcludedNoHIEConsent: served in the quarter, but their consent does
	// not allow HIE reporting (AudienceHIE only).
	ExcludedNoHIEConsent = "no-hie-consent"
)

// excludedReasons lists the reasons in order; the program's own reports
// use all but the last.
var excludedReasons = []string{ExcludedNoEnrollmentDate, ExcludedReferred, ExcludedEnrolledAfter, ExcludedClosedBefore, ExcludedNoHIEConsent}

var excludedTitles = map[string]string{
	ExcludedNoEnrollmentDate: "no enrollment date recorded",
	ExcludedReferred:         "referred, not enrolled (status referred)",
	ExcludedEnrolledAfter:    "enrolled after the quarter",
	ExcludedClosedBefore:     "closed before the quarter",
	ExcludedNoHIEConsent:     "no consent to HIE reporting",
}

// ExcludedReasons lists the reasons a report of an audience states, in
// the order reports list them.
func ExcludedReasons(a Audience) []string {
	if a == AudienceHIE {
		return excludedReasons
	}
	return excludedReasons[:len(excludedReasons)-1]
}

// Exclusion is how many clients a report left out for one reason. Value
// is the count when State is Exact; State is Masked when it is withheld.
type Exclusion struct {
	Reason string
	Value  int
	State  State
}

// leftOut says why a client is not on the caseload served in the quarter,
// or "" when they are: one of their enrollment episodes (ips.Client.
// Enrollments: enrolled, not merely referred) began on or before the
// quarter's last day and did not close before its first.
func leftOut(c *ips.Client, q window) string {
	ens := c.Enrollments()
	if served(ens, q) {
		return ""
	}
	switch {
	case len(ens) == 0 && c.EffectiveStatus() == ips.ClientReferred:
		return ExcludedReferred
	case len(ens) == 0:
		// Never enrolled: no date, or a referral closed without
		// enrollment.
		return ExcludedNoEnrollmentDate
	case c.EffectiveStatus() == ips.ClientReferred:
		// Referred again, waiting; the earlier episodes missed the
		// quarter.
		return ExcludedReferred
	case q.End().Before(ens[0].EnrolledOn):
		return ExcludedEnrolledAfter
	}
	return ExcludedClosedBefore
}

// served reports whether any of the enrollments overlaps the window.
func served(ens []ips.Episode, q window) bool {
	for _, e := range ens {
		if !q.End().Before(e.EnrolledOn) && (e.ClosedOn.IsZero() || !e.ClosedOn.Before(q.Start())) {
			return true
		}
	}
	return false
}

// exclusions are the counts of clients left out as a report shows them.
//
// They are not part of the suppression audit, and they are linked to what
// is: the served count D plus every reason's count is the number of
// clients in the store, the same every quarter, and the clients closed
// before a quarter plus those served in it are everyone enrolled by its
// end, which grows by each quarter's E. So:
//
//   - an HIE's reports state the reasons and withhold every count, zeros
//     included: a count next to the consenting D would also give, with the
//     program's own report, the non-consenting clients' figures;
//   - the program's own report shows a count of 0 or of at least the
//     threshold, withholds one from 1 to threshold-1, and withholds every
//     count but zeros when the program's D is withheld, so that D is never
//     the store's total minus counts shown.
func (c *computed) exclusions() []Exclusion {
	var out []Exclusion
	dHidden := c.hidden[0][cellD]
	for _, reason := range ExcludedReasons(c.audience) {
		n := c.excluded[reason]
		e := Exclusion{Reason: reason, Value: n, State: Exact}
		switch {
		case c.audience == AudienceHIE:
			e = Exclusion{Reason: reason, State: Masked}
		case n == 0:
		case n < c.threshold || dHidden:
			e = Exclusion{Reason: reason, State: Masked}
		}
		out = append(out, e)
	}
	return out
}

// validExclusions checks the exclusions a report read from JSON states.
func validExclusions(es []Exclusion) error {
	seen := map[string]bool{}
	for _, e := range es {
		if excludedTitles[e.Reason] == "" {
			return errors.New("not a reason ipsfhir leaves clients out for")
		}
		if seen[e.Reason] {
			return fmt.Errorf("reason %s is stated twice", e.Reason)
		}
		seen[e.Reason] = true
	}
	return nil
}
