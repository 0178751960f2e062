package fhirapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// FHIR Bulk Data export (HL7 FHIR Bulk Data Access IG): kick-off, status
// polling, deletion and output files. See the package doc for where jobs
// live and what bounds them.

// ndjson is the content type of output files.
const ndjson = "application/fhir+ndjson"

// pollAfter is the Retry-After a running job's status suggests.
const pollAfter = 2 * time.Second

type jobState int

const (
	jobRunning jobState = iota
	jobComplete
	jobFailed
)

// exportJob is one export. Fields above mu are set at kick-off and then
// only read.
type exportJob struct {
	id        string
	ownerName string
	ownerSum  []byte // the SHA-256 of the caller's key: names could repeat
	request   string
	types     []string // in output order; nil means every type the export holds
	// deidentified exports are the limited data set hie callers get (see
	// deid.go); only an admin's export is identified.
	deidentified bool
	deid         *deidentifier // of the caller's pseudonym scope, when deidentified
	since        time.Time
	txTime       time.Time
	notes        []mappings.Issue // what a lenient kick-off ignored
	// progress, if set, is called with the clients read so far after each
	// (ExportOptions.Progress).
	progress func(read int)
	cancel   context.CancelFunc

	mu       sync.Mutex
	dir      string // the job's files (exportdir.go); "" until it runs
	dropped  bool   // deleted, expired or dropped: its files go
	state    jobState
	read     int // clients read so far
	outputs  []output
	failure  mappings.Issue
	finished time.Time
	// reported: the owner read the finished job's status (its manifest,
	// or its failure); fetched: the output files the owner fetched. Both
	// decide when the job stops holding its owner's slot (delivered).
	reported bool
	fetched  map[string]bool
}

// output is one file written: its resource type, its name in the export's
// directory and in URLs, its lines and its bytes.
type output struct {
	typ, name string
	count     int
	size      int64
}

func (j *exportJob) wants(typ string) bool { return j.types == nil || slices.Contains(j.types, typ) }

// errTooLarge fails a job whose output would exceed Limits.MaxJobBytes.
var errTooLarge = errors.New("export larger than the configured limit")

// kickOff serves GET and POST /fhir/$export and /fhir/Group/{id}/$export.
// The program is the only Group, and both export the same clients. A POST
// takes its parameters as a FHIR Parameters body (Bulk Data IG: the
// kick-off MAY be a POST of a Parameters resource), or, with no body, from
// the query string, as Medplum's client sends them; either way it is the
// same export as the GET.
func kickOff(group bool) func(*Server, http.ResponseWriter, *http.Request) {
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		if group && mux.Vars(r)["id"] != s.mapping.Program {
			writeOutcome(w, http.StatusNotFound, oo("not-found", "no Group with this id; the only Group is the program's, Group/{program id}"))
			return
		}
		caller := api.RecordOf(r.Context()).Caller
		// Only an admin's export is identified; every other caller's is
		// de-identified, and without a key it cannot be.
		deidentified := caller.Role != api.RoleAdmin
		if deidentified && s.pseudonymKey == nil {
			writeOutcome(w, http.StatusNotImplemented, oo("not-supported",
				"de-identified export is not configured on this server: an administrator must set export.pseudonymKey (see docs/CONFIG.md); nothing was exported"))
			return
		}
		pref := preferences(r.Header.Values("Prefer"))
		if !pref.async {
			writeOutcome(w, http.StatusBadRequest, oo("required", "Prefer: respond-async is required: a Bulk Data export runs asynchronously"))
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, oo("invalid", "the query string is not valid URL encoding"))
			return
		}
		// The manifest's request is the kick-off URL; a POST's body
		// parameters are not in it (Bulk Data IG).
		request := s.baseURL + strings.TrimPrefix(r.URL.Path, prefix)
		if r.URL.RawQuery != "" {
			request += "?" + r.URL.RawQuery
		}
		if r.Method == http.MethodPost {
			status, body, issue := readParameters(w, r)
			if issue != nil {
				writeOutcome(w, status, *issue)
				return
			}
			if body != nil {
				if len(q) > 0 {
					writeOutcome(w, http.StatusBadRequest, oo("not-supported",
						"give the kick-off parameters in the Parameters body or in the query string, not both"))
					return
				}
				q = body
			}
		}
		j, issues := parseExport(q, pref.lenient, deidentified)
		if len(issues) > 0 {
			writeOutcome(w, http.StatusBadRequest, issues...)
			return
		}
		j.deidentified = deidentified
		if deidentified {
			j.deid = newDeidentifier(s.mapping.Program, s.pseudonymKey, caller.Scope())
		}
		base := s.baseURL
		j.id = newJobID()
		j.ownerName, j.ownerSum = caller.Name, caller.SHA256
		j.request = request
		j.txTime = s.now()

		s.jobsMu.Lock()
		if s.closed {
			s.jobsMu.Unlock()
			writeOutcome(w, http.StatusServiceUnavailable, oo("transient", "the server is shutting down; try again"))
			return
		}
		s.expireLocked()
		s.dropDeliveredLocked(caller)
		if msg, after := s.refuseLocked(caller); msg != "" {
			s.jobsMu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
			writeOutcome(w, http.StatusTooManyRequests, oo("throttled", msg))
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		j.cancel = cancel
		s.jobs[j.id] = j
		s.jobsWG.Add(1)
		s.jobsMu.Unlock()

		go s.runExport(ctx, j)
		w.Header().Set("Content-Location", base+"/bulk-status/"+j.id)
		writeFHIR(w, http.StatusAccepted, mappings.OperationOutcomeJSON([]mappings.Issue{{Severity: "information", Code: "informational",
			Message: "export started; poll the Content-Location URL for its manifest"}}))
	}
}

