package ehr

import (
	"slices"
	"testing"
)

func TestTopStrings(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
		ok   bool
	}{
		{`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Goal"}}]}`, []string{"Bundle", "transaction"}, true},
		// Members before and between, nested ones naming the same keys.
		{`{"entry":[{"resourceType":"Goal","type":"x"}],"meta":{"type":"y"},"type":"batch","id":"1","resourceType":"Bundle"}`, []string{"Bundle", "batch"}, true},
		{`{"resourceType":"Bundle"}`, []string{"Bundle", ""}, true},
		{`{"resourceType":{"a":["b"]},"type":"batch"}`, []string{"", "batch"}, true},
		{`{"resourceType":7,"type":null}`, []string{"", ""}, true},
		{`{}`, []string{"", ""}, true},
		{`[{"resourceType":"Bundle"}]`, nil, false},
		{`"Bundle"`, nil, false},
		{``, nil, false},
		{`{"entry":[1,2,}`, nil, false},
		{`{"resourceType" "Bundle"}`, nil, false},
	} {
		got, ok := topStrings([]byte(tc.body), "resourceType", "type")
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("topStrings(%s) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
		}
	}
}

// TestTopStringsStopsOnceFound: what follows the keys is not read, so a
// large Bundle costs a few tokens (the reason for topStrings).
func TestTopStringsStopsOnceFound(t *testing.T) {
	got, ok := topStrings([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[this is not read`), "resourceType", "type")
	if !ok || !slices.Equal(got, []string{"Bundle", "transaction"}) {
		t.Errorf("got %q, %v", got, ok)
	}
}
