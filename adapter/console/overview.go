package console

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
)

// overviewData is the overview page: every configured connection, and
// when the figures were read.
type overviewData struct {
	At          time.Time
	Connections []connectionRow
	// Totals across connections, for the summary line.
	Failing, DeadLetters, Conflicts int
}

// connectionRow is one connection on the overview. The state, times and
// failures are the sync runner's (what /readyz shows); the counts and the
// initial load are the store's (what /admin/connections, /admin/dead-letters,
// /admin/conflicts and /metrics read).
type connectionRow struct {
	// Now is when the figures were read.
	Now     time.Time
	Name    string
	Enabled bool
	// State is disabled, starting, ready or failing.
	State    string
	Since    time.Time
	Failures []syncer.Failure
	LastPull time.Time
	LastPush time.Time
	// Pending items in the outbox, and when the oldest was first queued
	// (zero with none).
	Pending       int
	OldestPending time.Time
	DeadLetters   int
	Conflicts     int
	// Load is the first load's progress, nil when none was recorded.
	Load *store.LoadProgress
}

// overview reads every connection's figures.
func (c *console) overview(ctx context.Context) (*overviewData, error) {
	now := c.now()
	depth, err := c.store.OutboxDepth(ctx)
	if err != nil {
		return nil, err
	}
	oldest, err := c.store.OldestPending(ctx)
	if err != nil {
		return nil, err
	}
	dead, err := c.store.DeadLetters(ctx, "")
	if err != nil {
		return nil, err
	}
	open, err := c.store.Conflicts(ctx, "", false)
	if err != nil {
		return nil, err
	}
	status := map[string]syncer.ConnectionStatus{}
	for _, s := range c.status() {
		status[s.Name] = s
	}
	ov := &overviewData{At: now}
	for _, cn := range c.conns() {
		row := connectionRow{Now: now, Name: cn.Name, Enabled: cn.Enabled, State: "disabled", Pending: depth[cn.Name], OldestPending: oldest[cn.Name]}
		if cn.Enabled {
			row.State = string(syncer.StateStarting)
			if s, ok := status[cn.Name]; ok {
				row.State, row.Since, row.Failures, row.LastPull, row.LastPush = string(s.State), s.Since, s.Failures, s.LastPull, s.LastPush
			}
		}
		for _, d := range dead {
			if d.Connection == cn.Name {
				row.DeadLetters++
			}
		}
		for _, cf := range open {
			if cf.Connection == cn.Name {
				row.Conflicts++
			}
		}
		lp, err := c.store.LoadProgress(ctx, cn.Name)
		switch {
		case err == nil:
			row.Load = &lp
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		if row.State == string(syncer.StateFailing) {
			ov.Failing++
		}
		ov.DeadLetters += row.DeadLetters
		ov.Conflicts += row.Conflicts
		ov.Connections = append(ov.Connections, row)
	}
	// What needs attention first: failing, then starting, ready and
	// disabled connections, each by name.
	rank := map[string]int{string(syncer.StateFailing): 0, string(syncer.StateStarting): 1, string(syncer.StateReady): 2, "disabled": 3}
	sort.SliceStable(ov.Connections, func(i, j int) bool {
		a, b := ov.Connections[i], ov.Connections[j]
		if rank[a.State] != rank[b.State] {
			return rank[a.State] < rank[b.State]
		}
		return a.Name < b.Name
	})
	return ov, nil
}

// Percent is how much of the load is done, 0 to 100.
func (r connectionRow) Percent() int {
	if r.Load == nil || r.Load.Total == 0 {
		return 100
	}
	return r.Load.Done * 100 / r.Load.Total
}

// LoadText says how far the first load is, in words.
func (r connectionRow) LoadText() string {
	l := r.Load
	if l == nil {
		return "not started"
	}
	if l.Total == 0 {
		return "nothing to load: the store held no clients when the connection was enabled"
	}
	if !l.Finished.IsZero() {
		return fmt.Sprintf("done: %d of %d, finished %s", l.Done, l.Total, l.Finished.UTC().Format("2006-01-02 15:04 UTC"))
	}
	s := fmt.Sprintf("%d of %d (%d%%)", l.Done, l.Total, r.Percent())
	if l.Rate > 0 {
		s += fmt.Sprintf(", %.1f clients/s", l.Rate)
	}
	if l.Estimated && l.Done < l.Total {
		s += ", about " + duration(l.Remaining) + " left"
	} else if !l.Estimated {
		s += ", time left not known yet"
	}
	return s
}

// ago says how long before now t was, or "never".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return duration(d) + " ago"
}

// age is how long ago t was, without "ago": the age of the oldest pending
// item.
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return duration(max(now.Sub(t), 0))
}

// duration is d rounded for people: 45s, 12m, 3h10m, 2d4h.
func duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) - 60*h; m > 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	days := int(d.Hours()) / 24
	if h := int(d.Hours()) - 24*days; h > 0 {
		return fmt.Sprintf("%dd%dh", days, h)
	}
	return fmt.Sprintf("%dd", days)
}
