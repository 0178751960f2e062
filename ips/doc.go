// Package ips is the IPS (Individual Placement and Support) supported-employment
// domain model: clients enrolled in an IPS program, their employment goals, the
// supports employment specialists give, the jobs clients hold, and snapshots of
// their employment status.
//
// "IPS" here always means Individual Placement and Support, never the HL7
// International Patient Summary.
//
// The package also owns the caseload JSON format that specialists and scripts
// write by hand (caseload.schema.json, embedded and published). Decode checks a
// file against that schema and against rules a schema cannot express (unique
// ids, references between records, date order), refuses text that is not
// valid UTF-8 (or holds unpaired surrogate escapes or NUL) rather than store
// it with U+FFFD in its place, and reports every problem with the JSON path
// it was found at. Problem messages never quote values from the
// file: the values are patient data, the paths and field names are not.
package ips
