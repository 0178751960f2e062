package ips

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

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

// maxCaseloadBytes is the bound Decode applies: MaxCaseloadBytes, lowered
// by tests only (reading 256 MiB under the race detector costs half a
// minute of CPU).
var maxCaseloadBytes = MaxCaseloadBytes

// tooLarge is Decode's answer to a caseload over the bound.
func tooLarge() error {
	return &ValidationError{Problems: []Problem{{Message: fmt.Sprintf("caseload is larger than %d bytes", maxCaseloadBytes)}}, Err: ErrTooLarge}
}

// Decode reads a caseload JSON document, checks it against the caseload schema
// and the rules in Validate, and returns it only if nothing is wrong. On any
// problem it returns a *ValidationError listing all of them: duplicate keys,
// schema problems, numbers Go cannot hold, and rule problems, so one pass
// over a file shows everything to fix.
//
// A regular file (an *os.File) larger than MaxCaseloadBytes is refused by
// its size, before anything is read.
func Decode(r io.Reader) (*Caseload, error) {
	if f, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(maxCaseloadBytes) {
			return nil, tooLarge()
		}
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(maxCaseloadBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("read caseload: %w", err)
	}
	if len(data) > maxCaseloadBytes {
		return nil, tooLarge()
	}
	sch, err := compiledSchema()
	if err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Message: "not valid JSON: " + jsonSyntaxMessage(data)}}, Err: ErrNotJSON}
	}
	// A key given twice is ambiguous: the schema would see one value and a
	// struct decoder merge both. Text that is not valid UTF-8 would be
	// stored with U+FFFD in place of what was sent. Refuse both rather than
	// guess.
	ps := tokenProblems(data)
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("validate caseload: %w", err)
		}
		schemaProblems(ve, &ps)
	}
	numberProblems(inst, nil, &ps)

	// Decode the struct from the very document the schema checked, with
	// numbers in the forms Go accepts (3.0 → 3 for integer fields). With
	// problems already found this is best effort: fields that do not fit are
	// left zero, and the rule checks still run on the rest.
	canonical, err := json.Marshal(canonicalNumbers(inst))
	if err != nil {
		return nil, fmt.Errorf("decode caseload: %T", err)
	}
	var cl Caseload
	if len(ps) > 0 {
		_ = json.Unmarshal(canonical, &cl) // best effort, see above
		ps = append(ps, ruleProblems(&cl, ps)...)
		return nil, dedupe(ps).err()
	}
	dec := json.NewDecoder(bytes.NewReader(canonical))
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

// ruleProblems runs Validate on a best-effort decode and keeps the problems
// that do not sit on, or under, a path that already has one: a field the
// schema rejected was left zero, and its rule problems would be noise.
func ruleProblems(cl *Caseload, found problems) problems {
	err := Validate(cl)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out problems
	for _, p := range ve.Problems {
		covered := false
		for _, f := range found {
			if p.Path == f.Path || strings.HasPrefix(p.Path, f.Path+".") || strings.HasPrefix(p.Path, f.Path+"[") {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// tokenProblems walks the JSON tokens and reports every object key that
// appears twice in the same object, and every string (key or value) that
// Go's decoder would silently change: bytes that are not UTF-8, escapes of
// unpaired UTF-16 surrogates (both become U+FFFD), and NUL (U+0000), which
// PostgreSQL cannot store in text, so that the two stores would disagree.
// The problem names the path, never the text.
func tokenProblems(data []byte) problems {
	var ps problems
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		path   string
		object bool
		keys   map[string]bool
		index  int
		key    string // the key whose value comes next (objects)
		expect bool   // the next string token is a key (objects)
	}
	var stack []*frame
	valuePath := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.object {
			return child(top.path, top.key)
		}
		return index(top.path, top.index)
	}
	afterValue := func() {
		if len(stack) == 0 {
			return
		}
		top := stack[len(stack)-1]
		if top.object {
			top.key, top.expect = "", true
		} else {
			top.index++
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return ps // EOF, or syntax already reported by the caller
		}
		if _, ok := tok.(string); ok {
			// The token's bytes as written: the string literal, after
			// white space and a ':' or ',' (ASCII, so harmless here).
			if msg := textProblem(data[start:dec.InputOffset()]); msg != "" {
				if top := stack[len(stack)-1]; top.object && top.expect {
					ps.add(top.path, "has a field name that %s", msg)
				} else {
					ps.add(valuePath(), "%s", msg)
				}
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{path: valuePath(), object: t == '{', keys: map[string]bool{}, expect: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				afterValue()
			}
		case string:
			top := stack[len(stack)-1]
			if top.object && top.expect {
				if top.keys[t] {
					ps.add(child(top.path, t), "is given more than once in the same object")
				}
				top.keys[t] = true
				top.key, top.expect = t, false
				continue
			}
			afterValue()
		default:
			afterValue()
		}
	}
}

// textProblem says what is wrong with the text of a JSON string literal
// (raw, as written, quotes and escapes included), or "".
func textProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "is not valid UTF-8 text; nothing is stored with replacement characters"
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok {
			continue // not JSON: the caller reports the syntax
		}
		i += 4
		if r == 0 {
			return "holds the NUL character (\\u0000), which cannot be stored"
		}
		if !utf16.IsSurrogate(r) {
			continue
		}
		// A high surrogate escape must be followed by a low one.
		if r < 0xDC00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
			if lo, ok := hex4(raw, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 6
				continue
			}
		}
		return "holds an unpaired UTF-16 surrogate escape, which is not valid Unicode text; nothing is stored with replacement characters"
	}
	return ""
}

