package store

import "time"

// LoadProgress is how far a connection's initial load has come: the whole
// caseload queued for it when it was first enabled (or enabled again after
// being disabled; see SeedConnections). It holds counts and times only.
type LoadProgress struct {
	// Total is how many outbox items the connection had when it was
	// seeded: every client.
	Total int
	// Done is how many of those have left the outbox since: pushed, or
	// gone to dead letters (a dead letter is done with as far as the load
	// goes; it shows among the dead letters, and a replay is a new item,
	// not part of the load).
	Done int
	// Started is when the connection was seeded; Finished when the last of
	// the load's items left the outbox (zero while it runs).
	Started, Finished time.Time
	// Rate is items done per second since Started (over Finished-Started
	// once finished); 0 while nothing is done.
	Rate float64
	// Remaining estimates the time left at Rate: 0 once finished, and
	// unknown (Estimated false) while nothing is done yet.
	Remaining time.Duration
	Estimated bool
}

// NewLoadProgress works out the rate and the estimate from what a store
// keeps: the load's total, the items of it still pending, when it started
// and finished (zero while running), as of now. Done never goes below 0
// nor above Total.
func NewLoadProgress(total, pending int, started, finished, now time.Time) LoadProgress {
	p := LoadProgress{Total: total, Started: started, Finished: finished}
	if !finished.IsZero() {
		p.Done = total
		pending = 0
		now = finished
	} else {
		p.Done = min(max(total-pending, 0), total)
	}
	if elapsed := now.Sub(started); elapsed > 0 && p.Done > 0 {
		p.Rate = float64(p.Done) / elapsed.Seconds()
	}
	switch {
	case !finished.IsZero() || p.Done >= total:
		p.Estimated = true
	case p.Rate > 0:
		p.Remaining = time.Duration(float64(total-p.Done) / p.Rate * float64(time.Second))
		p.Estimated = true
	}
	return p
}
