package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "[--out DIR] [--clients N] [--seed N] [--serve=false] [--ehr URL]",
		`Builds a synthetic IPS caseload (no real patients), maps it to FHIR R4,
validates every resource against base R4 and the ipsfhir profiles, and shows
what an EHR and a clinician would receive. Writes the caseload and the Bundle
to --out (default: a new temporary directory).

Then, unless --serve=false, it loads the caseload into an SQLite store in
that directory and runs the service (records API, admin, metrics) on a free
loopback port with a one-time demo API key, until Ctrl-C. With --ehr URL (a
test FHIR R4 server such as HAPI, never a production EHR) it also creates the
synthetic patients there and syncs the caseload to it.

When stderr is a terminal, a progress line there shows the clients mapped
and validated and the patients created (done/total, rate, time left).`, stderr)
	out := fs.String("out", "", "directory for caseload.json and bundle.json (default: a new temporary directory)")
	n := fs.Int("clients", synth.SampleClients, "number of synthetic clients")
	seed := fs.Uint64("seed", synth.SampleSeed, "random seed; with the default seed and client count the demo uses testdata/caseload-sample.json's caseload")
	serve := fs.Bool("serve", true, "run the service on the demo store until interrupted")
	ehrURL := fs.String("ehr", "", "base URL of a test FHIR R4 server to sync the demo caseload to")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *n < 1 || *n > 100000 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "ipsfhir demo: --clients must be from 1 to 100000, and no arguments are taken")
		return exitUsage
	}
	dir := *out
	if dir == "" {
		d, err := os.MkdirTemp("", "ipsfhir-demo-")
		if err != nil {
			fmt.Fprintf(stderr, "ipsfhir demo: %s\n", fileError(err))
			return exitUsage
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %s\n", fileError(err))
		return exitUsage
	}

	cl := synth.GenerateSample()
	if *seed != synth.SampleSeed || *n != synth.SampleClients {
		cl = synth.Generate(mrand.New(mrand.NewPCG(*seed, *seed)), *n)
	}
	prog := progressTo(stderr)
	prog.status(fmt.Sprintf("demo: writing %d clients", len(cl.Clients)))
	var caseJSON strings.Builder
	err := ips.Encode(&caseJSON, cl)
	prog.clear()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitFindings
	}
	mo := mappings.Options{Now: time.Now(), Program: cl.ProgramID()}
	if cl.Program != nil {
		mo.ProgramName = cl.Program.Name
	}
	bundle, issues, err := mapAndValidate(cl, mo, prog)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitFindings
	}
	prog.status(fmt.Sprintf("demo: writing %d resources", len(bundle.GetEntry())))
	bundleJSON, err := mappings.MarshalPretty(bundle)
	prog.clear()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitFindings
	}
	casePath, bundlePath := filepath.Join(dir, "caseload.json"), filepath.Join(dir, "bundle.json")
	for _, f := range []struct {
		path string
		data []byte
	}{{casePath, []byte(caseJSON.String())}, {bundlePath, append(bundleJSON, '\n')}} {
		if err := writeOutput(f.path, f.data, nil); err != nil {
			fmt.Fprintf(stderr, "ipsfhir demo: %s\n", fileError(err))
			return exitFindings
		}
	}

	w := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	name := cl.ProgramID()
	if cl.Program != nil && cl.Program.Name != "" {
		name = cl.Program.Name
	}
	w("ipsfhir demo: IPS supported employment → FHIR R4 (synthetic data, no real patients)")
	w("")
	w("Caseload: %s, %d clients", name, len(cl.Clients))
	w("  %s", caseloadSummary(cl))
	w("")
	w("Mapped to %d FHIR R4 resources: %s", len(bundle.GetEntry()), resourceCounts(bundle.GetEntry()))
	if mappings.HasErrors(issues) {
		w("Validation: %d problems (see: ipsfhir validate %s)", len(issues), bundlePath)
	} else {
		w("Validation: every resource passes base FHIR R4 and its ipsfhir profile.")
	}
	if c := showcaseClient(cl); c != nil {
		w("")
		w("What a clinician reads in the chart for client %s (the chart-note fallback;", c.ID)
		w("EHRs that accept Goal and CarePlan show the same as native resources):")
		w("")
		for _, line := range strings.Split(strings.TrimRight(mappings.RenderPlan(c, mo), "\n"), "\n") {
			w("    %s", line)
		}
	}
	w("")
	w("Written: %s", casePath)
	w("         %s", bundlePath)
	w("Try:     go run ./cmd/ipsfhir validate %s", bundlePath)
	w("         go run ./cmd/ipsfhir map --reverse --in %s", bundlePath)
	if mappings.HasErrors(issues) {
		return exitFindings
	}
	if !*serve {
		return exitOK
	}
	return demoService(ctx, cl, dir, *ehrURL, stdout, stderr)
}

