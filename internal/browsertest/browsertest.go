// Package browsertest finds what the browser tests need: Debian's chromium
// and axe-core from npm (the package.json in outcomes/chart/testdata/browser,
// which the chart page's and the console's tests share). Without them a test
// skips, unless IPSFHIR_REQUIRE_BROWSER=1 (as .ci/run sets), when it fails.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Setup returns the chromium binary and axe-core's script. dir is the
// directory of the package.json holding axe-core, relative to the test's
// package; axe-core is installed there on first use when npm is on the
// PATH, as the peer server's packages are, so the README's test command
// needs no step of its own.
func Setup(t testing.TB, dir string) (chrome string, axe []byte) {
	t.Helper()
	must := os.Getenv("IPSFHIR_REQUIRE_BROWSER") == "1"
	fail := func(format string, a ...any) {
		t.Helper()
		if must {
			t.Fatalf(format, a...)
		}
		t.Skipf(format+" (IPSFHIR_REQUIRE_BROWSER=1 makes this a failure)", a...)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chrome = p
			break
		}
	}
	if chrome == "" {
		fail("no chromium on the PATH")
	}
	axePath := filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
	if _, err := os.Stat(axePath); err != nil {
		if npm, lookErr := exec.LookPath("npm"); lookErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Logf("npm ci in %s: %v\n%s", dir, err, out)
			}
		}
	}
	axe, err := os.ReadFile(axePath)
	if err != nil {
		fail("axe-core is not installed (cd outcomes/chart/testdata/browser && npm ci): %v", err)
	}
	return chrome, axe
}
