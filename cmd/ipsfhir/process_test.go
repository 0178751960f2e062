package main

import (
	"os"
	"testing"
)

// asCLI, set in a child's environment, makes the test binary run as the
// ipsfhir command instead of running tests. Tests that must kill a real
// process (as an operator's crash would) run this binary that way rather
// than compiling ipsfhir again: a separate `go build` cost CI about two
// minutes, since it shares nothing with the race-built test binary.
const asCLI = "IPSFHIR_TEST_RUN_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		return
	}
	// Children started with exec.Command inherit the environment, so every
	// child of a test runs as the CLI.
	if err := os.Setenv(asCLI, "1"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// buildBinary returns the path of an ipsfhir executable for a test to run
// and kill as a real process: this test binary, which runs as the CLI in a
// child (see asCLI), built with the same flags (-race in CI) as the tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return bin
}
