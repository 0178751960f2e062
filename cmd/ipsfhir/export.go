package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

const exportAbout = `Writes the program's records as FHIR Bulk Data NDJSON files, one per resource
type (Goal.ndjson, CarePlan.ndjson, Observation.ndjson), with a manifest.json,
into --out: the files the service's /fhir/$export serves, for operators who
hand files to an HIE rather than let it call the service.

Only clients whose consent allows HIE sharing (consent.hie, or the client's own
answer) are exported. By default the export is the de-identified limited data
set HIEs receive: patients and records under keyed pseudonyms
(export.pseudonymKey must be configured), no free text, no chart notes.
--recipient names whom the files are for, and is required: pseudonyms are
scoped per recipient, so two recipients cannot join their files on them. The
name of an hie API key gives that key's scope (its pseudonymScope, or its
name): the same pseudonyms it gets from /fhir/$export. Any other name is a
scope of its own. --identified writes the records as they are, for the
program's own use only: they name patients.

--since exports only clients saved after a time (RFC 3339, or a date), as
$export's _since; --type limits the resource types. The manifest's
transactionTime is the time to pass as --since next time.

When stderr is a terminal, a progress line there counts the clients read
(done/total, rate, time left).

The files are written as the clients are read, never held in memory: each to
a temporary file in --out (.ipsfhir-export-*.tmp, readable by its owner only,
as are the de-identified export's sort runs there), renamed to its name only
once every file is complete, then manifest.json. Existing files in --out are
replaced; an export that fails leaves them as they were, and nothing
half-written under a file's name.

Exit 0 written; 1 the store or the key failed; 2 usage or a bad configuration.`

func runExport(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("export", "--config FILE --out DIR --recipient NAME [--since TIME] [--type T,...]\n       ipsfhir export --config FILE --out DIR --identified [--since TIME] [--type T,...]", exportAbout, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	outDir := fs.String("out", "", "directory to write the NDJSON files and manifest.json to (required; created if missing)")
	since := fs.String("since", "", "only clients saved after this time: RFC 3339 (2026-10-01T00:00:00Z) or a date (2026-10-01, midnight UTC)")
	types := fs.String("type", "", "comma-separated resource types to export (Goal, CarePlan, Observation; DocumentReference only with --identified)")
	identified := fs.Bool("identified", false, "export the records as they are, naming patients: for the program's own use, never for an HIE")
	recipient := fs.String("recipient", "", "whom the de-identified files are for (required without --identified): an hie API key's name for its pseudonym scope, or a scope name of its own")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "ipsfhir export: "+msg)
		fs.Usage()
		return exitUsage
	}
	switch {
	case *cfgPath == "" || *outDir == "":
		return usage("--config FILE and --out DIR are required")
	case fs.NArg() > 0:
		return usage("unexpected arguments after the flags")
	case *identified && *recipient != "":
		return usage("--recipient is for de-identified exports; --identified files are the program's own")
	case !*identified && strings.TrimSpace(*recipient) == "":
		return usage("--recipient NAME is required: pseudonyms are scoped per recipient (or --identified, for the program's own use)")
	}
	o := fhirapi.ExportOptions{Identified: *identified}
	if *since != "" {
		t, err := parseSince(*since)
		if err != nil {
			return usage("--since: " + err.Error())
		}
		o.Since = t
	}
	if *types != "" {
		for _, t := range strings.Split(*types, ",") {
			o.Types = append(o.Types, strings.TrimSpace(t))
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %v\n", err)
		return exitUsage
	}
	key, err := cfg.Export.Key()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %v\n", err)
		return exitFindings
	}
	if key == nil && !*identified {
		fmt.Fprintln(stderr, "ipsfhir export: a de-identified export needs export.pseudonymKey in the configuration (or --identified, for the program's own use)")
		return exitUsage
	}
	if !*identified {
		o.PseudonymScope = strings.TrimSpace(*recipient)
		if k := cfg.HIEKey(o.PseudonymScope); k != nil {
			o.PseudonymScope = k.Scope()
		}
	}
	st, code := openStore(ctx, cfg, "export", stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	srv, err := fhirapi.New(fhirapi.Options{BaseURL: cfg.Server.FHIRBase(nil), Store: st, Mapping: mappings.Options{Program: cfg.Program.ID, ProgramName: cfg.Program.Name},
		AllowsEHR: cfg.Consent.AllowsEHR, AllowsHIE: cfg.Consent.AllowsHIE, PseudonymKey: key})
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %v\n", err)
		return exitFindings
	}
	defer srv.Close()
	var bar *progress
	if prog := progressTo(stderr); prog != nil {
		// The count is for the progress line only: if it fails, the
		// export itself reports the store's failure.
		if n, err := st.CountClients(ctx); err == nil && n > 0 {
			bar = prog.start("export", "clients", n)
			o.Progress = bar.set
		}
	}
	if err := os.MkdirAll(*outDir, 0o750); err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %s\n", fileError(err))
		return exitFindings
	}
	o.Dir = *outDir
	started := time.Now().UTC()
	files, err := srv.Export(ctx, o)
	bar.finish()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %v\n", err)
		if errors.Is(err, fhirapi.ErrExportRequest) {
			return exitUsage
		}
		return exitFindings
	}
	if err := writeManifest(*outDir, files, started, o); err != nil {
		fmt.Fprintf(stderr, "ipsfhir export: %v\n", err)
		return exitFindings
	}
	total := 0
	for _, f := range files {
		total += f.Count
		fmt.Fprintf(stdout, "%s: %d resources\n", filepath.Join(*outDir, f.Name), f.Count)
	}
	kind := "de-identified, pseudonym scope " + o.PseudonymScope
	if *identified {
		kind = "identified (for the program's own use only)"
	}
	fmt.Fprintf(stdout, "exported %d resources, %s; manifest: %s\n", total, kind, filepath.Join(*outDir, "manifest.json"))
	return exitOK
}

