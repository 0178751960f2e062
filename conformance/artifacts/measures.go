package artifacts

// Measures reads the published Measures (DirMeasures), by path.
func Measures() ([]Artifact, error) { return loadDir(files, DirMeasures) }