// readParameters reads the body of a POST kick-off: a FHIR Parameters
// resource (application/fhir+json or application/json), each parameter a
// name and a string-like value, as the kick-off's query parameters. An
// empty body gives nil: the parameters are in the query string. On a
// problem it returns the status and the issue, which names the parameter
// and never quotes a value.
func readParameters(w http.ResponseWriter, r *http.Request) (int, url.Values, *mappings.Issue) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	data, err := io.ReadAll(r.Body)
	if err != nil {
		i := oo("too-costly", fmt.Sprintf("the kick-off body is larger than %d KiB", maxFormBytes>>10))
		return http.StatusRequestEntityTooLarge, nil, &i
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, nil, nil
	}
	switch mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt {
	case "application/fhir+json", "application/json":
	default:
		i := oo("not-supported", "a POST kick-off takes a FHIR Parameters resource as application/fhir+json")
		return http.StatusUnsupportedMediaType, nil, &i
	}
	var body struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(data, &body); err != nil || body.ResourceType != "Parameters" {
		i := oo("invalid", "the kick-off body is not a FHIR Parameters resource in JSON")
		return http.StatusBadRequest, nil, &i
	}
	q := url.Values{}
	for _, p := range body.Parameter {
		var name string
		if err := json.Unmarshal(p["name"], &name); err != nil || name == "" {
			i := oo("invalid", "Parameters.parameter: every parameter needs a name")
			return http.StatusBadRequest, nil, &i
		}
		shown := name
		if !paramName.MatchString(name) {
			shown = "a parameter"
		}
		v, issue := parameterValue(shown, p)
		if issue != nil {
			return http.StatusBadRequest, nil, issue
		}
		q[name] = append(q[name], v)
	}
	return 0, q, nil
}

// parameterValue is the value of one Parameters.parameter as text: its one
// value[x] of a string-like type (string, code, uri, instant, dateTime,
// or a Reference's reference). Parts and resources are refused.
func parameterValue(name string, p map[string]json.RawMessage) (string, *mappings.Issue) {
	var value string
	found := 0
	for k, raw := range p {
		switch k {
		case "name", "id", "extension":
			continue
		case "valueString", "valueCode", "valueUri", "valueUrl", "valueCanonical", "valueInstant", "valueDateTime", "valueDate":
			if err := json.Unmarshal(raw, &value); err != nil {
				i := oo("invalid", name+": "+k+" must be a JSON string")
				return "", &i
			}
		case "valueReference":
			var ref struct {
				Reference string `json:"reference"`
			}
			if err := json.Unmarshal(raw, &ref); err != nil {
				i := oo("invalid", name+": valueReference must be a Reference")
				return "", &i
			}
			value = ref.Reference
		default:
			i := oo("not-supported", name+": give it as valueString (valueInstant for _since); parts, resources and other value types are not taken")
			return "", &i
		}
		found++
	}
	if found != 1 {
		i := oo("invalid", name+": give it exactly one value")
		return "", &i
	}
	return value, nil
}

