package ips

import (
	"errors"
	"fmt"
)

// The enrollment lifecycle of a client, one episode at a time:
//
//	referral ──▶ referred ──accept──▶ active ⇄ on-hold ──▶ closed
//	                 └──────decline─────────────────────────▶ closed (not enrolled)
//
// A referral of a closed client opens a new episode: the closed one moves
// to PastEpisodes and the client is referred again. A referral of a client
// who is referred, active or on hold changes nothing: they are in the
// program already.

// ErrNotReferred is returned by Accept and Decline for a client who is not
// waiting for acceptance.
var ErrNotReferred = errors.New("the client is not referred (waiting for acceptance)")

// ReferralResult says what a referral did to an existing client.
type ReferralResult int

const (
	// ReferralIgnored: the client is referred, active or on hold (in the
	// program already), or the referral predates the closure; nothing
	// changed.
	ReferralIgnored ReferralResult = iota
	// ReferralReopened: the client was closed; the closed episode moved to
	// PastEpisodes and the client is referred again.
	ReferralReopened
)

// Refer records a new referral of an existing client, on the referral
// date on from src (nil when not from an EHR). Only a closed client
// changes (see ReferralResult), and only by a referral dated on or after
// the closure: one dated before it was made while the client was in the
// program (read late), and opens nothing.
func (c *Client) Refer(on Date, src *ReferralSource) ReferralResult {
	if c.EffectiveStatus() != ClientClosed || on.Before(c.ClosedOn) {
		return ReferralIgnored
	}
	past := c.CurrentEpisode()
	c.PastEpisodes = append(c.PastEpisodes, &past)
	c.Status = ClientReferred
	c.ReferredOn, c.Referral = on, src
	c.EnrolledOn, c.ClosedOn, c.ClosedReason = Date{}, Date{}, ""
	return ReferralReopened
}

// Accept enrolls a referred client on the day a specialist accepted them
// onto the caseload: status active, EnrolledOn set. It fails with
// ErrNotReferred unless the client is referred, and with a *ValidationError
// when the date is before the referral (paths relative to the client).
func (c *Client) Accept(on Date) error {
	if st := c.EffectiveStatus(); st != ClientReferred {
		return fmt.Errorf("%w: status is %s", ErrNotReferred, st)
	}
	if on.IsZero() {
		return (&problems{{Path: "enrolledOn", Message: "is required: the day the client was accepted onto the caseload"}}).err()
	}
	if !c.ReferredOn.IsZero() && on.Before(c.ReferredOn) {
		return (&problems{{Path: "enrolledOn", Message: "is before referredOn"}}).err()
	}
	c.Status, c.EnrolledOn = ClientActive, on
	return nil
}

// Decline closes a referral without enrollment (the person did not want
// the service, or could not be reached): status closed, ClosedOn and
// ClosedReason set, no EnrolledOn. A declined referral is not service and
// counts in no quarter. It fails like Accept.
func (c *Client) Decline(on Date, reason string) error {
	if st := c.EffectiveStatus(); st != ClientReferred {
		return fmt.Errorf("%w: status is %s", ErrNotReferred, st)
	}
	var ps problems
	if on.IsZero() {
		ps.add("closedOn", "is required: the day the referral was closed")
	}
	if !c.ReferredOn.IsZero() && on.Before(c.ReferredOn) {
		ps.add("closedOn", "is before referredOn")
	}
	if reason == "" {
		ps.add("closedReason", "is required: why the referral was closed without enrollment")
	}
	if err := ps.err(); err != nil {
		return err
	}
	c.Status, c.EnrolledOn, c.ClosedOn, c.ClosedReason = ClientClosed, Date{}, on, reason
	return nil
}

// KeepHistory gives c, a new version of a stored client written without
// its history, what the store holds of it: the earlier episodes when c
// lists none, and the referral's source when c names none for the same
// referral date. A file or request written without episodes thereby does
// not erase them. Validate the result: a stale version may not fit the
// history (its episode overlapping the kept ones).
func (c *Client) KeepHistory(stored *Client) {
	if stored == nil {
		return
	}
	if c.PastEpisodes == nil {
		for _, e := range stored.PastEpisodes {
			ec := *e
			ec.Referral = clonePtr(e.Referral)
			c.PastEpisodes = append(c.PastEpisodes, &ec)
		}
	}
	if c.Referral == nil && stored.Referral != nil && c.ReferredOn == stored.ReferredOn {
		c.Referral = clonePtr(stored.Referral)
	}
}
