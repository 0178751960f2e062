// Package baseprofiles holds copies of the StructureDefinitions, ValueSets
// and CodeSystems of other implementation guides that the ipsfhir profiles
// derive from or bind to: ODH, US Core, SDOH Clinical Care and HL7
// Terminology. Only the resources the profiles need are here, each as its
// guide published it, at the version the profiles pin; SOURCES.md names the
// package, version, repository and commit of every file, and says which two
// files are not verbatim copies and why.
//
// The validator (package mappings) builds the rules of each ipsfhir profile
// by walking its base chain through these files, so a resource is checked
// against what the profile inherits, not only its differential.
package baseprofiles

import (
	"bytes"
	"embed"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

//go:embed odh/*.xml uscore/*.json sdohcc/*.json tho/*.json
var files embed.FS

// FS is the read-only tree of the copies.
func FS() fs.FS { return files }

// File is one copied resource and the package it comes from.
type File struct {
	Path    string // in FS
	Package string // FHIR package id, e.g. hl7.fhir.us.odh
	Version string // the package version the ipsfhir profiles pin
}

// Package versions the ipsfhir profiles pin (baseDefinition "url|version").
const (
	ODHVersion     = "1.3.0"
	USCoreVersion  = "7.0.0"
	SDOHCCVersion  = "3.0.0"
	THOVersion     = "7.0.1"
	pkgODH         = "hl7.fhir.us.odh"
	pkgUSCore      = "hl7.fhir.us.core"
	pkgSDOHCC      = "hl7.fhir.us.sdoh-clinicalcare"
	pkgTerminology = "hl7.terminology.r4"
)

// Files lists every copy, code systems first, then value sets, then
// StructureDefinitions, so a loader can read them in this order.
var Files = []File{
	{"uscore/CodeSystem-us-core-documentreference-category.json", pkgUSCore, USCoreVersion},
	{"tho/CodeSystem-v3-ObservationValue.json", pkgTerminology, THOVersion},
	{"uscore/ValueSet-us-core-narrative-status.json", pkgUSCore, USCoreVersion},
	{"uscore/ValueSet-us-core-documentreference-category.json", pkgUSCore, USCoreVersion},
	{"uscore/ValueSet-us-core-documentreference-type.json", pkgUSCore, USCoreVersion},
	{"tho/ValueSet-v3-employmentStatusODH.json", pkgTerminology, THOVersion},
	{"sdohcc/SDOHCC-ValueSetSDOHCategory.json", pkgSDOHCC, SDOHCCVersion},
	{"odh/odh-Employer-extension.xml", pkgODH, ODHVersion},
	{"odh/odh-isCurrentJob-extension.xml", pkgODH, ODHVersion},
	{"odh/odh-EmploymentStatus.xml", pkgODH, ODHVersion},
	{"odh/odh-PastOrPresentJob.xml", pkgODH, ODHVersion},
	{"uscore/StructureDefinition-us-core-goal.json", pkgUSCore, USCoreVersion},
	{"uscore/StructureDefinition-us-core-careplan.json", pkgUSCore, USCoreVersion},
	{"uscore/StructureDefinition-us-core-documentreference.json", pkgUSCore, USCoreVersion},
	{"uscore/StructureDefinition-us-core-provenance.json", pkgUSCore, USCoreVersion},
	{"sdohcc/SDOHCC-Goal.json", pkgSDOHCC, SDOHCCVersion},
}

// Read returns the resource at path in fsys as decoded FHIR JSON (numbers as
// json.Number). FHIR XML (the ODH sources) is converted to the JSON form.
func Read(fsys fs.FS, path string) (map[string]any, error) {
	data, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".xml") {
		m, err := FromXML(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return m, nil
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Element names that repeat in the conformance resources read here: FHIR
// XML repeats an element where JSON has an array. A name not listed that
// appears twice under one parent is an error, so a source that uses a
// repeating element this table does not know cannot be misread.
var repeating = map[string]bool{
	"element": true, "targetProfile": true, "profile": true, "discriminator": true,
	"extension": true, "modifierExtension": true, "contact": true, "telecom": true, "jurisdiction": true,
	"coding": true, "constraint": true, "mapping": true, "alias": true, "condition": true,
	"context": true, "contextInvariant": true, "keyword": true, "useContext": true, "identifier": true,
	"concept": true, "include": true, "exclude": true, "filter": true, "property": true, "designation": true,
}

// Primitive elements whose JSON form is not a string.
var (
	integers = map[string]bool{"min": true, "maxLength": true, "count": true}
	booleans = map[string]bool{"mustSupport": true, "isModifier": true, "isSummary": true, "abstract": true,
		"ordered": true, "experimental": true, "mustHaveValue": true, "sliceIsConstraining": true,
		"caseSensitive": true, "valueBoolean": true, "fixedBoolean": true, "patternBoolean": true}
)

// FromXML converts a FHIR XML resource to its JSON form: the root's name
// becomes resourceType, an element's value attribute its value, an id or url
// attribute a property, repeating elements arrays. Narrative (text) is
// dropped: it is for people reading the source, not rules.
func FromXML(data []byte) (map[string]any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Space != "http://hl7.org/fhir" {
				return nil, fmt.Errorf("xml: root element is not in the FHIR namespace")
			}
			obj, err := xmlObject(d, se, true)
			if err != nil {
				return nil, err
			}
			m := obj.(map[string]any)
			m["resourceType"] = se.Name.Local
			if _, err := d.Token(); err != io.EOF {
				for err == nil {
					var t xml.Token
					t, err = d.Token()
					if _, ok := t.(xml.StartElement); ok {
						return nil, fmt.Errorf("xml: content after the root element")
					}
				}
			}
			return m, nil
		}
	}
}

func xmlObject(d *xml.Decoder, se xml.StartElement, root bool) (any, error) {
	obj := map[string]any{}
	var value *string
	for _, a := range se.Attr {
		switch a.Name.Local {
		case "value":
			v := a.Value
			value = &v
		case "id", "url":
			obj[a.Name.Local] = a.Value
		case "xmlns":
		default:
			return nil, fmt.Errorf("xml: %s has attribute %s, which the converter does not know", se.Name.Local, a.Name.Local)
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root && t.Name.Local == "text" {
				if err := d.Skip(); err != nil {
					return nil, fmt.Errorf("xml: %w", err)
				}
				continue
			}
			child, err := xmlObject(d, t, false)
			if err != nil {
				return nil, err
			}
			name := t.Name.Local
			// ElementDefinition.type repeats; StructureDefinition.type,
			// context.type and discriminator.type do not.
			if repeating[name] || (name == "type" && se.Name.Local == "element") {
				list, _ := obj[name].([]any)
				obj[name] = append(list, child)
				continue
			}
			if _, dup := obj[name]; dup {
				return nil, fmt.Errorf("xml: %s repeats under %s, which the converter does not know to be a list", name, se.Name.Local)
			}
			obj[name] = child
		case xml.EndElement:
			if value == nil {
				return obj, nil
			}
			if len(obj) > 0 {
				// A primitive with an id or extensions: not used by the sources.
				return nil, fmt.Errorf("xml: %s has a value and children", se.Name.Local)
			}
			return primitive(se.Name.Local, *value)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("xml: text inside %s", se.Name.Local)
			}
		}
	}
}

func primitive(name, v string) (any, error) {
	switch {
	case integers[name]:
		n := json.Number(v)
		if _, err := n.Int64(); err != nil {
			return nil, fmt.Errorf("xml: %s %q is not an integer", name, v)
		}
		return n, nil
	case booleans[name]:
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("xml: %s %q is not a boolean", name, v)
	}
	return v, nil
}
