package ips_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

var update = flag.Bool("update", false, "rewrite the golden problem lists in testdata/caseload-invalid")

const invalidDir = "../testdata/caseload-invalid"

// planted are values the invalid files carry in places that produce
// problems; they stand for patient data and must never be echoed.
var planted = []string{"MRN-PLANTED-7731", "Zanzibar", "Quokka", "MRN1000001", "schizophrenia", "Sunrise Bakery"}

// TestDecodeInvalid decodes each broken caseload and compares every problem
// it reports, path and message, with the golden list next to it. The
// messages are what a specialist fixing the file reads: review any change by
// eye, then run go test ./ips -run TestDecodeInvalid -update.
func TestDecodeInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(invalidDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 16 {
		t.Fatalf("found %d invalid caseloads in %s, want at least 16", len(files), invalidDir)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := ips.Decode(bytes.NewReader(data))
			if cl != nil {
				t.Errorf("Decode returned a caseload together with problems")
			}
			var ve *ips.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Decode error is %T (%v), want *ips.ValidationError", err, err)
			}
			if len(ve.Problems) == 0 {
				t.Fatal("ValidationError lists no problems")
			}
			got := formatProblems(ve.Problems)
			golden := filepath.Join(invalidDir, name+".problems.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); diff != "" {
				t.Errorf("problems differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}

	// A golden file without its input tests nothing.
	goldens, _ := filepath.Glob(filepath.Join(invalidDir, "*.problems.txt"))
	for _, g := range goldens {
		if !slices.Contains(files, strings.TrimSuffix(g, ".problems.txt")+".json") {
			t.Errorf("%s has no input file", g)
		}
	}
}

// formatProblems writes one problem a line, as the error message shows them.
func formatProblems(ps []ips.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s\n", p)
	}
	return b.String()
}

// TestDecodeNeverEchoesValues checks that no problem quotes the input: every
// string value of every invalid file, apart from the format's own code words,
// must be absent from the error text.
func TestDecodeNeverEchoesValues(t *testing.T) {
	codes := schemaStrings(t)
	files, _ := filepath.Glob(filepath.Join(invalidDir, "*.json"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ips.Decode(bytes.NewReader(data))
		if err == nil {
			t.Errorf("%s: decoded without error", file)
			continue
		}
		msg := err.Error()
		secrets := slices.Clone(planted)
		var v any
		if json.Unmarshal(data, &v) == nil {
			for _, s := range stringValues(v) {
				if len(s) >= 4 && !codes[s] {
					secrets = append(secrets, s)
				}
			}
		}
		for _, s := range secrets {
			if strings.Contains(msg, s) {
				t.Errorf("%s: error quotes the value %q:\n%s", filepath.Base(file), s, msg)
			}
		}
	}
}

// schemaStrings are the strings the schema itself defines, enum values above
// all, which messages may name.
func schemaStrings(t *testing.T) map[string]bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(ips.Schema, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range stringValues(v) {
		out[s] = true
	}
	return out
}

func stringValues(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringValues(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range v {
			out = append(out, stringValues(e)...)
		}
		return out
	}
	return nil
}

func TestDecodeEmptyClientsIsValid(t *testing.T) {
	cl, err := ips.Decode(strings.NewReader(`{"clients": []}`))
	if err != nil {
		t.Fatalf("a program with no clients yet was rejected: %v", err)
	}
	if cl == nil || len(cl.Clients) != 0 {
		t.Fatalf("got %+v, want a caseload with no clients", cl)
	}
	if got := cl.ProgramID(); got != ips.DefaultProgramID {
		t.Errorf("ProgramID() = %q, want the default %q", got, ips.DefaultProgramID)
	}
}

// minimal is a caseload with one of every record, each holding only the
// names the schema requires.
const minimal = `{
  "program": {"id": "riverside-ips"},
  "clients": [
    {
      "id": "c001",
      "patient": {"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": "MRN1000001"},
      "enrolledOn": "2025-03-04",
      "goals": [{"id": "g1", "description": "Work part time at a bakery, mornings", "status": "active", "start": "2025-03-04",
                 "notes": [{"text": "Client's own words."}]}],
      "supports": [{"id": "s1", "type": "career-profile", "status": "completed", "date": "2025-03-04"}],
      "jobs": [{"id": "j1", "employer": "Sunrise Bakery", "title": "Baker's assistant", "start": "2025-04-14",
                "hoursPerWeek": 20, "hourlyWage": {"value": 15.5, "currency": "USD"}, "competitive": true,
                "occupation": {"system": "http://terminology.hl7.org/CodeSystem/PHOccupationCDCCensus2010", "code": "7800"}}],
      "employmentStatus": [{"date": "2025-03-04", "status": "unemployed"}]
    }
  ]
}`

// requiredAt maps each object of minimal to where the schema lists the names
// that object requires.
var requiredAt = map[string]string{
	"":                               "/required",
	"program":                        "/properties/program/required",
	"clients[0]":                     "/$defs/client/required",
	"clients[0].patient":             "/$defs/client/properties/patient/required",
	"clients[0].goals[0]":            "/$defs/goal/required",
	"clients[0].goals[0].notes[0]":   "/$defs/goal/properties/notes/items/required",
	"clients[0].supports[0]":         "/$defs/support/required",
	"clients[0].jobs[0]":             "/$defs/job/required",
	"clients[0].jobs[0].hourlyWage":  "/$defs/job/properties/hourlyWage/required",
	"clients[0].jobs[0].occupation":  "/$defs/coding/required",
	"clients[0].employmentStatus[0]": "/$defs/statusSnapshot/required",
}

// elseRequiredAt are the names a schema "else" requires at a path of
// minimal: enrolledOn, required unless status is referred or closed.
var elseRequiredAt = map[string]string{
	"clients[0]": "/$defs/client/else/required",
}

func TestDecodeMinimal(t *testing.T) {
	cl, err := ips.Decode(strings.NewReader(minimal))
	if err != nil {
		t.Fatalf("a caseload with only the required names was rejected: %v", err)
	}
	c := cl.Clients[0]
	if c.EffectiveStatus() != ips.ClientActive || !c.Jobs[0].Current() || c.Disclosure != "" || c.Consent != nil {
		t.Errorf("defaults not as documented: status %s, job current %v, disclosure %q, consent %v",
			c.EffectiveStatus(), c.Jobs[0].Current(), c.Disclosure, c.Consent)
	}

	// minimal must hold exactly what the schema requires: no more, so the
	// test above proves the optional names optional; no less, which the
	// removals below prove one name at a time.
	var schema map[string]any
	if err := json.Unmarshal(ips.Schema, &schema); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(minimal), &doc); err != nil {
		t.Fatal(err)
	}
	for path, ptr := range requiredAt {
		obj := lookup(t, doc, path).(map[string]any)
		var want []string
		for _, n := range pointer(t, schema, ptr).([]any) {
			want = append(want, n.(string))
		}
		if ptr, ok := elseRequiredAt[path]; ok {
			for _, n := range pointer(t, schema, ptr).([]any) {
				want = append(want, n.(string))
			}
		}
		for _, name := range want {
			if _, ok := obj[name]; !ok {
				t.Errorf("minimal lacks %s, which the schema requires at %q", name, path)
			}
		}
		for name := range obj {
			child := strings.TrimPrefix(path+"."+name, ".")
			_, isObject := requiredAt[child]
			_, isList := requiredAt[child+"[0]"]
			if !slices.Contains(want, name) && !isObject && !isList {
				t.Errorf("minimal holds %s at %q, which the schema does not require", name, path)
			}
		}
		for _, name := range want {
			t.Run(strings.TrimPrefix(path+"."+name, "."), func(t *testing.T) {
				var doc map[string]any
				if err := json.Unmarshal([]byte(minimal), &doc); err != nil {
					t.Fatal(err)
				}
				delete(lookup(t, doc, path).(map[string]any), name)
				data, _ := json.Marshal(doc)
				cl, err := ips.Decode(bytes.NewReader(data))
				var ve *ips.ValidationError
				if cl != nil || !errors.As(err, &ve) {
					t.Fatalf("without %s: Decode = %v, %v; want a ValidationError", name, cl, err)
				}
				want := ips.Problem{Path: strings.TrimPrefix(path+"."+name, "."), Message: "is required"}
				if !slices.Contains(ve.Problems, want) {
					t.Errorf("problems %v do not include %v", ve.Problems, want)
				}
			})
		}
	}
}

// lookup follows a problem-style path (a.b[0].c) into decoded JSON.
func lookup(t *testing.T, v any, path string) any {
	t.Helper()
	if path == "" {
		return v
	}
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		v = v.(map[string]any)[name]
		if idx != "" {
			var i int
			fmt.Sscanf(idx, "%d]", &i)
			v = v.([]any)[i]
		}
	}
	return v
}

