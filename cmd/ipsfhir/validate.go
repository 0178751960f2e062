package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/ipsfhir/ipsfhir/mappings"
)

func runValidate(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "[--json] [--ndjson] [--must-support] FILE...",
		`Checks FHIR R4 JSON files (a resource or a Bundle) against base R4 and, for
resources that name an ipsfhir profile in meta.profile, against that profile
with everything it inherits (ODH, US Core, SDOH Clinical Care: cardinalities,
fixed and pattern values, required bindings, slices). A resource that names
one of those base profiles itself is checked against it too.
A file whose name ends in .ndjson (FHIR Bulk Data output), or any file with
--ndjson, holds one resource per line, and each line is checked on its own
and named FILE:LINE.
For each invalid file or line it prints a FHIR OperationOutcome naming every
problem and its path; a one-line verdict per file or line goes to standard
error.
With --must-support it also lists, as information, the must-support elements
of those profiles that a resource leaves out; they never make it invalid.
Exit 0 when every file is valid, 1 when any is invalid, 2 when any cannot be
read or is not FHIR JSON at all.`, stderr)
	asJSON := fs.Bool("json", false, "print one JSON array of {file, valid, outcome} for all files instead")
	ndjson := fs.Bool("ndjson", false, "read every FILE as NDJSON, one resource per line (implied by a .ndjson name)")
	mustSupport := fs.Bool("must-support", false, "also list the must-support elements a resource leaves out (information, never invalid)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "ipsfhir validate: name at least one FILE (or - for standard input)")
		fs.Usage()
		return exitUsage
	}
	v, err := mappings.NewValidator()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir validate: load profiles: %v\n", err)
		return exitUsage
	}
	type result struct {
		File    string          `json:"file"`
		Valid   bool            `json:"valid"`
		Error   string          `json:"error,omitempty"`
		Outcome json.RawMessage `json:"outcome,omitempty"`
	}
	var results []result
	code := exitOK
	var units []unit
	for _, name := range fs.Args() {
		data, err := readInput(name, stdin)
		if err != nil {
			results = append(results, result{File: name, Error: fileError(err)})
			fmt.Fprintf(stderr, "%s: unreadable: %s\n", name, fileError(err))
			code = exitUsage
			continue
		}
		if *ndjson || strings.HasSuffix(name, ".ndjson") {
			lines := ndjsonLines(name, data)
			if len(lines) == 0 {
				fmt.Fprintf(stderr, "%s: valid (no resources)\n", name)
			}
			units = append(units, lines...)
			continue
		}
		units = append(units, unit{name, data})
	}
	for _, u := range units {
		name, data := u.name, u.data
		issues, err := v.ValidateJSON(data)
		if err != nil {
			results = append(results, result{File: name, Error: err.Error()})
			fmt.Fprintf(stderr, "%s: not FHIR JSON: %v\n", name, err)
			code = exitUsage
			continue
		}
		if *mustSupport {
			gaps, err := v.MustSupportGaps(data)
			if err != nil {
				fmt.Fprintf(stderr, "ipsfhir validate: %s: %v\n", name, err)
				return exitUsage // ValidateJSON read the same data: cannot happen
			}
			issues = append(issues, gaps...)
		}
		oo := mappings.OperationOutcomeJSON(issues)
		valid := !mappings.HasErrors(issues)
		results = append(results, result{File: name, Valid: valid, Outcome: oo})
		if valid {
			fmt.Fprintf(stderr, "%s: valid%s\n", name, warningsNote(issues))
			if *mustSupport && len(issues) > 0 && !*asJSON {
				fmt.Fprintf(stdout, "%s\n", oo)
			}
			continue
		}
		if code == exitOK {
			code = exitFindings
		}
		fmt.Fprintf(stderr, "%s: invalid (%s)\n", name, countIssues(issues))
		if !*asJSON {
			fmt.Fprintf(stdout, "%s\n", oo)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			fmt.Fprintf(stderr, "ipsfhir validate: %v\n", err)
			return exitFindings
		}
	}
	return code
}

// unit is one document to validate: a file, or a line of an NDJSON file.
type unit struct {
	name string
	data []byte
}

// ndjsonLines splits NDJSON into its non-blank lines, named FILE:LINE.
func ndjsonLines(name string, data []byte) []unit {
	var out []unit
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		out = append(out, unit{fmt.Sprintf("%s:%d", name, i+1), line})
	}
	return out
}

func countIssues(issues []mappings.Issue) string {
	var errs, warns, notes int
	for _, i := range issues {
		switch i.Severity {
		case "error", "fatal":
			errs++
		case "warning":
			warns++
		case "information":
			notes++
		}
	}
	s := fmt.Sprintf("%d error", errs)
	if errs != 1 {
		s += "s"
	}
	if warns > 0 {
		s += fmt.Sprintf(", %d warning", warns)
		if warns != 1 {
			s += "s"
		}
	}
	if notes > 0 {
		s += fmt.Sprintf(", %d must-support element", notes)
		if notes != 1 {
			s += "s"
		}
		s += " left out"
	}
	return s
}

func warningsNote(issues []mappings.Issue) string {
	for _, i := range issues {
		if i.Severity == "warning" || i.Severity == "information" {
			return " (" + countIssues(issues) + ")"
		}
	}
	return ""
}
