// Package outcomes computes the quarterly outcome measures of an IPS
// (Individual Placement and Support: supported employment for people with
// serious mental illness; not the HL7 International Patient Summary)
// program as FHIR R4 summary MeasureReports, withholds small cells before
// anything leaves, and adds up the reports of several programs.
//
// It is pure: no I/O, no clock, no logging. The CLI (ipsfhir report) reads
// the store and writes files; this package only computes.
//
// # Data flow
//
//	[]*ips.Client, Quarter, Options ──Compute──▶ []*Report ──JSON / BundleJSON──▶ FHIR JSON
//	FHIR JSON of several programs ──ParseJSON──▶ []*Report ──AggregateReports──▶ *Report
//
// Compute counts the caseload served in the quarter: clients enrolled (an
// enrollment date on or before its last day, status not referred: a
// referral is not service) and not closed before its first day. Who the
// reports are for (Options.Audience) decides the rest: the program's own
// report (AudienceProgram) counts every client served; what leaves for an
// HIE (AudienceHIE) only those whose consent allows HIE reporting
// (Options.Consents, the semantics of config.Consent.AllowsHIE). Every
// report states how many clients it left out and why (Report.Excluded, the
// ips-excluded extension; exclusions in excluded.go). Per specialist stratum it
// counts D (active caseload), N1 (held a competitive job on a day of the
// quarter), N2 (held one of 20+ hours a week), E (enrolled in the quarter),
// C (E with a first employer contact recorded), W (C within 30 days of
// enrollment), F (first job since enrollment started in the quarter), J
// (jobs started in the quarter), G (first competitive job since enrollment
// started in the quarter), B (G with benefits planning before it), R (first
// competitive job reached its 90th day in the quarter) and R90 (R still in
// it then), plus earnings, wages, job tenure and days to first contact and
// to first competitive job. Eleven Measures use them
// (conformance/artifacts/measures; the definitions and formulas are in
// docs/OUTCOMES.md):
//
//	ips-competitive-employment      proportion N1/D
//	ips-competitive-employment-20h  proportion N2/D
//	ips-job-starts                  cohort: J (jobs), F (clients)
//	ips-earnings                    continuous: median hourly wage, total earnings of N1
//	ips-employer-contact-30d        proportion W/E
//	ips-days-to-employer-contact    continuous: median days over C
//	ips-days-to-competitive-job     continuous: median days over G
//	ips-job-tenure                  continuous: median weeks in the longest job, over N1
//	ips-job-retention-90d           proportion R90/R
//	ips-benefits-planning           proportion B/G
//	ips-caseload-size               continuous: D−E (on the caseload on day 1) per specialist
//
// Every group is stratified by program, and by employment specialist when
// the program gives its secret specialist key (Options.SpecialistKey). A
// specialist appears only as SpecialistCode: "es-" and 10 hex digits of an
// HMAC-SHA256, under that key, of the program id and the specialist as
// recorded, or "unassigned". Specialists are staff, not patients, but the
// field holds whatever a program types, usually a person's name, so it is
// never published; the code is stable across quarters under one key,
// scoped by program, cannot be computed from a name without the key, and
// the program, which holds the key, can compute it for its own staff.
// Without a key there is no specialist stratifier at all: an unkeyed code
// could be recomputed by anyone with a staff list. Reports carry no client
// identifier, name, date of birth, date of theirs or free text: only
// counts, rates, medians, sums, the quarter, and when and by whom the report
// was produced.
//
// # In FHIR
//
// A report is a summary MeasureReport that meets the DEQM Summary
// MeasureReport profile (DEQM STU5, R4) and claims it when it has a date
// and a reporter: the date comes in as Options.Date or
// AggregateOptions.Date (the package has no clock), the reporter is the
// program, or the organization AggregateOptions names. Scores carry units
// (UCUM 1, d, wk and {clients}, the ISO 4217 currency). The published Measures state
// each group's population basis and, for continuous variables, the
// aggregate method, with the CQFM extensions; docs/OUTCOMES.md has the
// rest.
//
// # Small-cell suppression
//
// The threshold t (Options.Threshold, default 11) withholds every count
// from 1 to t-1. Zero is shown: it discloses no one. Withholding a cell
// alone is not enough, because the cells shown are linked: a stratum is
// the total minus the other strata, the clients not working are the
// served minus the working, and the same counts appear in several reports
// (D is the denominator of two measures and the initial population of a
// third). So the rule is:
//
//  1. Primary: every count from 1 to t-1 is withheld, in every report,
//     stratum and total.
//  2. Complementary: no small count may be narrowed down by a reader to
//     fewer than Options.Protection values (default 3; never fewer than 2
//     and at most t-1). "Small count" includes those no report shows but
//     subtraction would give: every difference of two nested counts (D−N1
//     the active clients not working, N1−N2 those working under 20 hours,
//     E−C those not yet contacted, C−W those contacted late, J−F the job
//     starts that were not a first job, G−B and R−R90, and the rest:
//     W ⊆ C ⊆ E ⊆ D, N2 ⊆ N1 ⊆ D, F ⊆ D, F ⊆ J, B ⊆ G ⊆ D, R90 ⊆ R ⊆ D,
//     G ⊆ N1, G ≤ J, R90 ⊆ N1). What a reader can conclude is modelled
//     as a polytope over the leaves every count is a sum of: every count
//     shown (across strata, the total and all eleven reports, zeros
//     included), the identities between the ways of cutting a caseload,
//     the containments between counts of different cuts,
//     every withheld count at least 1 (zeros are shown) and, as the worst
//     case, every small withheld count at most t-1. The least and the most
//     each small count can be on it are two linear programs (interval.go,
//     simplex.go). While one small count's range is too narrow, one more
//     cell is withheld, cheapest first among those bearing on it: its own
//     level's related counts, the same counts in the strata, the program's
//     totals; a specialist's before the program's, the smallest first;
//     never a zero. Then every complement that can be shown again while
//     every small count stays protected is. When no pattern can protect
//     the strata (a specialist caseload of one or two clients each), the
//     quarter is reported without the breakdown by specialist
//     (Report.BreakdownWithheld).
//  3. Derived values: a rate is withheld when its numerator or denominator
//     is; a median when its group has fewer than t clients or its count is
//     withheld; total earnings whenever the count of working clients they
//     belong to is withheld (that count's pattern protects the sums too).
//
// A withheld cell is marked the same way whatever the reason (count
// omitted, _count carrying data-absent-reason "masked"; a score without a
// value and the same marker), so a reader cannot tell a small cell from a
// complement: telling would say the complement is large, and bounds would
// follow. The guarantee: no small count can be narrowed to fewer than
// Protection values by linear reasoning over everything a quarter's
// reports publish. The programs are relaxations: a reader reasoning over
// whole numbers could narrow a range further only where the polytope's
// corners are not whole; the tests attack the published JSON with an
// independent model to check it.
//
// # Aggregation
//
// Aggregate and AggregateReports add up reports of one measure and one
// quarter from several programs. Counts add; a sum that includes a
// withheld cell is reported withheld with the ips-lower-bound extension
// holding the most it is known to be at least (the cells shown, strata
// included), never as an exact count; rates are recomputed from exact sums
// only; medians are unsupported; each input's strata are kept. Everything
// in an aggregate is computed from what the inputs already published, so it
// discloses nothing they did not.
package outcomes
