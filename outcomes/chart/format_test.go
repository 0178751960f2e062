package chart

import (
	"testing"

	"github.com/ipsfhir/ipsfhir/outcomes"
)

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{formatPct(41.25), "41.3%"},
		{formatPct(41.24), "41.2%"},
		{formatPct(50), "50.0%"},
		{formatPct(0), "0.0%"},
		{formatPct(-0.01), "0.0%"},
		{formatPct(100), "100.0%"},
		{formatCount(0), "0"},
		{formatCount(999), "999"},
		{formatCount(1000), "1,000"},
		{formatCount(1234567), "1,234,567"},
		{formatCount(-1234), "-1,234"},
		{formatMoney(62540, "USD"), "USD 62,540.00"},
		{formatMoney(1234.565, "USD"), "USD 1,234.57"},
		{formatMoney(0.5, "EUR"), "EUR 0.50"},
		{formatWage(16.25, "USD"), "USD 16.25 an hour"},
		{formatDays(1), "1 day"},
		{formatDays(12), "12 days"},
		{formatDays(22.5), "22.5 days"},
		{formatDays(0), "0 days"},
		{countCell(outcomes.Count{Value: 1200, State: outcomes.Exact}), "1,200"},
		{countCell(outcomes.Count{Value: 7, State: outcomes.Masked}), "withheld"},
		{countCell(outcomes.Count{Value: 30, State: outcomes.AtLeast}), "at least 30"},
		{countCell(outcomes.Count{}), "none"},
		{scoreCell(kindRate, outcomes.Score{Value: 0.4125, State: outcomes.Exact}), "41.3%"},
		{scoreCell(kindRate, outcomes.Score{Value: 0.4, State: outcomes.Masked}), "withheld"},
		{scoreCell(kindRate, outcomes.Score{}), "none"},
		{scoreCell(kindWage, outcomes.Score{Value: 16, Unit: "USD/h", State: outcomes.Exact}), "USD 16.00 an hour"},
		{scoreCell(kindMoney, outcomes.Score{Value: 62540, Unit: "USD", State: outcomes.Exact}), "USD 62,540.00"},
		{scoreCell(kindDays, outcomes.Score{Value: 17, Unit: "d", State: outcomes.Exact}), "17 days"},
		{scoreCell(kindWage, outcomes.Score{State: outcomes.Unsupported}), "not available"},
		{countOf(nil), "withheld"},
		{countOf(ip(4321)), "4,321"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
