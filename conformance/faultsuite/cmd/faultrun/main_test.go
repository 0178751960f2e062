package main

import (
	"bytes"
	"strings"
	"testing"
)

// Usage errors exit 2 with a message, before anything is started.
func TestUsageErrors(t *testing.T) {
	t.Setenv("IPSFHIR_TEST_POSTGRES_DSN", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "oracle"}, "unknown -scenario"},
		{[]string{"-rate", "1.5"}, "-rate must be between 0 and 1"},
		{[]string{"-scenario", "pg2"}, "IPSFHIR_TEST_POSTGRES_DSN"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var out, errOut bytes.Buffer
		if code := realMain(t.Context(), tc.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("faultrun %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := realMain(t.Context(), []string{"-h"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "-soak") {
		t.Errorf("faultrun -h: exit %d, output %q", code, errOut.String())
	}
}
