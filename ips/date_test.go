package ips_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

func TestParseDate(t *testing.T) {
	valid := map[string]ips.Date{
		"2026-03-04": {Year: 2026, Month: time.March, Day: 4},
		"2024-02-29": {Year: 2024, Month: time.February, Day: 29}, // leap year
		"2000-02-29": {Year: 2000, Month: time.February, Day: 29}, // divisible by 400
		"2025-12-31": {Year: 2025, Month: time.December, Day: 31},
		"0999-01-02": {Year: 999, Month: time.January, Day: 2},
	}
	for s, want := range valid {
		got, err := ips.ParseDate(s)
		if err != nil || got != want {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("ParseDate(%q).String() = %q", s, got.String())
		}
	}
	invalid := []string{
		"2026-02-30", // no such day
		"2025-02-29", // not a leap year
		"2100-02-29", // century, not divisible by 400
		"2026-04-31",
		"2026-13-01",
		"2026-00-10",
		"03/04/2026",
		"2026-3-4",
		"20260304",
		"2026-03-04T00:00:00Z",
		" 2026-03-04",
		"",
	}
	for _, s := range invalid {
		d, err := ips.ParseDate(s)
		if err == nil {
			t.Errorf("ParseDate(%q) = %v, want an error", s, d)
			continue
		}
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("ParseDate(%q) error %q quotes the input", s, err)
		}
	}
}

func TestMustDatePanicsOnBadLiteral(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustDate(\"2026-02-30\") did not panic")
		}
	}()
	ips.MustDate("2026-02-30")
}

func TestZeroDate(t *testing.T) {
	var d ips.Date
	if !d.IsZero() || d.String() != "" {
		t.Errorf("zero Date: IsZero %v, String %q", d.IsZero(), d.String())
	}
	if ips.MustDate("2026-01-01").IsZero() {
		t.Error("a set date reports IsZero")
	}
}

func TestDateArithmetic(t *testing.T) {
	for _, c := range []struct {
		from string
		days int
		want string
	}{
		{"2024-02-28", 1, "2024-02-29"},
		{"2024-02-28", 2, "2024-03-01"},
		{"2025-02-28", 1, "2025-03-01"},
		{"2024-03-01", -1, "2024-02-29"},
		{"2025-12-31", 1, "2026-01-01"},
		{"2026-03-04", 30, "2026-04-03"}, // the IPS rapid-search window
		{"2026-03-04", 0, "2026-03-04"},
	} {
		if got := ips.MustDate(c.from).AddDays(c.days); got != ips.MustDate(c.want) {
			t.Errorf("%s + %d days = %s, want %s", c.from, c.days, got, c.want)
		}
	}
	a, b := ips.MustDate("2024-02-29"), ips.MustDate("2024-03-01")
	if !a.Before(b) || b.Before(a) || a.Before(a) {
		t.Error("Before is not a strict order")
	}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Error("Compare disagrees with the calendar")
	}
	if !a.Time().Equal(time.Date(2024, time.February, 29, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Time() = %v", a.Time())
	}
}

// TestDateOfUsesTheInstantsOwnZone: late evening in New York is already the
// next day in UTC, and the date someone was seen is the local one.
func TestDateOfUsesTheInstantsOwnZone(t *testing.T) {
	ny := time.FixedZone("EST", -5*3600)
	evening := time.Date(2026, time.March, 4, 22, 30, 0, 0, ny)
	if got := ips.DateOf(evening); got != ips.MustDate("2026-03-04") {
		t.Errorf("DateOf(%v) = %s, want 2026-03-04", evening, got)
	}
	if got := ips.DateOf(evening.UTC()); got != ips.MustDate("2026-03-05") {
		t.Errorf("DateOf(%v) = %s, want 2026-03-05", evening.UTC(), got)
	}
}

func TestDateJSON(t *testing.T) {
	type rec struct {
		Required ips.Date `json:"required"`
		Optional ips.Date `json:"optional,omitzero"`
	}
	for _, c := range []struct {
		in   rec
		want string
	}{
		{rec{Required: ips.MustDate("2024-02-29")}, `{"required":"2024-02-29"}`},
		{rec{Required: ips.MustDate("2026-03-04"), Optional: ips.MustDate("2026-12-31")}, `{"required":"2026-03-04","optional":"2026-12-31"}`},
		{rec{}, `{"required":null}`},
	} {
		b, err := json.Marshal(c.in)
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", c.in, b, err, c.want)
		}
		var back rec
		if err := json.Unmarshal(b, &back); err != nil || back != c.in {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", b, back, err, c.in)
		}
	}

	// null clears a date that was set.
	d := ips.MustDate("2026-03-04")
	if err := json.Unmarshal([]byte("null"), &d); err != nil || !d.IsZero() {
		t.Errorf("Unmarshal(null) = %v, %v; want the zero Date", d, err)
	}

	for _, bad := range []string{`"2026-02-30"`, `"03/04/2026"`, `20260304`, `true`, `{}`, `""`} {
		d := ips.MustDate("2026-03-04")
		err := json.Unmarshal([]byte(bad), &d)
		if err == nil {
			t.Errorf("Unmarshal(%s) accepted it as %v", bad, d)
			continue
		}
		if strings.Contains(err.Error(), strings.Trim(bad, `"`)) && bad != `""` {
			t.Errorf("Unmarshal(%s) error %q quotes the input", bad, err)
		}
	}
}