// mapAndValidate maps the caseload to one collection Bundle, as
// mappings.CaseloadBundle does, and validates it client by client (each
// client's resources in a Bundle of their own, the same checks as of the
// whole), so that prog can show the clients done.
func mapAndValidate(cl *ips.Caseload, mo mappings.Options, prog *progressOut) (*bpb.Bundle, []mappings.Issue, error) {
	v, err := mappings.NewValidator()
	if err != nil {
		return nil, nil, err
	}
	bar := prog.start("demo: map and validate", "clients", len(cl.Clients))
	defer bar.finish()
	var (
		all    []mappings.Entry
		issues []mappings.Issue
		seen   = map[mappings.Key]bool{}
	)
	for i, c := range cl.Clients {
		es := mappings.ClientEntries(c, mo)
		one, err := mappings.EntriesBundle(es, mappings.Collection)
		if err != nil {
			return nil, nil, err
		}
		data, err := mappings.MarshalCompact(one)
		if err != nil {
			return nil, nil, err
		}
		found, err := v.ValidateJSON(data)
		if err != nil {
			return nil, nil, err
		}
		issues = append(issues, found...)
		for _, e := range es {
			// A specialist is one record for all their clients.
			if !seen[e.Key] {
				seen[e.Key] = true
				all = append(all, e)
			}
		}
		bar.set(i + 1)
	}
	b, err := mappings.EntriesBundle(all, mappings.Collection)
	return b, issues, err
}

// demoService loads the demo caseload into a fresh SQLite store and runs the
// service on it, with a random API key printed once for the person trying it.
func demoService(ctx context.Context, cl *ips.Caseload, dir, ehrURL string, stdout, stderr io.Writer) int {
	keyBytes := make([]byte, 16)
	if _, err := rand.Read(keyBytes); err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitFindings
	}
	key := hex.EncodeToString(keyBytes)
	sum := sha256.Sum256([]byte(key))
	cfg := config.Default()
	cfg.Program.ID = cl.ProgramID()
	cfg.Store.DSN = config.Value{Plain: filepath.Join(dir, "ipsfhir.db")}
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.APIKeys = []config.APIKey{{Name: "demo", Role: config.RoleSpecialist, SHA256: hex.EncodeToString(sum[:])}}
	var connections []string
	if ehrURL != "" {
		cfg.Connections = []config.Connection{{Name: "demo-ehr", FHIRBaseURL: ehrURL, Enabled: true, Auth: config.Auth{Type: config.AuthNone}, Winners: config.DefaultWinners, ClinicalText: config.ClinicalTextKeep,
			ReferralCodes:   []config.Coding{{System: mappings.SystemSDOHCCTemporary, Code: mappings.SDOHEmploymentStatus}},
			ReferralIntents: mappings.DefaultReferralIntents,
			Timeout:         config.DefaultTimeout, MaxConcurrency: config.DefaultMaxConcurrency, Retry: config.DefaultRetry}}
		connections = []string{"demo-ehr"}
		if err := seedPatients(ctx, ehrURL, cl, progressTo(stderr)); err != nil {
			fmt.Fprintf(stderr, "ipsfhir demo: create the synthetic patients on %s: %v\n", ehrURL, err)
			return exitFindings
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitUsage
	}
	sys, err := wire(ctx, cfg, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: %v\n", err)
		return exitFindings
	}
	defer sys.close(context.WithoutCancel(ctx))
	batch := make([]store.Stored, len(cl.Clients))
	for i, c := range cl.Clients {
		batch[i] = store.Stored{Client: c}
	}
	prog := progressTo(stderr)
	prog.status(fmt.Sprintf("demo: storing %d clients", len(batch)))
	_, err = sys.store.SaveClients(ctx, batch, connections)
	prog.clear()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir demo: load the caseload: %v\n", err)
		return exitFindings
	}
	fmt.Fprintf(stdout, "\nThe service runs on the demo store (%d clients). Demo API key, shown once: %s\n", len(cl.Clients), key)
	fmt.Fprintf(stdout, "Try:     curl -H 'Authorization: Bearer %s' http://ADDRESS/api/v1/clients?limit=2   (ADDRESS: printed below)\n", key)
	fmt.Fprintf(stdout, "FHIR:    curl http://ADDRESS/fhir/metadata; curl -H 'Authorization: Bearer %s' 'http://ADDRESS/fhir/Goal?patient=%s'\n", key, cl.Clients[0].ID)
	if ehrURL != "" {
		fmt.Fprintf(stdout, "Syncing to %s; its sync plan: see the log, or 'ipsfhir check' when it lands.\n", ehrURL)
	}
	fmt.Fprintln(stdout, "Stop with Ctrl-C.")
	return sys.serve(ctx, stdout, stderr)
}

