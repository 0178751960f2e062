package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ipsfhir/ipsfhir/mappings"
)

func runValidate(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "[--json] FILE...",
		`Checks FHIR R4 JSON files (a resource or a Bundle) against base R4 and, for
resources that name an ipsfhir profile in meta.profile, against that profile.
For each invalid file it prints a FHIR OperationOutcome naming every problem
and its path; a one-line verdict per file goes to standard error.
Exit 0 when every file is valid, 1 when any is invalid, 2 when any cannot be
read or is not FHIR JSON at all.`, stderr)
	asJSON := fs.Bool("json", false, "print one JSON array of {file, valid, outcome} for all files instead")
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
	for _, name := range fs.Args() {
		data, err := readInput(name, stdin)
		if err != nil {
			results = append(results, result{File: name, Error: fileError(err)})
			fmt.Fprintf(stderr, "%s: unreadable: %s\n", name, fileError(err))
			code = exitUsage
			continue
		}
		issues, err := v.ValidateJSON(data)
		if err != nil {
			results = append(results, result{File: name, Error: err.Error()})
			fmt.Fprintf(stderr, "%s: not FHIR JSON: %v\n", name, err)
			code = exitUsage
			continue
		}
		oo := mappings.OperationOutcomeJSON(issues)
		valid := !mappings.HasErrors(issues)
		results = append(results, result{File: name, Valid: valid, Outcome: oo})
		if valid {
			fmt.Fprintf(stderr, "%s: valid%s\n", name, warningsNote(issues))
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

func countIssues(issues []mappings.Issue) string {
	var errs, warns int
	for _, i := range issues {
		switch i.Severity {
		case "error", "fatal":
			errs++
		case "warning":
			warns++
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
	return s
}

func warningsNote(issues []mappings.Issue) string {
	for _, i := range issues {
		if i.Severity == "warning" {
			return " (" + countIssues(issues) + ")"
		}
	}
	return ""
}
