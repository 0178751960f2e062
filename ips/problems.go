package ips

import (
	"cmp"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with an input, at a path such as
// "clients[3].jobs[0].hoursPerWeek". Message names what is wrong without
// quoting the value, which may be patient data.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError rejects an input as a whole and lists every problem found.
type ValidationError struct {
	Problems []Problem
	// Err is a sentinel for inputs that could not be read at all (ErrNotJSON,
	// ErrTooLarge), so callers can tell unreadable from invalid.
	Err error
}

// Unwrap lets errors.Is find ErrNotJSON and ErrTooLarge.
func (e *ValidationError) Unwrap() error { return e.Err }

// Sentinels wrapped by ValidationError for inputs that cannot be read.
var (
	ErrNotJSON  = errors.New("not valid JSON")
	ErrTooLarge = errors.New("input too large")
)

func (e *ValidationError) Error() string { return ProblemReport("invalid caseload", e.Problems) }

// ProblemReport renders a heading, the number of problems and one indented
// line per problem: the shape every "rejected whole" error in ipsfhir uses
// (caseloads, configuration, FHIR read back).
func ProblemReport[P fmt.Stringer](heading string, problems []P) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem", heading, len(problems))
	if len(problems) != 1 {
		b.WriteByte('s')
	}
	for _, p := range problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems while walking an input.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was found, or a ValidationError with the
// problems sorted by path so output is stable.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sorted := append([]Problem(nil), ps...)
	sort.SliceStable(sorted, func(i, j int) bool { return ComparePaths(sorted[i].Path, sorted[j].Path) < 0 })
	return &ValidationError{Problems: sorted}
}

// joinPath renders JSON-pointer tokens as a readable path: a.b[2].c.
func joinPath(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		if isIndex(t) {
			b.WriteString("[" + t + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	return b.String()
}

func isIndex(t string) bool {
	if t == "" {
		return false
	}
	for _, r := range t {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func child(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// ComparePaths orders problem paths as a reader expects: clients[2] before
// clients[10], then field names alphabetically. Configuration problems use
// the same order.
func ComparePaths(a, b string) int {
	for a != "" && b != "" {
		ta, ra := nextToken(a)
		tb, rb := nextToken(b)
		if ta != tb {
			na, errA := strconv.Atoi(ta)
			nb, errB := strconv.Atoi(tb)
			if errA == nil && errB == nil {
				return cmp.Compare(na, nb)
			}
			return cmp.Compare(ta, tb)
		}
		a, b = ra, rb
	}
	return cmp.Compare(len(a), len(b))
}

// nextToken splits "a.b[2].c" into "a" and "b[2].c", and "[2].c" into "2" and ".c".
func nextToken(p string) (tok, rest string) {
	p = strings.TrimPrefix(p, ".")
	if strings.HasPrefix(p, "[") {
		end := strings.IndexByte(p, ']')
		if end < 0 {
			return p, ""
		}
		return p[1:end], p[end+1:]
	}
	end := strings.IndexAny(p, ".[")
	if end < 0 {
		return p, ""
	}
	return p[:end], p[end:]
}
