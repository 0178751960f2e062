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
//	              adapter emits (differential only; each pins the version of
//	              its base in baseDefinition, and the validator builds its
//	              rules with what it inherits from the copies in
//	              conformance/baseprofiles)
//	extensions/   StructureDefinition, type Extension: the project's extensions
//	questionnaires/ Questionnaire: forms such as the IPS-25 fidelity review
//	              (package outcomes/fidelity scores its responses)
//	measures/     Measure: the quarterly IPS outcome measures (package
//	              outcomes computes their MeasureReports)
//	capabilities/ CapabilityStatement: the adapter as a server (its /fhir
//	              facade, served at /fhir/metadata) and as a client (what it
//	              uses of an EHR)
//
// The profile validator reads the code systems, value sets and
// StructureDefinitions; the rest is published for readers and checked
// against base R4.
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
