package console

import (
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

func TestLoadText(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		load *store.LoadProgress
		want string
	}{
		{nil, "not started"},
		{&store.LoadProgress{Total: 0, Started: start, Finished: start, Estimated: true}, "nothing to load"},
		{&store.LoadProgress{Total: 10000, Done: 0, Started: start}, "0 of 10000 (0%), time left not known yet"},
		{&store.LoadProgress{Total: 10000, Done: 1200, Started: start, Rate: 0.15, Remaining: 2*time.Hour + 10*time.Minute, Estimated: true},
			"1200 of 10000 (12%), 0.1 clients/s, about 2h10m left"},
		{&store.LoadProgress{Total: 50, Done: 50, Started: start, Finished: start.Add(time.Minute), Rate: 0.8, Estimated: true},
			"done: 50 of 50, finished 2026-12-01 09:01 UTC"},
	} {
		if got := (connectionRow{Load: tc.load}).LoadText(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.load, got, tc.want)
		}
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		45 * time.Second:             "45s",
		12 * time.Minute:             "12m",
		3*time.Hour + 10*time.Minute: "3h10m",
		2 * time.Hour:                "2h",
		52 * time.Hour:               "2d4h",
		72 * time.Hour:               "3d",
		-5 * time.Second:             "-5s",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
	now := time.Now()
	if got := ago(now, now.Add(time.Minute)); got != "0s ago" {
		t.Errorf("a time in the future: %q", got)
	}
	if got := ago(now, time.Time{}); got != "never" {
		t.Errorf("zero time: %q", got)
	}
}
