package ipstest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Sample decodes the checked-in sample caseload (SamplePath) and fails t if
// it is missing or invalid. Each call returns a fresh copy, so a test may
// modify it.
func Sample(t testing.TB) *ips.Caseload {
	t.Helper()
	path := SamplePath(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("sample caseload: %v", err)
	}
	defer f.Close()
	cl, err := ips.Decode(f)
	if err != nil {
		t.Fatalf("sample caseload %s: %v", path, err)
	}
	return cl
}

// SamplePath returns the path of testdata/caseload-sample.json under the
// module root, found by walking up from the working directory (a package's
// directory under go test) to go.mod.
func SamplePath(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("sample caseload: %v", err)
	}
	return filepath.Join(root, "testdata", "caseload-sample.json")
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}
