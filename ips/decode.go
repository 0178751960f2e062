package ips

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/currency"
)

// Schema is the JSON Schema (draft 2020-12) of the caseload format.
//
//go:embed caseload.schema.json
var Schema []byte

const schemaURL = "https://ipsfhir.org/schema/caseload.schema.json"

var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		return nil, fmt.Errorf("caseload schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat() // "format": "date" rejects 2026-02-30, not only bad shapes
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("caseload schema: %w", err)
	}
	return c.Compile(schemaURL)
})

// MaxCaseloadBytes bounds what Decode reads, so a runaway file cannot exhaust
// memory. 256 MiB holds several hundred thousand clients.
const MaxCaseloadBytes = 256 << 20

// Decode reads a caseload JSON document, checks it against the caseload schema
// and the rules in Validate, and returns it only if nothing is wrong. On any
// problem it returns a *ValidationError listing all of them.
func Decode(r io.Reader) (*Caseload, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxCaseloadBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read caseload: %w", err)
	}
	if len(data) > MaxCaseloadBytes {
		return nil, &ValidationError{Problems: []Problem{{Message: fmt.Sprintf("caseload is larger than %d bytes", MaxCaseloadBytes)}}, Err: ErrTooLarge}
	}
	sch, err := compiledSchema()
	if err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Message: "not valid JSON: " + jsonSyntaxMessage(data)}}, Err: ErrNotJSON}
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("validate caseload: %w", err)
		}
		var ps problems
		schemaProblems(ve, &ps)
		return nil, dedupe(ps).err()
	}
	var cl Caseload
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cl); err != nil {
		// The schema admits only what the structs accept, so this is a
		// mismatch between the two: a bug, reported without the input.
		return nil, fmt.Errorf("decode caseload after schema check (schema and model disagree): %T", err)
	}
	if err := Validate(&cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

// jsonSyntaxMessage says where JSON syntax breaks, by byte offset only.
func jsonSyntaxMessage(data []byte) string {
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("syntax error near line %d (byte %d)", line, se.Offset)
	}
	if err != nil {
		return "cannot parse"
	}
	return "cannot parse"
}

// schemaProblems flattens a schema validation error into leaf problems with
// messages built from the error kind, never from the offending value.
func schemaProblems(ve *jsonschema.ValidationError, ps *problems) {
	path := joinPath(ve.InstanceLocation)
	switch k := ve.ErrorKind.(type) {
	case *kind.Group, *kind.Schema, *kind.AllOf, *kind.Reference:
		for _, c := range ve.Causes {
			schemaProblems(c, ps)
		}
	case *kind.OneOf, *kind.AnyOf:
		// Optional values are "X or null": explain the X branch, not the null.
		var kept []*jsonschema.ValidationError
		for _, c := range ve.Causes {
			if t, ok := c.ErrorKind.(*kind.Type); ok && len(t.Want) == 1 && t.Want[0] == "null" {
				continue
			}
			kept = append(kept, c)
		}
		if len(kept) == 0 {
			ps.add(path, "has the wrong form")
		}
		for _, c := range kept {
			schemaProblems(c, ps)
		}
	case *kind.Required:
		for _, m := range k.Missing {
			ps.add(child(path, m), "is required")
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			ps.add(child(path, p), "unknown field")
		}
	case *kind.Type:
		ps.add(path, "must be %s, not %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprint(w)
		}
		ps.add(path, "must be one of: %s", strings.Join(want, ", "))
	case *kind.Pattern:
		ps.add(path, "%s", patternMessage(k.Want))
	case *kind.Format:
		if k.Want == "date" {
			ps.add(path, "must be a real calendar date written YYYY-MM-DD")
		} else {
			ps.add(path, "must be in %s format", k.Want)
		}
	case *kind.MinLength:
		ps.add(path, "must not be empty")
	case *kind.Minimum:
		ps.add(path, "must be at least %s", k.Want.RatString())
	case *kind.ExclusiveMinimum:
		ps.add(path, "must be greater than %s", k.Want.RatString())
	case *kind.Maximum:
		ps.add(path, "must be at most %s", k.Want.RatString())
	default:
		ps.add(path, "is not allowed here (%s)", strings.Join(ve.ErrorKind.KeywordPath(), "/"))
	}
}

