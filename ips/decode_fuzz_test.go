package ips_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
)

// FuzzDecode holds Decode to its contract on any input: it never panics; it
// either returns a caseload or a *ValidationError listing at least one
// problem, never both; and whatever it accepts, Encode writes back in a form
// it accepts again, unchanged once normalized.
//
//	go test ./ips -run '^$' -fuzz FuzzDecode -fuzztime 3m
func FuzzDecode(f *testing.F) {
	sample, err := os.ReadFile(ipstest.SamplePath(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte(minimal))
	f.Add([]byte(`{"clients": []}`))
	invalid, _ := filepath.Glob(filepath.Join(invalidDir, "*.json"))
	for _, file := range invalid {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cl, err := ips.Decode(bytes.NewReader(data))
		if err != nil {
			if cl != nil {
				t.Fatalf("Decode returned a caseload and an error: %v", err)
			}
			var ve *ips.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Decode error is %T %q, want a *ips.ValidationError with problems", err, err)
			}
			return
		}
		if err := ips.Validate(cl); err != nil {
			t.Fatalf("Decode accepted a caseload Validate rejects: %v", err)
		}
		var buf bytes.Buffer
		if err := ips.Encode(&buf, cl); err != nil {
			t.Fatalf("Encode of a decoded caseload: %v", err)
		}
		again, err := ips.Decode(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("Decode rejects what Encode wrote from an accepted input: %v\nencoded:\n%s", err, buf.Bytes())
		}
		// Equal as the project compares caseloads: once normalized, so that
		// an empty list and an absent one count as the same.
		if diff := cmp.Diff(ips.Normalize(cl), ips.Normalize(again)); diff != "" {
			t.Fatalf("Encode then Decode changed the caseload (-first +second):\n%s", diff)
		}
	})
}
