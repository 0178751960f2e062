package fhirapi

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/mappings"
)

// Parameter handling. Every message names the parameter and never quotes its
// value: search values are patient data (identifiers, ids), and even a name
// is quoted only when it looks like a parameter name.

// searchParams reads a search's parameters, from the query string of a GET
// or from the query string and form body of a POST _search, and keeps those
// the route accepts: its search parameters, the extra names (modified
// parameters and result parameters) and resultParams. A parameter it does
// not accept is refused with 400 under Prefer: handling=strict, and
// otherwise dropped with a warning for the Bundle (notes): FHIR servers
// ignore what they do not understand. On a problem it writes the 400 and
// reports false.
func searchParams(w http.ResponseWriter, r *http.Request, params []param, extra ...string) (q url.Values, notes []mappings.Issue, ok bool) {
	q, issue := readParams(w, r)
	if issue != nil {
		writeOutcome(w, http.StatusBadRequest, *issue)
		return nil, nil, false
	}
	strict := preferences(r.Header.Values("Prefer")).strict
	allowed := append(slices.Clone(resultParams), extra...)
	for _, p := range params {
		allowed = append(allowed, p.name)
	}
	var issues []mappings.Issue
	for _, name := range sortedKeys(q) {
		if slices.Contains(allowed, name) {
			continue
		}
		if strict {
			issues = append(issues, unknownParam(name, allowed))
			continue
		}
		delete(q, name)
		n := ignoredParam(name)
		if !slices.Contains(notes, n) {
			notes = append(notes, n)
		}
	}
	if v, ok := q[paramFormat]; ok {
		if len(v) != 1 || !isJSONFormat(v[0]) {
			issues = append(issues, oo("not-supported", "_format: only JSON is served (json, application/json or application/fhir+json)"))
		}
	}
	if len(issues) > 0 {
		writeOutcome(w, http.StatusBadRequest, issues...)
		return nil, nil, false
	}
	return q, notes, true
}

// prefs are the preferences of a request's Prefer headers (RFC 7240) that
// the facade honours.
type prefs struct {
	async   bool // respond-async
	strict  bool // handling=strict
	lenient bool // handling=lenient
}

// preferences reads the Prefer header(s).
func preferences(values []string) prefs {
	var p prefs
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			pref, _, _ = strings.Cut(pref, ";") // a preference's parameters (RFC 7240) do not matter here
			switch strings.ToLower(strings.Join(strings.Fields(pref), "")) {
			case "respond-async":
				p.async = true
			case "handling=lenient":
				p.lenient = true
			case "handling=strict":
				p.strict = true
			}
		}
	}
	return p
}

// refuseOrIgnore files an issue with a supported parameter's value the
// facade does not support (a _sort it cannot do, say): an error under
// Prefer: handling=strict, else a warning note, the parameter dropped.
func refuseOrIgnore(q url.Values, name, why string, strict bool, issues, notes *[]mappings.Issue) {
	if strict {
		*issues = append(*issues, oo("not-supported", name+": "+why))
		return
	}
	q.Del(name)
	*notes = append(*notes, warning("not-supported", name+": "+why+"; ignored"))
}

func readParams(w http.ResponseWriter, r *http.Request) (url.Values, *mappings.Issue) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		i := oo("invalid", "the query string is not valid URL encoding")
		return nil, &i
	}
	if r.Method != http.MethodPost {
		return q, nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		i := oo("not-supported", "a POST _search takes its parameters as application/x-www-form-urlencoded")
		return nil, &i
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		i := oo("invalid", fmt.Sprintf("the form body is not valid URL encoding, or larger than %d KiB", maxFormBytes>>10))
		return nil, &i
	}
	for k, vs := range r.PostForm {
		q[k] = append(q[k], vs...)
	}
	return q, nil
}

func sortedKeys(q url.Values) []string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// paramName is the shape of FHIR search parameter names (with an optional
// modifier): only a name of that shape is quoted back, since a caller may
// put anything, an identifier included, where a name goes.
var paramName = regexp.MustCompile(`^_?[a-z][A-Za-z\-]{0,40}(:[a-z][A-Za-z\-]{0,30})?$`)

func unknownParam(name string, allowed []string) mappings.Issue {
	known := strings.Join(allowed, ", ")
	if !paramName.MatchString(name) {
		return oo("not-supported", "a query parameter name is not a parameter of this search; the parameters are "+known)
	}
	return oo("not-supported", name+": not a parameter of this search; the parameters are "+known)
}

// ignoredParam is the warning for a parameter a lenient search ignored. It
// names the parameter (when the name looks like one), never its value.
func ignoredParam(name string) mappings.Issue {
	if !paramName.MatchString(name) {
		return warning("not-supported", "a query parameter name is not a parameter of this search; ignored (see /fhir/metadata)")
	}
	return warning("not-supported", name+": not a parameter of this search; ignored (see /fhir/metadata)")
}

func isJSONFormat(f string) bool {
	switch strings.TrimSpace(strings.ToLower(f)) {
	case "json", "application/json", "application/fhir+json":
		return true
	}
	return false
}

// once returns the single value of a parameter; more than one is an issue.
func once(q url.Values, name string, issues *[]mappings.Issue) (string, bool) {
	vs, ok := q[name]
	if !ok {
		return "", false
	}
	if len(vs) != 1 {
		*issues = append(*issues, oo("not-supported", name+": give it once"))
		return "", false
	}
	return vs[0], true
}

