package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
)

var update = flag.Bool("update", false, "rewrite docs/API.md from openapi.json")

// apiReference is docs/API.md, rendered from openapi.json.
var apiReference = filepath.Join("..", "..", "docs", "API.md")

// TestAPIReference: docs/API.md is openapi.json rendered, so the two
// cannot drift apart. After editing openapi.json, run
// go test ./adapter/api -run TestAPIReference -update.
func TestAPIReference(t *testing.T) {
	got, err := renderReference(openAPI)
	if err != nil {
		t.Fatalf("render openapi.json: %v", err)
	}
	if *update {
		if err := os.WriteFile(apiReference, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(apiReference)
	if err != nil {
		t.Fatalf("%v; run go test ./adapter/api -run TestAPIReference -update", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/API.md is not openapi.json rendered: run go test ./adapter/api -run TestAPIReference -update")
	}
}

// object is a JSON object that keeps its members' order, so the reference
// lists paths, parameters and fields in the document's order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) any {
	if o == nil {
		return nil
	}
	return o.vals[k]
}

// names returns the object's member names in order; none for nil.
func (o *object) names() []string {
	if o == nil {
		return nil
	}
	return o.keys
}

func (o *object) obj(k string) *object { v, _ := o.get(k).(*object); return v }

func (o *object) str(k string) string { v, _ := o.get(k).(string); return v }

func (o *object) list(k string) []any { v, _ := o.get(k).([]any); return v }

// decodeOrdered decodes one JSON value, objects as *object.
func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := &object{vals: map[string]any{}}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k.(string))
			o.vals[k.(string)] = v
		}
		_, err := dec.Token()
		return o, err
	case json.Delim('['):
		var l []any
		for dec.More() {
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err := dec.Token()
		return l, err
	}
	return tok, nil
}

// reference renders an OpenAPI document as Markdown.
type reference struct {
	doc *object
	b   strings.Builder
}

func renderReference(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeOrdered(dec)
	if err != nil {
		return nil, err
	}
	doc, ok := v.(*object)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	r := &reference{doc: doc}
	r.render()
	return []byte(r.b.String()), nil
}

type operation struct {
	method, path string
	item, op     *object
}

func (r *reference) operations() []operation {
	var out []operation
	paths := r.doc.obj("paths")
	for _, p := range paths.names() {
		item := paths.obj(p)
		for _, m := range item.names() {
			if m == "parameters" || m == "summary" || m == "description" || m == "servers" {
				continue
			}
			out = append(out, operation{strings.ToUpper(m), p, item, item.obj(m)})
		}
	}
	return out
}

func (r *reference) p(format string, args ...any) { fmt.Fprintf(&r.b, format, args...) }

func (r *reference) render() {
	info := r.doc.obj("info")
	r.p("<!-- Rendered from adapter/api/openapi.json, which GET /api/v1/openapi.json serves, by\n")
	r.p("     go test ./adapter/api -run TestAPIReference -update\n")
	r.p("     Edit the JSON, not this file: a test fails while the two differ. -->\n\n")
	r.p("# %s\n\n", info.str("title"))
	r.p("%s\n\n", info.str("description"))
	r.p("The machine-readable description is OpenAPI %s, served without a key at `GET /api/v1/openapi.json`; this page is rendered from it.\n\n", r.doc.str("openapi"))

	ops := r.operations()
	r.p("## Operations\n\n| operation | who | what |\n|---|---|---|\n")
	for _, o := range ops {
		r.p("| [`%s %s`](#%s) | %s | %s |\n", o.method, o.path, slug(o.method+" "+o.path), r.who(o.op), cell(o.op.str("summary")))
	}
	r.p("\n")

	for _, tag := range r.doc.list("tags") {
		t := tag.(*object)
		r.p("## %s\n\n%s\n\n", t.str("name"), t.str("description"))
		for _, o := range ops {
			if tags := o.op.list("tags"); len(tags) > 0 && tags[0] == t.str("name") {
				r.operation(o)
			}
		}
	}
	r.commonResponses(ops)
	r.headers()
	r.schemas()
}

func (r *reference) who(op *object) string {
	roles := op.list("x-roles")
	if len(roles) == 0 {
		return "anyone, no key"
	}
	var s []string
	for _, v := range roles {
		s = append(s, v.(string))
	}
	return strings.Join(s, ", ")
}