// exportParams are the kick-off parameters the facade supports.
var exportParams = []string{"_outputFormat", "_since", "_type"}

// deidTypeNames are the resource types of a de-identified export, in
// output order: no DocumentReference (chart notes are free text).
var deidTypeNames = []string{"Goal", "CarePlan", "Observation"}

// parseExport reads the kick-off parameters. What the facade does not
// support is an error, or with Prefer: handling=lenient a note in the
// manifest's error file.
func parseExport(q url.Values, lenient, deidentified bool) (*exportJob, []mappings.Issue) {
	j := &exportJob{}
	types := recordTypes
	if deidentified {
		types = deidTypeNames
	}
	var issues []mappings.Issue
	refuse := func(i mappings.Issue) {
		if lenient {
			i.Severity = "warning"
			i.Message += "; ignored (Prefer: handling=lenient)"
			j.notes = append(j.notes, i)
			return
		}
		issues = append(issues, i)
	}
	for _, name := range sortedKeys(q) {
		if !slices.Contains(exportParams, name) {
			if paramName.MatchString(name) {
				refuse(oo("not-supported", name+": not supported; the parameters are "+strings.Join(exportParams, ", ")))
			} else {
				refuse(oo("not-supported", "a query parameter is not supported; the parameters are "+strings.Join(exportParams, ", ")))
			}
		}
	}
	if v, ok := once(q, "_outputFormat", &issues); ok {
		switch v {
		case ndjson, "application/ndjson", "ndjson":
		default:
			issues = append(issues, oo("not-supported", "_outputFormat: only application/fhir+ndjson (also written application/ndjson or ndjson)"))
		}
	}
	if v, ok := once(q, "_since", &issues); ok {
		t, ok := parseInstant(v)
		if !ok {
			issues = append(issues, oo("invalid", "_since: must be a FHIR instant, with seconds and a time zone (2025-03-31T12:00:00Z)"))
		}
		j.since = t
	}
	if vs, ok := q["_type"]; ok {
		j.types = []string{}
		for _, v := range vs {
			for _, t := range strings.Split(v, ",") {
				t = strings.TrimSpace(t)
				switch {
				case slices.Contains(types, t):
					if !slices.Contains(j.types, t) {
						j.types = append(j.types, t)
					}
				case t == "":
				case deidentified && slices.Contains(recordTypes, t):
					refuse(oo("not-supported", "_type: "+t+" is not in a de-identified export; it holds "+strings.Join(types, ", ")))
				default:
					refuse(oo("not-supported", "_type: only "+strings.Join(types, ", ")+" are exported"))
				}
			}
		}
		slices.SortFunc(j.types, func(a, b string) int { return slices.Index(recordTypes, a) - slices.Index(recordTypes, b) })
		if len(j.types) == 0 && len(j.notes) == 0 && len(issues) == 0 {
			issues = append(issues, oo("required", "_type: name at least one of "+strings.Join(types, ", ")+", or leave it out for all"))
		}
	}
	return j, issues
}

