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
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return nil, false
		}
		name, _ := tok.(string)
		for i, k := range keys {
			// The first member of a name counts; a value that is not a
			// string is "".
			if k == name && out[i] == "" && json.Unmarshal(v, &out[i]) == nil {
				left--
			}
		}
	}
	return out, true
}