// resolve follows a local $ref.
func (r *reference) resolve(o *object) *object {
	ref := o.str("$ref")
	if ref == "" {
		return o
	}
	cur := r.doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.obj(part)
	}
	return cur
}

func (r *reference) operation(o operation) {
	op := o.op
	r.p("### `%s %s`\n\n", o.method, o.path)
	r.p("**%s.** %s\n\n", strings.TrimSuffix(op.str("summary"), "."), op.str("description"))
	if who := r.who(op); who == "anyone, no key" {
		r.p("Who: anyone; no key needed.\n\n")
	} else {
		r.p("Who: %s.\n\n", who)
	}
	var params []*object
	for _, v := range append(slices.Clone(o.item.list("parameters")), op.list("parameters")...) {
		params = append(params, r.resolve(v.(*object)))
	}
	if len(params) > 0 {
		r.p("| parameter | in | type | | description |\n|---|---|---|---|---|\n")
		for _, p := range params {
			req := "optional"
			if p.get("required") == true {
				req = "required"
			}
			r.p("| `%s` | %s | %s | %s | %s |\n", p.str("name"), p.str("in"), cell(r.typeOf(p.obj("schema"))), req, cell(p.str("description")))
		}
		r.p("\n")
	}
	if body := op.obj("requestBody"); body != nil {
		body = r.resolve(body)
		for _, ct := range body.obj("content").names() {
			r.p("Request body (`%s`): %s.", ct, r.typeOf(body.obj("content").obj(ct).obj("schema")))
		}
		if d := body.str("description"); d != "" {
			r.p(" %s", d)
		}
		r.p("\n\n")
	}
	resps := op.obj("responses")
	var common []string
	r.p("| status | body | headers | meaning |\n|---|---|---|---|\n")
	for _, status := range resps.names() {
		resp := resps.obj(status)
		if ref := resp.str("$ref"); ref != "" {
			common = append(common, fmt.Sprintf("[%s](#%s)", status, slug(status+" "+refName(ref))))
			continue
		}
		body, headers := r.bodyAndHeaders(resp)
		r.p("| %s | %s | %s | %s |\n", status, body, headers, cell(resp.str("description")))
	}
	r.p("\n")
	if len(common) > 0 {
		r.p("Also: %s (see [Common responses](#common-responses)).\n\n", strings.Join(common, ", "))
	}
}

func (r *reference) bodyAndHeaders(resp *object) (string, string) {
	var body, headers []string
	for _, ct := range resp.obj("content").names() {
		body = append(body, fmt.Sprintf("%s (`%s`)", r.typeOf(resp.obj("content").obj(ct).obj("schema")), ct))
	}
	for _, h := range resp.obj("headers").names() {
		headers = append(headers, "`"+h+"`")
	}
	return cell(strings.Join(body, ", ")), strings.Join(headers, ", ")
}

// commonResponses lists the responses operations share by reference, with
// the status each is used for.
func (r *reference) commonResponses(ops []operation) {
	r.p("## Common responses\n\nThe responses many operations share, by status.\n\n")
	statuses := map[string][]string{}
	for _, o := range ops {
		resps := o.op.obj("responses")
		for _, status := range resps.names() {
			if ref := resps.obj(status).str("$ref"); ref != "" && !slices.Contains(statuses[refName(ref)], status) {
				statuses[refName(ref)] = append(statuses[refName(ref)], status)
			}
		}
	}
	comps := r.doc.obj("components").obj("responses")
	for _, name := range comps.names() {
		for _, status := range statuses[name] {
			resp := comps.obj(name)
			body, headers := r.bodyAndHeaders(resp)
			r.p("### %s %s\n\n%s\n\nBody: %s.", status, name, resp.str("description"), body)
			if headers != "" {
				r.p(" Headers: %s.", headers)
			}
			r.p("\n\n")
		}
	}
}

func (r *reference) headers() {
	r.p("## Headers\n\n| header | meaning |\n|---|---|\n")
	hs := r.doc.obj("components").obj("headers")
	for _, name := range hs.names() {
		r.p("| `%s` | %s |\n", name, cell(hs.obj(name).str("description")))
	}
	r.p("\n")
}