func newJobID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// refuseLocked says why a kick-off by caller cannot start now, or "", and
// how long until it could (the Retry-After). A caller holds a slot for
// each of its jobs still running, or finished and not yet delivered (its
// files not all fetched, a failure not yet reported) nor expired; it has
// Limits.MaxJobsPerCaller, and at most Limits.MaxJobs jobs run at once
// across callers. One caller's exports never hold another's back.
func (s *Server) refuseLocked(caller api.Key) (string, time.Duration) {
	running, held := 0, 0
	var freeAt time.Time // when the caller's earliest held finished job expires
	for _, j := range s.jobs {
		j.mu.Lock()
		state, delivered, finished := j.state, j.delivered(), j.finished
		j.mu.Unlock()
		if state == jobRunning {
			running++
		}
		if !j.ownedBy(caller) {
			continue
		}
		if state == jobRunning {
			return "your previous export is still running; poll it, or DELETE it, before starting another", pollAfter
		}
		if !delivered {
			held++
			if exp := finished.Add(s.limits.JobTTL); freeAt.IsZero() || exp.Before(freeAt) {
				freeAt = exp
			}
		}
	}
	if held >= s.limits.MaxJobsPerCaller {
		return fmt.Sprintf("you keep %d finished exports whose files were not all fetched; fetch them or DELETE them, or wait until the first expires", held),
			max(time.Second, freeAt.Sub(s.now()))
	}
	if running >= s.limits.MaxJobs {
		return fmt.Sprintf("this server runs at most %d exports at once; try again shortly", s.limits.MaxJobs), pollAfter
	}
	return "", 0
}

// dropDeliveredLocked drops caller's finished jobs whose files it has
// fetched: their slots are free already, and their files are not kept for
// a caller that has moved on to a new export.
func (s *Server) dropDeliveredLocked(caller api.Key) {
	for id, j := range s.jobs {
		j.mu.Lock()
		done := j.state != jobRunning && j.delivered()
		j.mu.Unlock()
		if done && j.ownedBy(caller) {
			s.dropLocked(id)
		}
	}
}

// delivered reports that the job's owner has what it produced: every
// output file fetched, or its failure reported. Callers hold j.mu.
func (j *exportJob) delivered() bool {
	switch j.state {
	case jobFailed:
		return j.reported
	case jobComplete:
		if !j.reported {
			return false // the manifest was never read
		}
		for _, o := range j.outputs {
			if !j.fetched[o.name] {
				return false
			}
		}
		return true
	}
	return false
}

func (j *exportJob) ownedBy(k api.Key) bool {
	return j.ownerName == k.Name && bytes.Equal(j.ownerSum, k.SHA256)
}

// expireLocked drops finished jobs past their TTL.
func (s *Server) expireLocked() {
	now := s.now()
	for id, j := range s.jobs {
		j.mu.Lock()
		expired := j.state != jobRunning && now.After(j.finished.Add(s.limits.JobTTL))
		j.mu.Unlock()
		if expired {
			s.dropLocked(id)
		}
	}
}

// dropLocked drops a job: cancels it if it runs, and removes its files,
// now if it has finished, or as it stops (runExport). Callers hold
// s.jobsMu.
func (s *Server) dropLocked(id string) {
	j := s.jobs[id]
	if j == nil {
		return
	}
	delete(s.jobs, id)
	j.cancel()
	j.mu.Lock()
	j.dropped = true
	dir := ""
	if j.state != jobRunning {
		dir, j.dir = j.dir, ""
	}
	j.mu.Unlock()
	s.removeJobDir(dir)
}

// expireLater drops the job's files when it expires, should no request
// come by to do it.
func (s *Server) expireLater(j *exportJob) {
	time.AfterFunc(s.limits.JobTTL+time.Second, func() {
		s.jobsMu.Lock()
		defer s.jobsMu.Unlock()
		s.expireLocked()
	})
}