// pointer follows a JSON pointer into decoded JSON.
func pointer(t *testing.T, v any, ptr string) any {
	t.Helper()
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("schema pointer %s: %q is not inside an object", ptr, tok)
		}
		v = m[tok]
	}
	if v == nil {
		t.Fatalf("schema pointer %s leads nowhere", ptr)
	}
	return v
}

// TestDecodeReportsEveryRuleProblem: the rules beyond the schema all run, so
// a file with several such mistakes is fixed in one pass.
func TestDecodeReportsEveryRuleProblem(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(invalidDir, "several-rule-problems.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ips.Decode(bytes.NewReader(data))
	var ve *ips.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a ValidationError", err)
	}
	want := []ips.Problem{
		{"clients[0].closedOn", "is before enrolledOn"},
		{"clients[0].enrolledOn", "is before referredOn"},
		{"clients[0].goals[0].due", "is before start"},
		{"clients[0].goals[1].id", "duplicates another goal of this client"},
		{"clients[0].supports[0].goal", "names no goal of this client"},
		{"clients[0].supports[1].id", "duplicates another support of this client"},
		{"clients[0].supports[2].contact", "is only for employer-contact and job-development supports"},
		{"clients[0].jobs[0].end", "is before start"},
		{"clients[0].jobs[0].hourlyWage.currency", "is not an ISO 4217 currency code"},
		{"clients[0].jobs[1].id", "duplicates another job of this client"},
		{"clients[0].jobs[1].endReason", "is given but the job has no end date"},
		{"clients[0].employmentStatus[1].date", "duplicates another employment status on the same date"},
		{"clients[1].patient", "is the same EHR patient as another client"},
		{"clients[1].closedOn", "is required when status is closed"},
		{"clients[2].id", "duplicates another client's id"},
	}
	for _, p := range want {
		if !slices.Contains(ve.Problems, p) {
			t.Errorf("missing problem %v", p)
		}
	}
	if len(ve.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ve.Problems), len(want), err)
	}
}