func (r *reference) schemas() {
	r.p("## Schemas\n\nThe lower-case schemas from `id` on are the caseload format's definitions (`ips/caseload.schema.json`, described in [CASELOAD.md](CASELOAD.md)). Fields not listed are refused.\n\n")
	schemas := r.doc.obj("components").obj("schemas")
	for _, name := range schemas.names() {
		s := schemas.obj(name)
		r.p("### `%s`\n\n", name)
		if d := s.str("description"); d != "" {
			r.p("%s\n\n", d)
		}
		if s.obj("properties") == nil {
			r.p("%s.\n\n", capitalize(r.typeOf(s)))
			continue
		}
		if s.get("if") != nil {
			r.p("Some fields are required only in some cases: see their descriptions.\n\n")
		}
		r.p("| field | type | | description |\n|---|---|---|---|\n")
		r.fields(s, "")
		r.p("\n")
	}
}

// fields writes a row per property of s, and of the inline objects in it
// (as parent.child, or parent[].child for arrays of them).
func (r *reference) fields(s *object, prefix string) {
	props := s.obj("properties")
	var required []string
	for _, v := range s.list("required") {
		required = append(required, v.(string))
	}
	for _, name := range props.names() {
		p := props.obj(name)
		req := "optional"
		if slices.Contains(required, name) {
			req = "required"
		}
		r.p("| `%s%s` | %s | %s | %s |\n", prefix, name, cell(r.typeOf(p)), req, cell(p.str("description")))
		switch {
		case p.obj("properties") != nil:
			r.fields(p, prefix+name+".")
		case p.obj("items").obj("properties") != nil:
			r.fields(p.obj("items"), prefix+name+"[].")
		}
	}
}

// typeOf says in a few words what a schema allows.
func (r *reference) typeOf(s *object) string {
	if s == nil {
		return "any"
	}
	if ref := s.str("$ref"); ref != "" {
		return fmt.Sprintf("[`%s`](#%s)", refName(ref), slug(refName(ref)))
	}
	if alts := s.list("oneOf"); len(alts) > 0 {
		var out []string
		for _, a := range alts {
			out = append(out, r.typeOf(a.(*object)))
		}
		return strings.Join(out, " or ")
	}
	if enum := s.list("enum"); len(enum) > 0 {
		var out []string
		for _, e := range enum {
			out = append(out, fmt.Sprintf("`%v`", e))
		}
		return "one of " + strings.Join(out, ", ")
	}
	t := s.str("type")
	var out string
	switch t {
	case "array":
		out = "array of " + r.typeOf(s.obj("items"))
		if n := s.get("minItems"); n != nil {
			out += fmt.Sprintf(", at least %v", n)
		}
		return out
	case "string":
		out = "string"
		if f := s.str("format"); f != "" {
			out += " (" + f + ")"
		}
		if p := s.str("pattern"); p != "" {
			out += " matching `" + p + "`"
		}
		if n, ok := s.get("minLength").(json.Number); ok && n.String() == "1" {
			out = "non-empty " + out
		}
		return out
	case "integer", "number":
		out = t
		var bounds []string
		if v := s.get("exclusiveMinimum"); v != nil {
			bounds = append(bounds, fmt.Sprintf("> %v", v))
		}
		if v := s.get("minimum"); v != nil {
			bounds = append(bounds, fmt.Sprintf("≥ %v", v))
		}
		if v := s.get("maximum"); v != nil {
			bounds = append(bounds, fmt.Sprintf("≤ %v", v))
		}
		if len(bounds) > 0 {
			out += " " + strings.Join(bounds, ", ")
		}
		if v := s.get("default"); v != nil {
			out += fmt.Sprintf(", default %v", v)
		}
		return out
	case "boolean":
		if v := s.get("default"); v != nil {
			return fmt.Sprintf("boolean, default %v", v)
		}
		return "boolean"
	case "":
		return "any"
	}
	return t
}

func refName(ref string) string { return ref[strings.LastIndex(ref, "/")+1:] }

// slug is the anchor GitHub gives a heading: lower case, spaces as
// hyphens, punctuation other than hyphens and underscores dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(heading) {
		switch {
		case c == ' ':
			b.WriteRune('-')
		case c == '-' || c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c):
			b.WriteRune(c)
		}
	}
	return b.String()
}

// cell makes text fit in a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func capitalize(s string) string {
	if s == "" || s[0] == '[' {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
