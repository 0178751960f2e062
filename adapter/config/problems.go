package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Problem is one thing wrong with a configuration, at a key path such as
// "connections[0].auth.type". Message says what is wrong without quoting the
// value: the value may be a secret someone pasted in the wrong place.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	// Line is the line of the file the key is on (or of its nearest
	// enclosing key, for a key that is missing), 0 when unknown.
	Line int `json:"line,omitempty"`
}

func (p Problem) String() string {
	s := p.Message
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

// ValidationError rejects a configuration as a whole and lists every
// problem found, so one run shows everything to fix.
type ValidationError struct {
	// File is the file the configuration came from, "" for Parse.
	File     string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	heading := "invalid configuration"
	if e.File != "" {
		heading += " " + e.File
	}
	return ips.ProblemReport(heading, e.Problems)
}

// problems collects Problems while walking a configuration.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was found, or a ValidationError with the
// problems deduplicated and in path order, so output is stable.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	seen := map[Problem]bool{}
	var out []Problem
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Problem) int { return ips.ComparePaths(a.Path, b.Path) })
	return &ValidationError{Problems: out}
}

// covered reports whether path sits on or under a path that already has a
// problem: a key the decoder rejected was left at its default, and a rule
// problem about it would be noise.
func (ps problems) covered(path string) bool {
	for _, p := range ps {
		if under(path, p.Path) {
			return true
		}
	}
	return false
}

// under reports whether path is parent or below it.
func under(path, parent string) bool {
	return path == parent || parent == "" ||
		strings.HasPrefix(path, parent+".") || strings.HasPrefix(path, parent+"[")
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
