// Package fidelity reads and scores IPS-25 fidelity reviews. IPS here is
// Individual Placement and Support, supported employment for people with
// serious mental illness, not the HL7 International Patient Summary.
//
// A fidelity review rates an IPS program on the 25 items of the Supported
// Employment Fidelity Scale, each from 1 to 5, in three sections: Staffing
// (S1–S3), Organization (O1–O8) and Services (SV1–SV14). A review is entered
// as a FHIR R4 QuestionnaireResponse to the Questionnaire ipsfhir publishes at
// QuestionnaireURL (conformance/artifacts/questionnaires/ips-fidelity-25.json).
// The data flow is:
//
//	QuestionnaireResponse JSON ──Parse──▶ Review ──Summary──▶ Summary ──ReportJSON──▶ {"fidelity": …}
//
// Parse is strict: it checks the whole response and returns every problem
// at once in an *InvalidError, each naming the item's linkId and where it is,
// so a reviewer can fix the form in one pass. Problems never quote what was
// entered: program identifiers and reviewer names are free text, and a
// linkId the questionnaire does not know is named only by its position.
//
// Scoring is plain addition: the total (25–125), a subtotal per section, and
// the band from BandFor (115–125 Exemplary, 100–114 Good, 74–99 Fair, 73 or
// less Not supported employment). Summary is a JSON-friendly value a report
// shows next to the program's outcomes; ReportJSON wraps it as a
// {"fidelity": …} block. A FHIR Observation was not chosen for that: there is
// no published code for a fidelity score, and a review rates a program, not a
// patient, so it has no Observation.subject the adapter could name.
//
// Caveat: the item names O1–O8 and SV1–SV14, and every band cut-off but Fair,
// are [unconfirmed] against the Supported Employment Fidelity Review Manual,
// 4th edition (2019); Caveat says so, and every Summary carries it. They are
// kept in one table (scale.go) so they are easy to correct, and a test checks
// that the table and the published Questionnaire agree.
//
// The package is pure: no I/O, no clock, no logging.
package fidelity