// TestValidationErrorMessage: the error text is what a command-line user
// sees; it counts the problems and lists each on its own line.
func TestValidationErrorMessage(t *testing.T) {
	one := &ips.ValidationError{Problems: []ips.Problem{{Path: "clients[0].id", Message: "is required"}}}
	if got, want := one.Error(), "invalid caseload: 1 problem\n  clients[0].id: is required"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	two := &ips.ValidationError{Problems: []ips.Problem{{Message: "not valid JSON: syntax error near line 1 (byte 1)"}, {Path: "clients", Message: "is required"}}}
	if got, want := two.Error(), "invalid caseload: 2 problems\n  not valid JSON: syntax error near line 1 (byte 1)\n  clients: is required"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDecodeRejectsOversizedInput(t *testing.T) {
	// A reader that is not a file cannot be refused by its size: Decode
	// reads it up to the bound and one byte more, never further. Tested at
	// a lowered bound (reading 256 MiB under -race cost half a minute of
	// CPU); the documented bound is the default.
	const bound = 1 << 20
	defer ips.SetMaxCaseloadBytes(bound)()
	r := &spaces{n: bound + 1 + 5<<20}
	cl, err := ips.Decode(r)
	var ve *ips.ValidationError
	if cl != nil || !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.Contains(ve.Problems[0].Message, "larger than 1048576 bytes") {
		t.Errorf("Decode of %d bytes = %v, %v; want a size problem", bound+1, cl, err)
	}
	if r.n != 5<<20 {
		t.Errorf("Decode read %d bytes of an oversized input, want the bound and one more (%d)", bound+1+5<<20-r.n, bound+1)
	}
	// Exactly the bound is read and parsed (blanks: not JSON).
	if _, err := ips.Decode(&spaces{n: bound}); !errors.As(err, &ve) || strings.Contains(ve.Problems[0].Message, "larger than") {
		t.Errorf("Decode of exactly the bound = %v; want it read, then refused as not JSON", err)
	}
}

// spaces reads as n blanks, a file too big without holding one in memory.
type spaces struct{ n int }

func (s *spaces) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), s.n)
	for i := 0; i < k; i += len(blanks) {
		copy(p[i:k], blanks) // a byte at a time took 18 s under -race
	}
	s.n -= k
	return k, nil
}