// parseSince reads RFC 3339 or a date (midnight UTC).
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := ips.ParseDate(s)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339 (2026-10-01T00:00:00Z) or a date (2026-10-01)")
	}
	return d.Time(), nil
}

// writeManifest writes a Bulk Data style manifest of the files Export
// wrote (each atomically, once all were complete), itself atomically.
func writeManifest(dir string, files []fhirapi.ExportFile, started time.Time, o fhirapi.ExportOptions) error {
	type entry struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	}
	manifest := struct {
		TransactionTime string  `json:"transactionTime"`
		Request         string  `json:"request"`
		Deidentified    bool    `json:"deidentified"`
		PseudonymScope  string  `json:"pseudonymScope,omitempty"`
		Output          []entry `json:"output"`
		Error           []entry `json:"error"`
	}{TransactionTime: started.Format(time.RFC3339), Request: exportRequest(o), Deidentified: !o.Identified, PseudonymScope: o.PseudonymScope,
		Output: []entry{}, Error: []entry{}}
	for _, f := range files {
		manifest.Output = append(manifest.Output, entry{Type: f.Type, URL: f.Name, Count: f.Count})
	}
	data, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := writeOutput(filepath.Join(dir, "manifest.json"), append(data, '\n'), nil); err != nil {
		return errors.New(fileError(err))
	}
	return nil
}

// exportRequest describes the export as the $export request it matches.
func exportRequest(o fhirapi.ExportOptions) string {
	var q []string
	if !o.Since.IsZero() {
		q = append(q, "_since="+o.Since.UTC().Format(time.RFC3339))
	}
	if len(o.Types) > 0 {
		q = append(q, "_type="+strings.Join(o.Types, ","))
	}
	if len(q) == 0 {
		return "$export"
	}
	return "$export?" + strings.Join(q, "&")
}
