// Package artifacts holds the FHIR R4 conformance resources ipsfhir publishes
// (IPS here is Individual Placement and Support, supported employment for
// people with serious mental illness, not the HL7 International Patient
// Summary) and embeds them in the binary, so the validator, the CLI and the
// /fhir facade all read the very files that are published.
//
// Layout, one pretty-printed JSON resource per file, named {id}.json:
//
//	codesystems/  CodeSystem: the project's own codes (support types, IPS
//	              observation codes, job-end reasons, tags)
//	valuesets/    ValueSet: one per CodeSystem, including all of it, with the
//	              same id; profiles bind to these
//	profiles/     StructureDefinition, kind resource: the profiles of what the
//	              adapter emits (differential only)
//	extensions/   StructureDefinition, type Extension: the project's extensions
//
// Every canonical URL is {base}/{resourceType}/{id} with base
// https://ipsfhir.org/fhir (mappings.CanonicalBase); version is the
// artifacts' version, not the program's.
//
// The files are data, not code: edit the JSON, and the profile checker in
// package mappings refuses to start if a profile uses a StructureDefinition
// feature it does not enforce, so what is published and what is checked
// cannot drift apart silently. This package imports nothing from the project,
// so any package may import it.
package artifacts
