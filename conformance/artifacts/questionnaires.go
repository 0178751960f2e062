package artifacts

import (
	"fmt"
	"io/fs"
	"slices"
)

// Questionnaires reads the published Questionnaires (DirQuestionnaires), by
// path.
func Questionnaires() ([]Artifact, error) { return loadDir(files, DirQuestionnaires) }

// loadDir reads the artifacts of one directory of a tree laid out like FS.
func loadDir(fsys fs.FS, dir string) ([]Artifact, error) {
	names, err := fs.Glob(fsys, dir+"/*.json")
	if err != nil {
		return nil, fmt.Errorf("artifacts: list %s: %w", dir, err)
	}
	slices.Sort(names)
	out := make([]Artifact, 0, len(names))
	for _, p := range names {
		a, err := read(fsys, p)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
