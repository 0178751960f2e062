package fhirapi

import (
	"runtime/debug"
	"testing"
)

// TestSoftwareVersion: /fhir/metadata's software.version is the release
// set at build time, else what the build information says; "dev" only
// when it says nothing.
func TestSoftwareVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, "v1.3.0"},
		{"a clean checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "39a6906c0ffee1234567890abcdef"}, {Key: "vcs.modified", Value: "false"}}}, "0.0.0+39a6906c0ffe"},
		{"a changed checkout", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "39a6906c0ffee1234567890abcdef"}, {Key: "vcs.modified", Value: "true"}}}, "0.0.0+39a6906c0ffe.dirty"},
		{"nothing known", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := versionFromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	Version = "1.4.0-rc.1"
	defer func() { Version = "" }()
	if got := buildVersion(); got != "1.4.0-rc.1" {
		t.Errorf("with Version set at build time: %q", got)
	}
}
