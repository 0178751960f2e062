// Package deqmcheck checks MeasureReports against the DEQM Summary
// MeasureReport profile, for ipsfhir's tests (the outcomes package's and
// the CLI's; nothing in the binary uses it): it reads the profile's
// StructureDefinition from a stored copy (testdata/outcomes/deqm, whose
// SOURCES.md names the IG version) and needs no network and no FHIRPath
// engine.
//
// It enforces the differential: every element's cardinality (extension
// slices by their url), fixed and pattern values, required bindings, the
// resource type a Reference must name, the extensions the profile slices in
// whose StructureDefinitions it is given, and each constraint (deqm-0 …
// deqm-9), implemented in Go from its FHIRPath. Base R4 is not its job (the
// project's validator does that). Load refuses a StructureDefinition that
// uses anything it does not check (an element property, a constraint whose
// key or expression it does not know, a binding or target profile it has
// no table for), so a newer profile cannot be passed silently.
//
// mustSupport is not checked: it obliges systems, not instances.
package deqmcheck