func patternMessage(re string) string {
	switch {
	case strings.Contains(re, "[0-9]{4}-"):
		return "must be a date written YYYY-MM-DD"
	case strings.Contains(re, "[A-Z]{3}"):
		return "must be a three-letter ISO 4217 currency code"
	case strings.Contains(re, "{1,64}"):
		return "must be 1 to 64 letters, digits, '-' or '.'"
	}
	return "has the wrong format"
}

func dedupe(ps problems) problems {
	seen := map[Problem]bool{}
	var out problems
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Validate checks the rules a schema cannot express: real calendar dates,
// unique ids, references to existing goals, dates in order, known currencies.
// It does not check what the schema checks; Decode runs both.
func Validate(cl *Caseload) error {
	var ps problems
	clientIDs := map[string]bool{}
	patients := map[Identifier]bool{}
	for i, c := range cl.Clients {
		cp := index("clients", i)
		if c == nil {
			ps.add(cp, "must be an object")
			continue
		}
		if clientIDs[c.ID] {
			ps.add(child(cp, "id"), "duplicates another client's id")
		}
		clientIDs[c.ID] = true
		if patients[c.Patient] {
			ps.add(child(cp, "patient"), "is the same EHR patient as another client")
		}
		patients[c.Patient] = true
		if !c.ClosedOn.IsZero() && c.ClosedOn.Before(c.EnrolledOn) {
			ps.add(child(cp, "closedOn"), "is before enrolledOn")
		}
		if !c.ReferredOn.IsZero() && c.EnrolledOn.Before(c.ReferredOn) {
			ps.add(child(cp, "enrolledOn"), "is before referredOn")
		}
		if c.Status == ClientClosed && c.ClosedOn.IsZero() {
			ps.add(child(cp, "closedOn"), "is required when status is closed")
		}
		validateGoals(c, cp, &ps)
		validateSupports(c, cp, &ps)
		validateJobs(c, cp, &ps)
		seen := map[Date]bool{}
		for k, s := range c.Employment {
			sp := index(child(cp, "employmentStatus"), k)
			if seen[s.Date] {
				ps.add(child(sp, "date"), "duplicates another employment status on the same date")
			}
			seen[s.Date] = true
		}
	}
	return ps.err()
}

func validateGoals(c *Client, cp string, ps *problems) {
	ids := map[string]bool{}
	for j, g := range c.Goals {
		gp := index(child(cp, "goals"), j)
		if ids[g.ID] {
			ps.add(child(gp, "id"), "duplicates another goal of this client")
		}
		ids[g.ID] = true
		if !g.Due.IsZero() && g.Due.Before(g.Start) {
			ps.add(child(gp, "due"), "is before start")
		}
	}
}

func validateSupports(c *Client, cp string, ps *problems) {
	ids := map[string]bool{}
	for j, s := range c.Supports {
		sp := index(child(cp, "supports"), j)
		if ids[s.ID] {
			ps.add(child(sp, "id"), "duplicates another support of this client")
		}
		ids[s.ID] = true
		if s.Goal != "" && c.Goal(s.Goal) == nil {
			ps.add(child(sp, "goal"), "names no goal of this client")
		}
	}
}

func validateJobs(c *Client, cp string, ps *problems) {
	ids := map[string]bool{}
	for j, job := range c.Jobs {
		jp := index(child(cp, "jobs"), j)
		if ids[job.ID] {
			ps.add(child(jp, "id"), "duplicates another job of this client")
		}
		ids[job.ID] = true
		if !job.End.IsZero() && job.End.Before(job.Start) {
			ps.add(child(jp, "end"), "is before start")
		}
		if job.EndReason != "" && job.End.IsZero() {
			ps.add(child(jp, "endReason"), "is given but the job has no end date")
		}
		if _, err := currency.ParseISO(job.HourlyWage.Currency); err != nil {
			ps.add(child(child(jp, "hourlyWage"), "currency"), "is not an ISO 4217 currency code")
		}
	}
}

// Encode writes a caseload as indented JSON in the documented format.
func Encode(w io.Writer, cl *Caseload) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(cl)
}