// runExport writes every exported resource, one NDJSON line each, a file
// per type. Clients saved after the kick-off are left out: transactionTime
// promises nothing later, and the next export with _since picks them up.
func (s *Server) runExport(ctx context.Context, j *exportJob) {
	defer s.jobsWG.Done()
	dir, err := s.newJobDir(j.id)
	var outs []output
	if err == nil {
		j.mu.Lock()
		j.dir = dir
		j.mu.Unlock()
		outs, err = s.collectExport(ctx, j, dir, s.limits.MaxJobBytes)
		if err == nil && len(j.notes) > 0 {
			var o output
			o, err = writeNotes(dir, j.notes)
			outs = append(outs, o)
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if ctx.Err() != nil || j.dropped {
		// Deleted, or the server is closing: nobody will ask.
		s.removeJobDir(j.dir)
		j.dir = ""
		return
	}
	j.finished = s.now()
	defer s.expireLater(j)
	if err != nil {
		// A failed job keeps no files.
		s.removeJobDir(j.dir)
		j.dir = ""
	}
	switch {
	case errors.Is(err, errTooLarge):
		j.state = jobFailed
		j.failure = oo("too-costly", fmt.Sprintf("the export is larger than this server keeps (%d MiB); narrow it with _type or _since", s.limits.MaxJobBytes>>20))
		return
	case err != nil:
		j.state = jobFailed
		j.failure = internalOutcome()
		s.log.LogAttrs(context.Background(), slog.LevelError, "export failed", slog.String("op", "export"), slog.String("error", err.Error()))
		return
	}
	j.outputs = outs
	j.state = jobComplete
}

// writeNotes writes the error file of a lenient kick-off: one
// OperationOutcome per ignored parameter, as the IG asks.
func writeNotes(dir string, notes []mappings.Issue) (output, error) {
	var data []byte
	for _, n := range notes {
		data = append(data, compactJSON(mappings.OperationOutcomeJSON([]mappings.Issue{n}))...)
		data = append(data, '\n')
	}
	name := "errors.ndjson"
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		return output{}, err
	}
	return output{typ: "OperationOutcome", name: name, count: len(notes), size: int64(len(data))}, nil
}

// collectExport reads the clients j covers and writes the export's files
// into dir as it goes (exportfiles.go), within maxBytes (0: no limit). It
// returns them in recordTypes order once every one is complete under its
// name; on an error it leaves none of its files in dir, and a file of the
// same name that was there before stays as it was.
func (s *Server) collectExport(ctx context.Context, j *exportJob, dir string, maxBytes int64) ([]output, error) {
	return s.collectExportTo(ctx, j, newExportFiles(dir, maxBytes))
}

func (s *Server) collectExportTo(ctx context.Context, j *exportJob, files *exportFiles) ([]output, error) {
	defer files.discard()
	err := s.eachClient(ctx, "", func(st store.Stored) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		j.mu.Lock()
		j.read++
		read := j.read
		j.mu.Unlock()
		if j.progress != nil {
			j.progress(read)
		}
		if st.UpdatedAt.After(j.txTime) || (!j.since.IsZero() && !st.UpdatedAt.After(j.since)) || !s.allowsHIE(st.Client) {
			return true, nil
		}
		es, err := s.entries(st)
		if err != nil {
			return false, err
		}
		if j.deidentified {
			return true, addDeidentified(j, es, files)
		}
		for _, e := range es {
			if !j.wants(e.ResourceType) {
				continue
			}
			line, err := mappings.MarshalCompact(e.Resource)
			if err != nil {
				return false, err
			}
			if err := files.add(e.ResourceType, line); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return files.finish()
}

// ExportOptions choose what Export writes.
type ExportOptions struct {
	// Since leaves out clients not saved after it (zero: everything).
	Since time.Time
	// Types limits the resource types (nil: all the export holds).
	Types []string
	// Identified exports the records as they are, for the program's own
	// use; otherwise the de-identified limited data set HIEs get, which
	// needs Options.PseudonymKey and a PseudonymScope.
	Identified bool
	// PseudonymScope is the recipient's pseudonym scope of a de-identified
	// export: the files get the pseudonyms an hie caller of this scope
	// (api.Key.Scope) gets from $export. Required unless Identified.
	PseudonymScope string
	// Progress, if set, is called after each client read with how many
	// have been read (exported or left out), for a progress line.
	Progress func(read int)
	// Dir is the directory the files are written to (required; it must
	// exist). See Export.
	Dir string
}

// ExportFile is one NDJSON file of an export, written.
type ExportFile struct {
	Type  string // resource type
	Name  string // {Type}.ndjson, in ExportOptions.Dir
	Count int    // resources (lines)
	Size  int64  // bytes
}

// Export runs a Bulk Data export at once, with no job and no size limit,
// and writes its files into o.Dir: the same files $export would serve a
// caller of the matching role, from clients whose consent allows HIE
// sharing (ipsfhir export). Each file is written, as the clients are read,
// to a temporary file in o.Dir (named .ipsfhir-export-{random}.tmp, mode
// 0600, as are the de-identified export's sort runs there), and renamed to
// its name, replacing a file of that name, only once every file of the
// export is complete; an export that fails leaves no file of its own in
// o.Dir, and the files that were there as they were.
func (s *Server) Export(ctx context.Context, o ExportOptions) ([]ExportFile, error) {
	if !o.Identified && s.pseudonymKey == nil {
		return nil, ErrNoPseudonymKey
	}
	if !o.Identified && o.PseudonymScope == "" {
		return nil, fmt.Errorf("%w: a de-identified export needs the recipient's pseudonym scope", ErrExportRequest)
	}
	for _, t := range o.Types {
		if !slices.Contains(recordTypes, t) {
			return nil, fmt.Errorf("%w: %q is not a resource type the export holds (%s)", ErrExportRequest, t, strings.Join(recordTypes, ", "))
		}
		if !o.Identified && t == "DocumentReference" {
			return nil, fmt.Errorf("%w: chart notes (DocumentReference) are free text and never leave de-identified", ErrExportRequest)
		}
	}
	if o.Dir == "" {
		return nil, fmt.Errorf("%w: no directory to write the files to", ErrExportRequest)
	}
	j := &exportJob{types: o.Types, deidentified: !o.Identified, since: o.Since, txTime: s.now(), progress: o.Progress}
	if j.deidentified {
		j.deid = newDeidentifier(s.mapping.Program, s.pseudonymKey, o.PseudonymScope)
	}
	outs, err := s.collectExport(ctx, j, o.Dir, 0)
	if err != nil {
		return nil, err
	}
	files := make([]ExportFile, len(outs))
	for i, f := range outs {
		files[i] = ExportFile{Type: f.typ, Name: f.name, Count: f.count, Size: f.size}
	}
	return files, nil
}

// ErrExportRequest wraps what is wrong with ExportOptions.
var ErrExportRequest = errors.New("fhirapi: export")

// ErrNoPseudonymKey: a de-identified export needs export.pseudonymKey.
var ErrNoPseudonymKey = errors.New("fhirapi: a de-identified export needs a pseudonym key (export.pseudonymKey)")

// addDeidentified adds a client's de-identified resources to the files
// (deid.go), within the job's size limit. Their files are written in the
// order of the lines' keys (patient pseudonym, then id), so that the order
// says nothing of the program's client ids.
func addDeidentified(j *exportJob, es []mappings.Entry, files *exportFiles) error {
	lines, err := j.deid.entries(es)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if !j.wants(l.typ) {
			continue
		}
		if err := files.addSorted(l); err != nil {
			return err
		}
	}
	return nil
}

func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return bytes.TrimSpace(b)
	}
	return out.Bytes()
}

