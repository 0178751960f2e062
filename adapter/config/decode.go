package config

import (
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The decoder walks the YAML node tree itself instead of letting the YAML
// library fill the structs: the library stops at the first unknown key (with
// KnownFields), reports lines rather than key paths, and quotes the
// offending value in type errors ("cannot unmarshal !!str `hunter2`…"),
// which would print a misplaced secret. Walking the nodes gives every problem
// at once, with its path, and in words that never include a value.

// decoder collects problems and the line of every key it saw.
type decoder struct {
	ps    problems
	lines map[string]int
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
	valueType    = reflect.TypeFor[Value]()
)

// defaulter is implemented by list elements that have defaults of their own
// (a connection that omits winners gets the default winners).
type defaulter interface{ setDefaults() }

// decodeDocument parses data and decodes its single document into c, which
// holds the defaults; keys the file leaves out keep them.
func decodeDocument(data []byte, c *Config) *decoder {
	d := &decoder{lines: map[string]int{}}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return d // an empty file: every default
	}
	if err != nil {
		// The parser's syntax messages name a line and what it expected,
		// not the text it found.
		d.ps.add("", "not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return d
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		d.ps.add("", "holds more than one YAML document; a configuration is one document")
		return d
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return d
		}
		root = root.Content[0]
	}
	d.value(root, reflect.ValueOf(c).Elem(), "")
	return d
}

// value decodes n into v, a settable value of a config type.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// "key:" with nothing after it, or "key: null": the default stays.
		return
	}
	switch v.Type() {
	case durationType:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.ps.add(path, "must be a duration such as 30s, 5m or 1h, not %s", describe(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.ps.add(path, "must be a duration such as 30s, 5m or 1h")
			return
		}
		v.SetInt(int64(dur))
		return
	case secretType:
		if n.Kind == yaml.ScalarNode {
			// Whatever it is, it is not a reference; do not repeat it.
			d.ps.add(path, "is an inline secret, which is refused: give it by reference as {env: NAME} or {file: PATH}")
			return
		}
		if n.Kind != yaml.MappingNode {
			d.ps.add(path, "must be {env: NAME} or {file: PATH}, not %s", describe(n))
			return
		}
	case valueType:
		switch {
		case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
			v.Set(reflect.ValueOf(Value{Plain: n.Value}))
		case n.Kind == yaml.MappingNode:
			var s Secret
			d.value(n, reflect.ValueOf(&s).Elem(), path)
			v.Set(reflect.ValueOf(Value{Ref: s}))
		default:
			d.ps.add(path, "must be a string, {env: NAME} or {file: PATH}, not %s", describe(n))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			// No quiet conversion: an unquoted 1.10 would become "1.1".
			d.ps.add(path, "must be a string, not %s%s", describe(n), quoteHint(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.ps.add(path, "must be true or false, not %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.ps.add(path, "must be true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.ps.add(path, "must be a whole number, not %s", describe(n))
			return
		}
		var i int
		if err := n.Decode(&i); err != nil {
			d.ps.add(path, "must be a whole number that fits in %d bits", strconv.IntSize)
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		// A whole number is a number too (jitter: 0); a string is not.
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.ps.add(path, "must be a number, not %s", describe(n))
			return
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			d.ps.add(path, "must be a number")
			return
		}
		v.SetFloat(f)
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Pointer:
		// An optional value: nil when the key is left out.
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), path)
		v.Set(e)
	case reflect.Map:
		d.stringMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.ps.add(path, "must be a list, not %s", describe(n))
			return
		}
		// The file's list replaces the default list; it does not add to it.
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			ep := index(path, i)
			d.lines[ep] = e.Line
			if df, ok := out.Index(i).Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.value(e, out.Index(i), ep)
		}
		v.Set(out)
	default:
		// Only reachable if a field of an unsupported type is added.
		panic("config: no decoder for " + v.Type().String())
	}
}

// mapping decodes a YAML mapping into a struct by its yaml tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.ps.add(path, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	fields := map[string]int{}
	for i := range v.NumField() {
		if tag := v.Type().Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			// Merging would hide where a value came from; the file is
			// short enough to spell out.
			d.ps.add(path, "uses a YAML merge key (<<), which is not supported: write the keys out")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			d.ps.add(path, "has a key that is not a plain name")
			continue
		}
		kp := child(path, k.Value)
		if seen[k.Value] {
			d.ps.add(kp, "is given more than once")
			continue
		}
		seen[k.Value] = true
		d.lines[kp] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			d.ps.add(kp, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		d.value(val, v.Field(f), kp)
	}
}

// stringMap decodes a YAML mapping with free key names (concept names,
// say) into a map keyed by string; Validate checks the names.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.ps.add(path, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			d.ps.add(path, "has a key that is not a plain name")
			continue
		}
		kp := child(path, k.Value)
		if out.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.ps.add(kp, "is given more than once")
			continue
		}
		d.lines[kp] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, kp)
		out.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(out)
}

// resolveAlias follows *anchor references to the anchored node.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names what a node is, never what it says.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return "a string"
		case "!!int":
			return "a whole number"
		case "!!float":
			return "a number with a fraction"
		case "!!bool":
			return "true or false"
		case "!!null":
			return "null"
		case "!!timestamp":
			return "a date"
		}
		return "a value tagged " + n.Tag
	}
	return "an unsupported value"
}

// quoteHint tells how to make YAML read a number or boolean as a string.
func quoteHint(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!str" {
		return " (put it in quotes to make it a string)"
	}
	return ""
}

// suggest names the known key closest to a misspelt one; key names are
// part of the format, so naming them prints nothing from the file's values.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3 // more than two edits away is no suggestion
	for f := range fields {
		if dist := editDistance(strings.ToLower(key), strings.ToLower(f)); dist < bestDist || (dist == bestDist && f < best) {
			best, bestDist = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Damerau–Levenshtein distance (restricted: adjacent
// transpositions count as one edit), so "tpye" is one edit from "type".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
