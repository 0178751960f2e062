package store_test

import (
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

func TestNewLoadProgress(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		total, pending int
		finished, now  time.Time
		done           int
		rate           float64
		remaining      time.Duration
		estimated      bool
	}{
		{"nothing done yet", 100, 100, time.Time{}, t0.Add(time.Minute), 0, 0, 0, false},
		{"a quarter in a minute", 100, 75, time.Time{}, t0.Add(time.Minute), 25, 25.0 / 60, 3 * time.Minute, true},
		{"finished", 100, 0, t0.Add(10 * time.Minute), t0.Add(time.Hour), 100, 100.0 / 600, 0, true},
		{"nothing to load", 0, 0, t0, t0, 0, 0, 0, true},
		{"more pending than the total", 10, 12, time.Time{}, t0.Add(time.Minute), 0, 0, 0, false},
	} {
		p := store.NewLoadProgress(tc.total, tc.pending, t0, tc.finished, tc.now)
		if p.Total != tc.total || p.Done != tc.done || p.Estimated != tc.estimated ||
			p.Remaining.Round(time.Second) != tc.remaining || abs(p.Rate-tc.rate) > 1e-9 || !p.Started.Equal(t0) || !p.Finished.Equal(tc.finished) {
			t.Errorf("%s: %+v; want done %d, rate %v, remaining %v, estimated %v", tc.name, p, tc.done, tc.rate, tc.remaining, tc.estimated)
		}
	}
}

func abs(f float64) float64 { return max(f, -f) }
