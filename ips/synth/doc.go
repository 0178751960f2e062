// Package synth makes synthetic IPS (Individual Placement and Support)
// caseloads of any size from a seed (Generate), for the demo, tests and
// benchmarks, and the published sample (GenerateSample, which is what
// testdata/caseload-sample.json holds).
//
// Generated caseloads follow the IPS model rather than filling fields at
// random, so that tests of mappings and measures see the shapes real programs
// produce: first employer contact within about a month of enrollment (rapid job
// search), mostly competitive jobs, about two-thirds of working clients at 20 or
// more hours a week, follow-along supports that continue while a job lasts,
// jobs that end for the recorded reasons, and employment status snapshots that
// agree with the jobs. Optional fields appear at varied rates so that code
// handling both their presence and their absence is exercised.
//
// All people, employers and identifiers are invented. Patient identifiers use
// PatientSystem, a made-up OID, and values "MRN" + 7 digits. Occupation and
// industry codings use the code systems of the ODH value sets (Census 2010,
// ODH detail) with codes entered by hand: plausible, not a terminology
// reference.
package synth
