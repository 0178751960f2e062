package artifacts

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

//go:embed codesystems/*.json valuesets/*.json profiles/*.json extensions/*.json questionnaires/*.json measures/*.json capabilities/*.json
var files embed.FS

// Directories of FS, by kind of artifact.
const (
	DirCodeSystems = "codesystems"
	DirValueSets   = "valuesets"
	DirProfiles    = "profiles"
	DirExtensions  = "extensions"
	// DirQuestionnaires holds Questionnaires (the IPS-25 fidelity scale).
	DirQuestionnaires = "questionnaires"
	// DirMeasures holds the Measures of the quarterly IPS outcome reports
	// (package outcomes computes their MeasureReports).
	DirMeasures = "measures"
	// DirCapabilities holds the adapter's own CapabilityStatements:
	// ipsfhir-server.json (what /fhir serves) and ipsfhir-client.json (what
	// the adapter uses of an EHR).
	DirCapabilities = "capabilities"
)

// Dirs lists the artifact directories in the order a loader should read them:
// code systems before the value sets that include them, value sets before the
// profiles that bind to them, extensions before the profiles that use them;
// then the artifacts that use all of those (the profile validator reads the
// first four and passes over the rest).
var Dirs = []string{DirCodeSystems, DirValueSets, DirExtensions, DirProfiles, DirQuestionnaires, DirMeasures, DirCapabilities}

// FS is the read-only tree of published artifacts (see the package doc for
// its layout).
func FS() fs.FS { return files }

// Artifact is one published resource: where it is in FS, what it is, and its
// JSON.
type Artifact struct {
	Path         string // in FS, e.g. "profiles/ips-goal.json"
	ResourceType string
	ID           string
	URL          string
	Version      string
	Data         []byte
}

// All reads every artifact, in Dirs order and by path within a directory.
func All() ([]Artifact, error) { return Load(files) }

// Load reads the artifacts of a tree laid out like FS. Tests use it to feed
// altered copies to the code that consumes artifacts.
func Load(fsys fs.FS) ([]Artifact, error) {
	var out []Artifact
	for _, dir := range Dirs {
		names, err := fs.Glob(fsys, dir+"/*.json")
		if err != nil {
			return nil, fmt.Errorf("artifacts: list %s: %w", dir, err)
		}
		slices.Sort(names)
		for _, p := range names {
			a, err := read(fsys, p)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

func read(fsys fs.FS, p string) (Artifact, error) {
	data, err := fs.ReadFile(fsys, p)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifacts: read %s: %w", p, err)
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		URL          string `json:"url"`
		Version      string `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Artifact{}, fmt.Errorf("artifacts: %s: %w", p, err)
	}
	if want := path.Base(p); head.ID+".json" != want {
		return Artifact{}, fmt.Errorf("artifacts: %s: id %q does not match the file name", p, head.ID)
	}
	return Artifact{Path: p, ResourceType: head.ResourceType, ID: head.ID, URL: head.URL, Version: head.Version, Data: data}, nil
}

// ByURL finds the artifact with a canonical URL; a "|version" suffix is
// ignored.
func ByURL(all []Artifact, url string) (Artifact, bool) {
	url, _, _ = strings.Cut(url, "|")
	for _, a := range all {
		if a.URL == url {
			return a, true
		}
	}
	return Artifact{}, false
}
