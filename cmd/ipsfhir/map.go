package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

func runMap(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("map", "--in FILE [--out FILE] [--bundle-type collection|transaction] | --reverse --in FILE",
		`Maps an IPS caseload (the JSON format in docs/CASELOAD.md) to a FHIR R4 Bundle
of Goal, CarePlan, Observation and DocumentReference resources. With --reverse,
reads such a Bundle back into caseload JSON.

The input is checked whole first; if anything is wrong, every problem is listed
with its path and nothing is written. Output goes to --out (written atomically)
or standard output.`, stderr)
	in := fs.String("in", "", "input file, or - for standard input (required)")
	out := fs.String("out", "", "output file (default: standard output)")
	bundleType := fs.String("bundle-type", "collection", "collection (a file to review) or transaction (to POST to a FHIR server; every entry is a conditional update, so re-posting changes nothing)")
	reverse := fs.Bool("reverse", false, "read a FHIR Bundle and write caseload JSON")
	program := fs.String("program", "", "program id that scopes business identifiers (default: the caseload's program.id, else \"local\")")
	prapare := fs.Bool("prapare", false, "also emit the PRAPARE employment answer (LOINC 67875-5) for each employment status")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *in == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "ipsfhir map: --in FILE is required, and no other arguments are taken")
		fs.Usage()
		return exitUsage
	}
	data, err := readInput(*in, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir map: %s\n", fileError(err))
		return exitUsage
	}
	if *reverse {
		return mapReverse(data, *out, stdout, stderr)
	}
	bt := mappings.BundleType(*bundleType)
	if bt != mappings.Collection && bt != mappings.Transaction {
		fmt.Fprintf(stderr, "ipsfhir map: --bundle-type must be collection or transaction\n")
		return exitUsage
	}
	cl, err := ips.Decode(bytes.NewReader(data))
	if err != nil {
		return reportInputError("map", err, stderr)
	}
	bundle, err := mappings.CaseloadBundle(cl, mappings.Options{Program: *program, PRAPARE: *prapare, Now: time.Now()}, bt)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir map: %v\n", err)
		return exitFindings
	}
	js, err := mappings.MarshalPretty(bundle)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir map: write FHIR JSON: %v\n", err)
		return exitFindings
	}
	if err := writeOutput(*out, append(js, '\n'), stdout); err != nil {
		fmt.Fprintf(stderr, "ipsfhir map: %s\n", fileError(err))
		return exitFindings
	}
	fmt.Fprintf(stderr, "ipsfhir map: %d clients → %d FHIR resources (%s bundle)\n", len(cl.Clients), len(bundle.GetEntry()), bt)
	return exitOK
}

func mapReverse(data []byte, out string, stdout, stderr io.Writer) int {
	b, err := mappings.ParseBundle(data)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir map --reverse: %v\n", err)
		if errors.Is(err, mappings.ErrNotBundle) {
			return exitFindings
		}
		return exitUsage
	}
	cl, err := mappings.CaseloadFromBundle(b, mappings.ReferralOptions{})
	if err != nil {
		return reportInputError("map --reverse", err, stderr)
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, ips.Normalize(cl)); err != nil {
		fmt.Fprintf(stderr, "ipsfhir map --reverse: %v\n", err)
		return exitFindings
	}
	if err := writeOutput(out, buf.Bytes(), stdout); err != nil {
		fmt.Fprintf(stderr, "ipsfhir map --reverse: %s\n", fileError(err))
		return exitFindings
	}
	fmt.Fprintf(stderr, "ipsfhir map --reverse: %d clients read; consent, disclosure and work preferences, referral dates and the program name stay in the IPS store and are not in FHIR\n", len(cl.Clients))
	return exitOK
}

// reportInputError prints every problem of an invalid input. A file that is
// not JSON at all is unreadable (exit 2); one with problems is a finding (1).
func reportInputError(cmd string, err error, stderr io.Writer) int {
	var ve *ips.ValidationError
	var re *mappings.ReadError
	switch {
	case errors.As(err, &ve):
		fmt.Fprintf(stderr, "ipsfhir %s: %v\nnothing was written\n", cmd, err)
		if errors.Is(err, ips.ErrNotJSON) || errors.Is(err, ips.ErrTooLarge) {
			return exitUsage
		}
		return exitFindings
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "ipsfhir %s: %v\nnothing was written\n", cmd, err)
		return exitFindings
	}
	fmt.Fprintf(stderr, "ipsfhir %s: %v\n", cmd, err)
	return exitUsage
}