// hex4 reads the four hexadecimal digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// numberProblems finds numbers that Go's float64 cannot hold: too large
// (they would fail to decode) or so small they would silently become zero.
func numberProblems(v any, path []string, ps *problems) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			numberProblems(e, append(path, k), ps)
		}
	case []any:
		for i, e := range x {
			numberProblems(e, append(path, strconv.Itoa(i)), ps)
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		switch {
		case err != nil:
			ps.add(joinPath(path), "is too large a number")
		case f == 0 && !isZeroLiteral(string(x)):
			ps.add(joinPath(path), "is too small a number to store")
		}
	}
}

func isZeroLiteral(s string) bool {
	mant, _, _ := strings.Cut(strings.ToLower(s), "e")
	return strings.Trim(mant, "-+0.") == ""
}

// canonicalNumbers rewrites integral numbers written with a fraction or an
// exponent (3.0, 3e0) as plain integers, which Go's int fields accept; the
// schema already allowed them where an integer is wanted.
func canonicalNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = canonicalNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonicalNumbers(e)
		}
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			if r, ok := new(big.Rat).SetString(string(x)); ok && r.IsInt() && r.Num().IsInt64() {
				return json.Number(r.Num().String())
			}
		}
	}
	return v
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
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = withArticle(w)
		}
		ps.add(path, "must be %s, not %s", strings.Join(want, " or "), withArticle(k.Got))
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

// withArticle turns a JSON type name into words: "an integer", "a string", "null".
func withArticle(t string) string {
	switch t {
	case "null":
		return "null"
	case "integer", "object", "array":
		return "an " + t
	}
	return "a " + t
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
		if c.EnrolledOn.IsZero() && c.Status != ClientReferred && c.Status != ClientClosed {
			// Only a referral waiting for acceptance, or one closed
			// without enrollment, has no enrollment date; the status must
			// say which, so that a forgotten date is not read as either.
			ps.add(child(cp, "enrolledOn"), "is required unless status is referred (waiting for acceptance) or closed (a referral closed without enrollment)")
		}
		validateEpisodeDates(c.CurrentEpisode(), cp, &ps)
		if c.Status == ClientClosed && c.ClosedOn.IsZero() {
			ps.add(child(cp, "closedOn"), "is required when status is closed")
		}
		if c.ClosedReason != "" && c.ClosedOn.IsZero() {
			ps.add(child(cp, "closedReason"), "is given but the client has no closedOn")
		}
		validatePastEpisodes(c, cp, &ps)
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

// validateEpisodeDates checks the order of one episode's dates: referral,
// enrollment, closure.
func validateEpisodeDates(e Episode, p string, ps *problems) {
	if !e.ClosedOn.IsZero() && !e.EnrolledOn.IsZero() && e.ClosedOn.Before(e.EnrolledOn) {
		ps.add(child(p, "closedOn"), "is before enrolledOn")
	}
	if !e.ReferredOn.IsZero() && !e.EnrolledOn.IsZero() && e.EnrolledOn.Before(e.ReferredOn) {
		ps.add(child(p, "enrolledOn"), "is before referredOn")
	}
	if !e.ClosedOn.IsZero() && e.EnrolledOn.IsZero() && !e.ReferredOn.IsZero() && e.ClosedOn.Before(e.ReferredOn) {
		ps.add(child(p, "closedOn"), "is before referredOn")
	}
}

// episodeStart is the first date of an episode: the referral, or the
// enrollment when no referral date is recorded.
func episodeStart(e Episode) Date {
	if !e.ReferredOn.IsZero() {
		return e.ReferredOn
	}
	return e.EnrolledOn
}

// validatePastEpisodes checks the earlier episodes: each closed and dated,
// in order, and the current episode beginning after the last one closed.
func validatePastEpisodes(c *Client, cp string, ps *problems) {
	var prev Date // the previous episode's closure
	for k, e := range c.PastEpisodes {
		ep := index(child(cp, "pastEpisodes"), k)
		if e == nil {
			ps.add(ep, "must be an object")
			continue
		}
		if e.ClosedOn.IsZero() {
			ps.add(child(ep, "closedOn"), "is required: an earlier episode is closed")
		}
		if e.EnrolledOn.IsZero() && e.ReferredOn.IsZero() {
			ps.add(child(ep, "enrolledOn"), "is required unless the episode has a referredOn (a referral closed without enrollment)")
		}
		if e.ClosedReason != "" && e.ClosedOn.IsZero() {
			ps.add(child(ep, "closedReason"), "is given but the episode has no closedOn")
		}
		validateEpisodeDates(*e, ep, ps)
		if start := episodeStart(*e); !prev.IsZero() && !start.IsZero() && start.Before(prev) {
			ps.add(ep, "begins before the episode listed before it closed; list earlier episodes oldest first, without overlap")
		}
		if !e.ClosedOn.IsZero() {
			prev = e.ClosedOn
		}
	}
	if start := episodeStart(c.CurrentEpisode()); len(c.PastEpisodes) > 0 && !prev.IsZero() && !start.IsZero() && start.Before(prev) {
		field := "enrolledOn"
		if !c.ReferredOn.IsZero() {
			field = "referredOn"
		}
		ps.add(child(cp, field), "is before the last of pastEpisodes closed: the current episode begins after the earlier ones")
	}
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
		if s.Contact != nil && s.Type != SupportEmployerContact && s.Type != SupportJobDevelopment {
			ps.add(child(sp, "contact"), "is only for employer-contact and job-development supports")
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
	if cl.Clients == nil {
		// The format requires an array; a caseload built in code may have nil.
		c := *cl
		c.Clients = []*Client{}
		cl = &c
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(cl)
}
