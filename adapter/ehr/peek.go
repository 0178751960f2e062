package ehr

import (
	"bytes"
	"encoding/json"
)

// topStrings reads the string members named in keys from the top-level
// object of body, in one pass that stops once every key is found, and
// returns them in keys' order ("" for one absent or not a string). It
// reports false when body is not a JSON object, as far as it read: a
// Bundle's resourceType and type come first, so a large Bundle costs a few
// tokens instead of a full decode (json.Unmarshal checks, then decodes,
// every byte: a tenth of the push's CPU went to reading the kind of
// transaction Bundles the adapter built or got back, issue 13).
func topStrings(body []byte, keys ...string) ([]string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	out := make([]string, len(keys))
	left := len(keys)
	for left > 0 && dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		name, _ := tok.(string)
		i := -1
		for j, k := range keys {
			if k == name && out[j] == "" {
				i = j
			}
		}
		if i < 0 {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil, false
			}
			continue
		}
		v, err := dec.Token()
		if err != nil {
			return nil, false
		}
		if s, ok := v.(string); ok {
			out[i] = s
			left--
			continue
		}
		if d, ok := v.(json.Delim); ok && (d == '{' || d == '[') {
			// Not a string: skip the rest of the value.
			for depth := 1; depth > 0; {
				t, err := dec.Token()
				if err != nil {
					return nil, false
				}
				if d, ok := t.(json.Delim); ok {
					if d == '{' || d == '[' {
						depth++
					} else {
						depth--
					}
				}
			}
		}
	}
	return out, true
}