// jobFor finds the job a status or file request names, if the caller may
// see it: the caller that started it, or an admin. Anyone else is told it
// does not exist.
func (s *Server) jobFor(r *http.Request) *exportJob {
	caller := api.RecordOf(r.Context()).Caller
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	s.expireLocked()
	j := s.jobs[mux.Vars(r)["job"]]
	if j == nil || (!j.ownedBy(caller) && caller.Role != api.RoleAdmin) {
		return nil
	}
	return j
}

func noSuchJob(w http.ResponseWriter) {
	writeOutcome(w, http.StatusNotFound, oo("not-found", "no export with this id: it never existed, was deleted, expired, was started by another caller, or was lost when the server restarted"))
}

type manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []manifestFile `json:"output"`
	Error               []manifestFile `json:"error"`
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

// exportStatus serves GET /fhir/bulk-status/{job}: 202 while the job runs,
// the manifest when it is done, an OperationOutcome if it failed.
func (s *Server) exportStatus(w http.ResponseWriter, r *http.Request) {
	j := s.jobFor(r)
	if j == nil {
		noSuchJob(w)
		return
	}
	owner := j.ownedBy(api.RecordOf(r.Context()).Caller)
	j.mu.Lock()
	state, read, failure, finished := j.state, j.read, j.failure, j.finished
	outputs := slices.Clone(j.outputs)
	if state != jobRunning && owner {
		j.reported = true
	}
	j.mu.Unlock()
	switch state {
	case jobRunning:
		h := w.Header()
		h.Set("X-Progress", fmt.Sprintf("in progress: %d clients read", read))
		h.Set("Retry-After", strconv.Itoa(int(pollAfter/time.Second)))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
		return
	case jobFailed:
		writeOutcome(w, http.StatusInternalServerError, failure)
		return
	}
	base := s.baseURL
	m := manifest{TransactionTime: instant(j.txTime), Request: j.request, RequiresAccessToken: true,
		Output: []manifestFile{}, Error: []manifestFile{}}
	for _, o := range outputs {
		f := manifestFile{Type: o.typ, URL: base + "/bulk-files/" + j.id + "/" + o.name, Count: o.count}
		if o.typ == "OperationOutcome" {
			m.Error = append(m.Error, f)
		} else {
			m.Output = append(m.Output, f)
		}
	}
	body, err := marshalFHIR(m)
	if err != nil {
		s.internalError(w, r, "marshal the export manifest", err)
		return
	}
	w.Header().Set("Expires", finished.Add(s.limits.JobTTL).UTC().Format(http.TimeFormat))
	writeBody(w, http.StatusOK, "application/json", body)
}

