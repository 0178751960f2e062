// Package jsoncase checks that the JSON ipsfhir emits names its members in
// lowerCamel (STYLE.md: "JSON a program emits uses lowerCamel names with
// tags, everywhere"). Tests call it on every JSON output they produce.
//
// Two kinds of members are not names of ours, and the caller declares
// where they are, as paths ("push.failures"; "connections[].push.failures"
// is that object inside every element of "connections"; "" is the whole
// document):
//
//   - FHIR resources follow FHIR's own names (Exempt.FHIR), and are not
//     looked into.
//   - Objects whose keys are data (a map from connection name, failure
//     reason or resource type to a value: Exempt.Data). The values under
//     data keys are still checked, at the path with "*" for the key
//     ("resources.*.interactions").
//
// Telling them apart is the caller's job on purpose: a key is data only
// where the code that writes the document puts a Go map, and saying so in
// the test keeps a struct field without a json tag (which Go writes in
// PascalCase) from passing as data. Anything else must match
// ^[a-z][a-zA-Z0-9]*$. A declared path the document does not hold is
// reported too, so that exemptions cannot outlive what they were for.
package jsoncase

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// IsLowerCamel reports whether name is a lowerCamel JSON name.
func IsLowerCamel(name string) bool { return lowerCamel.MatchString(name) }

// Exempt says where a document holds FHIR resources and data keys.
type Exempt struct {
	FHIR []string
	Data []string
}

// Check returns a problem for each member name of doc that is not
// lowerCamel (outside the exempt paths), and for each exempt path doc does
// not hold; nil when there are none.
func Check(doc []byte, ex Exempt) ([]string, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("jsoncase: not JSON: %w", err)
	}
	c := &checker{fhir: set(ex.FHIR), data: set(ex.Data), seen: map[string]bool{}}
	c.walk(v, "")
	for _, p := range append(slices.Clone(ex.FHIR), ex.Data...) {
		if !c.seen[p] {
			c.problems = append(c.problems, fmt.Sprintf("%s: declared exempt but not in the document", orRoot(p)))
		}
	}
	return c.problems, nil
}

func set(paths []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range paths {
		m[p] = true
	}
	return m
}

type checker struct {
	fhir, data, seen map[string]bool
	problems         []string
}

func (c *checker) walk(v any, path string) {
	if c.fhir[path] {
		c.seen[path] = true
		return
	}
	switch x := v.(type) {
	case map[string]any:
		isData := c.data[path]
		if isData {
			c.seen[path] = true
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			name := k
			if isData {
				name = "*"
			} else if !lowerCamel.MatchString(k) {
				c.problems = append(c.problems, fmt.Sprintf("%s: %q is not lowerCamel", orRoot(path), k))
			}
			c.walk(x[k], join(path, name))
		}
	case []any:
		for _, e := range x {
			c.walk(e, path+"[]")
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// CheckTypes checks the JSON names of Go types that are encoded as JSON,
// and of every type reachable from them, without needing a value of each:
// a struct field's name (its json tag, or its Go name when it has none,
// which is how a missing tag shows) must be lowerCamel. Map keys are data
// and are not checked; a type with its own MarshalJSON or MarshalText is
// not looked into.
func CheckTypes(vs ...any) []string {
	c := &typeChecker{seen: map[reflect.Type]bool{}}
	for _, v := range vs {
		c.walk(reflect.TypeOf(v), reflect.TypeOf(v).String())
	}
	return c.problems
}

type typeChecker struct {
	seen     map[reflect.Type]bool
	problems []string
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()
)

func (c *typeChecker) walk(t reflect.Type, path string) {
	if t == nil || c.seen[t] {
		return
	}
	c.seen[t] = true
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		c.walk(t.Elem(), path)
	case reflect.Map:
		c.walk(t.Elem(), path+".*")
	case reflect.Struct:
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				c.walk(f.Type, path) // promoted fields
				continue
			}
			if name == "" {
				name = f.Name
			}
			if !lowerCamel.MatchString(name) {
				c.problems = append(c.problems, fmt.Sprintf("%s.%s: JSON name %q is not lowerCamel (%s.%s)", path, f.Name, name, t.String(), f.Name))
			}
			c.walk(f.Type, path+"."+name)
		}
	}
}
