package faultsuite

import (
	"os"
	"os/exec"
	"testing"

	"github.com/ipsfhir/ipsfhir/conformance/peer"
)

var buildDir string // set by the scenario tests (scenarios_test.go)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// needPeer skips t when node is missing, unless IPSFHIR_REQUIRE_PEER is
// set, as peer.StartForTest does.
func needPeer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv(peer.RequireEnv) == "" {
			t.Skipf("the fault suite needs the peer FHIR server, which needs node (Node.js >= 20) on PATH; set %s=1 to make this a failure", peer.RequireEnv)
		}
		t.Fatalf("node is not on PATH and %s is set: %v", peer.RequireEnv, err)
	}
}