var blanks = bytes.Repeat([]byte{' '}, 64<<10)

func TestEncodeWritesWhatDecodeReads(t *testing.T) {
	cl, err := ips.Decode(strings.NewReader(minimal))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	// Unset optional values are left out, not written as null or zero.
	for _, absent := range []string{"null", "referredOn", "closedOn", "daysPerWeek", "disclosed", "endReason", `"end"`, "achievement"} {
		if strings.Contains(buf.String(), absent) {
			t.Errorf("encoded caseload contains %s:\n%s", absent, buf.String())
		}
	}
	again, err := ips.Decode(&buf)
	if err != nil {
		t.Fatalf("Decode of Encode output: %v", err)
	}
	if diff := cmp.Diff(cl, again); diff != "" {
		t.Errorf("round trip changed the caseload (-before +after):\n%s", diff)
	}
}

// TestNoteSourceRoundTrips: a goal note a pull took from a clinic's EHR
// carries the connection's name; a caseload (or a client through the
// records API) read back with it keeps it, and a malformed one is refused.
func TestNoteSourceRoundTrips(t *testing.T) {
	cl := synth.GenerateSample()
	g := cl.Clients[0].Goals[0]
	g.Notes = append(g.Notes, ips.Note{Text: "From the clinic", Source: "riverside-epic"})
	b, err := json.Marshal(cl)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ips.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("a caseload with a sourced note was refused: %v", err)
	}
	notes := back.Clients[0].Goals[0].Notes
	if n := notes[len(notes)-1]; n.Source != "riverside-epic" {
		t.Errorf("note source %q after a round trip", n.Source)
	}
	bad := bytes.Replace(b, []byte(`"source":"riverside-epic"`), []byte(`"source":"Riverside EHR"`), 1)
	if _, err := ips.Decode(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("a note source that is no connection name: %v; want it refused, naming source", err)
	}
}

// TestDecodeRefusesAnOversizedFileUnread: a file larger than
// MaxCaseloadBytes is refused by its size, before a byte of it is read (a
// sparse file here: nothing is written to disk).
func TestDecodeRefusesAnOversizedFileUnread(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "huge.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(ips.MaxCaseloadBytes + 1); err != nil {
		t.Fatal(err)
	}
	cl, err := ips.Decode(f)
	var ve *ips.ValidationError
	if cl != nil || !errors.As(err, &ve) || !errors.Is(err, ips.ErrTooLarge) || !strings.Contains(ve.Problems[0].Message, "larger than") {
		t.Fatalf("Decode of a %d-byte file = %v, %v; want a size problem", ips.MaxCaseloadBytes+1, cl, err)
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		t.Errorf("Decode read %d bytes of a file it could refuse by its size (%v)", off, err)
	}
}