// count reads _count: DefaultCount when absent, 0 for the total alone.
func count(q url.Values, issues *[]mappings.Issue) int {
	v, ok := once(q, paramCount, issues)
	if !ok {
		return DefaultCount
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxCount {
		*issues = append(*issues, oo("invalid", fmt.Sprintf("_count: must be a whole number from 0 to %d", MaxCount)))
		return DefaultCount
	}
	return n
}

// ---------------------------------------------------------------- tokens and references

// token reads system|value with both parts present.
func token(v string) (system, value string, ok bool) {
	system, value, ok = strings.Cut(v, "|")
	return system, value, ok && system != "" && value != "" && !strings.Contains(value, "|")
}

var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// patientRef reads patient=Patient/{id} or patient={id}.
func patientRef(v string) (string, bool) {
	id := strings.TrimPrefix(v, "Patient/")
	return id, fhirID.MatchString(id)
}

// ---------------------------------------------------------------- dates

// dateRange is one _lastUpdated value: a prefix and the range [start, end)
// its value covers at its precision.
type dateRange struct {
	prefix     string
	start, end time.Time
}

// matches applies the prefix to an instant, as FHIR defines the prefixes
// for a search value with a range and a target that is a point in time.
func (d dateRange) matches(t time.Time) bool {
	switch d.prefix {
	case "gt":
		return !t.Before(d.end)
	case "ge":
		return !t.Before(d.start)
	case "lt":
		return t.Before(d.start)
	case "le":
		return t.Before(d.end)
	}
	return !t.Before(d.start) && t.Before(d.end) // eq
}

// dateFilter is a date parameter: every occurrence must match (AND), and
// within one, any comma-separated value (OR).
type dateFilter [][]dateRange

func (f dateFilter) matches(t time.Time) bool {
	for _, anyOf := range f {
		if !slices.ContainsFunc(anyOf, func(d dateRange) bool { return d.matches(t) }) {
			return false
		}
	}
	return true
}

var dateValue = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// parseDates reads every occurrence of a date parameter.
func parseDates(q url.Values, name string, issues *[]mappings.Issue) dateFilter {
	var f dateFilter
	for _, occurrence := range q[name] {
		var anyOf []dateRange
		for _, v := range strings.Split(occurrence, ",") {
			d, msg := parseDate(v)
			if msg != "" {
				*issues = append(*issues, oo("invalid", name+": "+msg))
				return nil
			}
			anyOf = append(anyOf, d)
		}
		f = append(f, anyOf)
	}
	return f
}

const dateHelp = "use a date (2025, 2025-03, 2025-03-31) or an instant with a time zone (2025-03-31T12:00:00Z), with an optional prefix eq, gt, ge, lt or le"

func parseDate(v string) (dateRange, string) {
	d := dateRange{prefix: "eq"}
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		d.prefix, v = v[:2], v[2:]
		switch d.prefix {
		case "eq", "gt", "ge", "lt", "le":
		case "ne", "sa", "eb", "ap":
			return d, "the prefixes ne, sa, eb and ap are not supported; " + dateHelp
		default:
			return d, "not a FHIR date; " + dateHelp
		}
	}
	m := dateValue.FindStringSubmatch(v)
	if m == nil {
		return d, "not a FHIR date; " + dateHelp
	}
	num := func(s string, def int) int {
		if s == "" {
			return def
		}
		n, _ := strconv.Atoi(s)
		return n
	}
	year, month, day := num(m[1], 0), num(m[2], 1), num(m[3], 1)
	if month < 1 || month > 12 || day < 1 || day > 31 {
		return d, "not a FHIR date; " + dateHelp
	}
	loc := time.UTC
	if m[4] != "" {
		if m[8] == "" {
			return d, "a time needs a time zone (Z or ±hh:mm); " + dateHelp
		}
		if m[8] != "Z" {
			tz, err := time.Parse("-07:00", m[8])
			if err != nil {
				return d, "not a FHIR date; " + dateHelp
			}
			_, off := tz.Zone()
			loc = time.FixedZone("", off)
		}
	}
	hour, minute, sec := num(m[4], 0), num(m[5], 0), num(m[6], 0)
	if hour > 23 || minute > 59 || sec > 59 {
		return d, "not a FHIR date; " + dateHelp
	}
	nanos := 0
	if m[7] != "" {
		nanos = num((m[7] + "000000000")[:9], 0)
	}
	d.start = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if d.start.Day() != day {
		return d, "not a FHIR date; " + dateHelp // 2025-02-30
	}
	switch {
	case m[2] == "":
		d.end = d.start.AddDate(1, 0, 0)
	case m[3] == "":
		d.end = d.start.AddDate(0, 1, 0)
	case m[4] == "":
		d.end = d.start.AddDate(0, 0, 1)
	case m[6] == "":
		d.end = d.start.Add(time.Minute)
	case m[7] == "":
		d.end = d.start.Add(time.Second)
	default:
		step := time.Second
		for range len(m[7]) {
			step /= 10
		}
		d.end = d.start.Add(max(step, time.Nanosecond))
	}
	return d, ""
}

// parseInstant reads a FHIR instant (with seconds and a time zone), as
// Bulk Data's _since is.
func parseInstant(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil && strings.Contains(v, "T")
}