// exportDelete serves DELETE /fhir/bulk-status/{job}: cancels a running
// job, or frees a finished one's files.
func (s *Server) exportDelete(w http.ResponseWriter, r *http.Request) {
	j := s.jobFor(r)
	if j == nil {
		noSuchJob(w)
		return
	}
	s.jobsMu.Lock()
	s.dropLocked(j.id)
	s.jobsMu.Unlock()
	writeFHIR(w, http.StatusAccepted, mappings.OperationOutcomeJSON([]mappings.Issue{{Severity: "information", Code: "informational",
		Message: "export deleted: cancelled if it was running, its files freed"}}))
}

// exportFile serves GET /fhir/bulk-files/{job}/{file}.
func (s *Server) exportFile(w http.ResponseWriter, r *http.Request) {
	j := s.jobFor(r)
	if j == nil {
		noSuchJob(w)
		return
	}
	name := mux.Vars(r)["file"]
	owner := j.ownedBy(api.RecordOf(r.Context()).Caller)
	j.mu.Lock()
	var f *os.File
	var size int64
	var err error
	if j.state == jobComplete && j.dir != "" {
		for _, o := range j.outputs {
			if o.name == name {
				// Opened under j.mu: the job cannot drop the file
				// between the lookup and the open; once open, it reads
				// to the end even if the job is dropped meanwhile.
				f, err = os.Open(filepath.Join(j.dir, o.name))
				size = o.size
			}
		}
	}
	if f != nil && owner {
		if j.fetched == nil {
			j.fetched = map[string]bool{}
		}
		j.fetched[name] = true
	}
	j.mu.Unlock()
	if err != nil {
		s.internalError(w, r, "open an export file", err)
		return
	}
	if f == nil {
		writeOutcome(w, http.StatusNotFound, oo("not-found", "this export has no such file (yet)"))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", ndjson)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.CopyN(w, f, size); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "export file not sent in full", slog.String("op", "export"), slog.String("error", err.Error()))
	}
}

// ExportJobs lists the jobs kept now, oldest first, for administrators
// (api.Exports): who started each, its state and times, never its
// parameters or content.
func (s *Server) ExportJobs() []api.ExportJob {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	s.expireLocked()
	out := []api.ExportJob{}
	for _, j := range s.jobs {
		j.mu.Lock()
		e := api.ExportJob{ID: j.id, Owner: j.ownerName, State: j.state.String(), Deidentified: j.deidentified,
			StartedAt: j.txTime.UTC(), Files: len(j.outputs), Fetched: j.state == jobComplete && j.delivered()}
		if j.state != jobRunning {
			e.FinishedAt, e.ExpiresAt = j.finished.UTC(), j.finished.Add(s.limits.JobTTL).UTC()
		}
		j.mu.Unlock()
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b api.ExportJob) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// CancelExport stops a running job, or drops a finished one and its
// files, for administrators (api.Exports); false when there is none.
func (s *Server) CancelExport(id string) bool {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	if s.jobs[id] == nil {
		return false
	}
	s.dropLocked(id)
	return true
}

func (st jobState) String() string {
	switch st {
	case jobRunning:
		return "running"
	case jobComplete:
		return "complete"
	}
	return "failed"
}
