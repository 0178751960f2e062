package jsoncase

import (
	"slices"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	doc := `{"ok": 1, "snake_case": 2, "PascalCase": 3, "nested": [{"deadLettered": 0, "Bad": 1}],
	  "failures": {"push: patient not found": 3, "Other": {"count": 1, "Count": 2}},
	  "resource": {"resourceType": "Patient", "Whatever_FHIR": 1}}`
	got, err := Check([]byte(doc), Exempt{FHIR: []string{"resource"}, Data: []string{"failures", "unused.path"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`(root): "PascalCase" is not lowerCamel`,
		`(root): "snake_case" is not lowerCamel`,
		`nested[]: "Bad" is not lowerCamel`,
		`failures.*: "Count" is not lowerCamel`, // a data key's value is still checked
		`unused.path: declared exempt but not in the document`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Check:\n got %q\nwant %q", got, want)
	}
	if _, err := Check([]byte("not json"), Exempt{}); err == nil {
		t.Error("Check of text that is not JSON: no error")
	}
	if got, _ := Check([]byte(`[{"a": {"b": [1, {"cD": null}]}}]`), Exempt{}); got != nil {
		t.Errorf("Check of a lowerCamel document: %q", got)
	}
	// A whole document that is FHIR.
	if got, _ := Check([]byte(`{"resourceType": "Bundle", "entry": [{"Odd_Name": 1}]}`), Exempt{FHIR: []string{""}}); got != nil {
		t.Errorf("Check of FHIR: %q", got)
	}
}

type inner struct {
	Good   int `json:"good"`
	NoTag  int
	Snake  int `json:"snake_case,omitempty"`
	hidden int
	Skip   int `json:"-"`
}

type Embedded struct {
	Promoted int `json:"Promoted"`
}

type outer struct {
	Embedded
	Items  []inner          `json:"items"`
	ByName map[string]inner `json:"byName"`
	Self   *outer           `json:"self"`
}

func TestCheckTypes(t *testing.T) {
	got := CheckTypes(outer{})
	joined := strings.Join(got, "\n")
	for _, want := range []string{`"Promoted"`, `"NoTag"`, `"snake_case"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("CheckTypes did not report %s:\n%s", want, joined)
		}
	}
	if len(got) != 3 {
		t.Errorf("CheckTypes: %d problems, want 3 (each type once, map keys and unexported fields not):\n%s", len(got), joined)
	}
	_ = inner{hidden: 1}
}