// seedPatients creates the demo's synthetic patients on a test FHIR server,
// as a clinic EHR would already hold them, unless they are there.
func seedPatients(ctx context.Context, base string, cl *ips.Caseload, prog *progressOut) error {
	c, err := ehr.New(ehr.Options{BaseURL: base, Connection: "demo-ehr"})
	if err != nil {
		return err
	}
	bar := prog.start("demo: create patients", "patients", len(cl.Clients))
	defer bar.finish()
	for i, cli := range cl.Clients {
		bar.set(i)
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, cli.Patient.System, cli.Patient.Value)
		criteria := "identifier=" + url.QueryEscape(cli.Patient.System+"|"+cli.Patient.Value)
		if _, err := c.Create(ctx, "Patient", []byte(body), criteria); err != nil {
			return err
		}
	}
	return nil
}

func caseloadSummary(cl *ips.Caseload) string {
	var goals, supports, jobs, current, competitive, twenty int
	for _, c := range cl.Clients {
		goals += len(c.Goals)
		supports += len(c.Supports)
		for _, j := range c.Jobs {
			jobs++
			if j.Current() {
				current++
				if j.HoursPerWeek >= 20 {
					twenty++
				}
			}
			if j.Competitive {
				competitive++
			}
		}
	}
	return fmt.Sprintf("%d goals, %d supports, %d jobs (%d current, %d of them 20+ hours a week; %d competitive in all)",
		goals, supports, jobs, current, twenty, competitive)
}

// resourceCounts says how many resources of each type a Bundle holds.
func resourceCounts(entries []*bpb.Bundle_Entry) string {
	m := map[string]int{}
	for _, e := range entries {
		r := e.GetResource().ProtoReflect()
		if fd := r.WhichOneof(r.Descriptor().Oneofs().ByName("oneof_resource")); fd != nil {
			m[string(fd.Message().Name())]++
		}
	}
	return sortedCounts(m)
}

// showcaseClient picks a client whose plan shows the most: a current job and
// supports still to come.
func showcaseClient(cl *ips.Caseload) *ips.Client {
	var best *ips.Client
	score := -1
	for _, c := range cl.Clients {
		s := len(c.Goals)
		for _, j := range c.Jobs {
			if j.Current() {
				s += 100
			}
		}
		for _, sp := range c.Supports {
			if sp.Status == ips.SupportPlanned || sp.Status == ips.SupportInProgress {
				s += 10
			}
		}
		if s > score {
			best, score = c, s
		}
	}
	return best
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
