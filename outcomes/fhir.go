package outcomes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// The FHIR R4 JSON of a Report: a summary MeasureReport.
//
// A withheld count has no "count"; its "_count" carries the core
// data-absent-reason extension with code "masked". A withheld score is a
// measureScore with no value and the same extension. An aggregate's lower
// bound rides along in the ips-lower-bound extension next to "masked", so
// no reader can take it for the value. A score that does not exist has
// data-absent-reason "not-applicable" (nobody to score) or "unsupported" (a
// median of an aggregate).
//
// Every report carries the measure's scoring (DEQM extension-measureScoring)
// and its date; a program's report names the program as reporter (an
// Organization by identifier), an aggregate the organization given to it, if
// any. A report with a date and a reporter claims the DEQM Summary
// MeasureReport profile. Scores carry units: UCUM 1 for rates, UCUM d for
// days, the ISO 4217 currency for wages and earnings.

type fhirReport struct {
	ResourceType        string      `json:"resourceType"`
	ID                  string      `json:"id,omitempty"`
	Meta                *fhirMeta   `json:"meta,omitempty"`
	Extension           []fhirExt   `json:"extension,omitempty"`
	Status              string      `json:"status"`
	Type                string      `json:"type"`
	Measure             string      `json:"measure"`
	Date                string      `json:"date,omitempty"`
	Reporter            *fhirRef    `json:"reporter,omitempty"`
	Period              *fhirPeriod `json:"period,omitempty"`
	ImprovementNotation *fhirCC     `json:"improvementNotation,omitempty"`
	Group               []fhirGroup `json:"group,omitempty"`
}

type fhirMeta struct {
	Profile []string     `json:"profile,omitempty"`
	Tag     []fhirCoding `json:"tag,omitempty"`
}

type fhirExt struct {
	Extension            []fhirExt     `json:"extension,omitempty"`
	URL                  string        `json:"url"`
	ValueCodeableConcept *fhirCC       `json:"valueCodeableConcept,omitempty"`
	ValueCode            string        `json:"valueCode,omitempty"`
	ValueInteger         *int          `json:"valueInteger,omitempty"`
	ValuePositiveInt     *int          `json:"valuePositiveInt,omitempty"`
	ValueUnsignedInt     *int          `json:"valueUnsignedInt,omitempty"`
	ValueQuantity        *fhirQuantity `json:"valueQuantity,omitempty"`
}

type fhirRef struct {
	Type       string          `json:"type,omitempty"`
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
}

type fhirIdentifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

type fhirPeriod struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type fhirCoding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code,omitempty"`
}

type fhirCC struct {
	Coding []fhirCoding `json:"coding,omitempty"`
}

type fhirGroup struct {
	ID           string           `json:"id,omitempty"`
	Code         *fhirCC          `json:"code,omitempty"`
	Population   []fhirPopulation `json:"population,omitempty"`
	MeasureScore *fhirQuantity    `json:"measureScore,omitempty"`
	Stratifier   []fhirStratifier `json:"stratifier,omitempty"`
}

type fhirPopulation struct {
	ID       string       `json:"id,omitempty"`
	Code     *fhirCC      `json:"code,omitempty"`
	Count    *int         `json:"count,omitempty"`
	CountExt *fhirElement `json:"_count,omitempty"`
}

type fhirElement struct {
	Extension []fhirExt `json:"extension,omitempty"`
}

type fhirQuantity struct {
	Extension []fhirExt `json:"extension,omitempty"`
	Value     *float64  `json:"value,omitempty"`
	Unit      string    `json:"unit,omitempty"`
	System    string    `json:"system,omitempty"`
	Code      string    `json:"code,omitempty"`
}

type fhirStratifier struct {
	Code    []fhirCC      `json:"code,omitempty"`
	Stratum []fhirStratum `json:"stratum,omitempty"`
}

type fhirStratum struct {
	Value        *fhirCC          `json:"value,omitempty"`
	Population   []fhirPopulation `json:"population,omitempty"`
	MeasureScore *fhirQuantity    `json:"measureScore,omitempty"`
}

type fhirBundle struct {
	ResourceType string      `json:"resourceType"`
	Meta         *fhirMeta   `json:"meta,omitempty"`
	Type         string      `json:"type"`
	Entry        []fhirEntry `json:"entry,omitempty"`
}

type fhirEntry struct {
	Resource json.RawMessage `json:"resource"`
}

func cc(system, code string) *fhirCC {
	return &fhirCC{Coding: []fhirCoding{{System: system, Code: code}}}
}

func absent(reason string) fhirExt { return fhirExt{URL: ExtDataAbsentReason, ValueCode: reason} }

// JSON renders the report as a pretty-printed FHIR R4 MeasureReport.
func (r *Report) JSON() ([]byte, error) {
	f, err := r.fhir()
	if err != nil {
		return nil, err
	}
	return marshal(f)
}

// BundleJSON renders reports as a FHIR R4 Bundle of type collection.
func BundleJSON(reports []*Report) ([]byte, error) {
	b := fhirBundle{ResourceType: "Bundle", Type: "collection", Meta: &fhirMeta{Tag: []fhirCoding{{System: mappings.SystemTags, Code: mappings.TagAuthored}}}}
	for _, r := range reports {
		f, err := r.fhir()
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		b.Entry = append(b.Entry, fhirEntry{Resource: data})
	}
	return marshal(b)
}

func marshal(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func (r *Report) fhir() (*fhirReport, error) {
	if r.Rolling {
		return nil, ErrRollingNotFHIR
	}
	m := measureByID(r.Measure)
	if m == nil {
		return nil, fmt.Errorf("outcomes: unknown measure %q", r.Measure)
	}
	f := &fhirReport{
		ResourceType:        "MeasureReport",
		Meta:                &fhirMeta{Tag: []fhirCoding{{System: mappings.SystemTags, Code: mappings.TagAuthored}}},
		Extension:           []fhirExt{{URL: ExtDEQMMeasureScoring, ValueCodeableConcept: cc(SystemMeasureScoring, m.scoring)}},
		Status:              "complete",
		Type:                "summary",
		Measure:             MeasureURL(m.id) + "|" + MeasureVersion,
		Period:              &fhirPeriod{Start: r.Quarter.Start().String(), End: r.Quarter.End().String()},
		ImprovementNotation: cc(SystemImprovementNotation, m.improvement),
	}
	if !r.Date.IsZero() {
		f.Date = r.Date.UTC().Format(time.RFC3339)
	}
	who := r.Program
	switch {
	case r.Program != "" && r.Reporter != (Identifier{}):
		return nil, errors.New("outcomes: a program's report is reported by the program; Reporter is for aggregates")
	case r.Program != "":
		f.Reporter = &fhirRef{Type: "Organization", Identifier: &fhirIdentifier{System: SystemProgram, Value: r.Program}}
	case r.Reporter != (Identifier{}):
		if !validReporter(r.Reporter) {
			return nil, ErrBadReporter
		}
		f.Reporter = &fhirRef{Type: "Organization", Identifier: &fhirIdentifier{System: r.Reporter.System, Value: r.Reporter.Value}}
		who = "aggregate"
	default:
		who = "aggregate"
	}
	// Claim DEQM only with what it requires of a report that ipsfhir
	// cannot always give: a date and a reporter.
	if f.Date != "" && f.Reporter != nil {
		f.Meta.Profile = []string{ProfileDEQMSummary}
	}
	if id := fmt.Sprintf("%s-%s-%s", who, strings.ToLower(r.Quarter.String()), m.id); len(id) <= 64 {
		f.ID = id
	}
	if r.Threshold > 0 {
		t := r.Threshold
		f.Extension = append(f.Extension, fhirExt{URL: ExtSuppressionThreshold, ValuePositiveInt: &t})
	}
	for _, e := range r.Excluded {
		f.Extension = append(f.Extension, excludedJSON(e))
	}
	for _, g := range r.Groups {
		gd := m.group(g.Code)
		if gd == nil {
			return nil, fmt.Errorf("outcomes: measure %s has no group %q", m.id, g.Code)
		}
		fg := fhirGroup{ID: gd.code, Code: cc(SystemOutcome, g.Code), Population: populationsJSON(g.Populations), MeasureScore: scoreJSON(gd, g.Score)}
		for i := range fg.Population {
			// The ids link the populations to the Measure's; element ids
			// are unique in a resource, so only the group's carry them.
			fg.Population[i].ID = populationID(gd.code, g.Populations[i].Population)
		}
		for _, s := range g.Stratifiers {
			fs := fhirStratifier{Code: []fhirCC{*cc(SystemOutcome, s.Code)}}
			for _, st := range s.Strata {
				fs.Stratum = append(fs.Stratum, fhirStratum{Value: cc(st.System, st.Code), Population: populationsJSON(st.Populations), MeasureScore: scoreJSON(gd, st.Score)})
			}
			fg.Stratifier = append(fg.Stratifier, fs)
		}
		f.Group = append(f.Group, fg)
	}
	return f, nil
}

// excludedJSON is one ips-excluded extension: the reason, and the count
// or, withheld, a count with no value and data-absent-reason masked.
func excludedJSON(e Exclusion) fhirExt {
	count := fhirExt{URL: "count"}
	if e.State == Exact {
		v := e.Value
		count.ValueUnsignedInt = &v
	} else {
		count.Extension = []fhirExt{absent("masked")}
	}
	return fhirExt{URL: ExtExcluded, Extension: []fhirExt{{URL: "reason", ValueCode: e.Reason}, count}}
}

// parseExcluded reads an ips-excluded extension.
func parseExcluded(x fhirExt) (Exclusion, error) {
	var e Exclusion
	var reason, count bool
	for _, sub := range x.Extension {
		switch {
		case sub.URL == "reason" && !reason && sub.ValueCode != "":
			e.Reason, reason = sub.ValueCode, true
		case sub.URL == "count" && !count && sub.ValueUnsignedInt != nil && *sub.ValueUnsignedInt >= 0:
			e.Value, e.State, count = *sub.ValueUnsignedInt, Exact, true
		case sub.URL == "count" && !count && sub.ValueUnsignedInt == nil && hasAbsent(sub.Extension, "masked"):
			e.State, count = Masked, true
		default:
			return e, errors.New("not one reason (a code) and one count (an unsignedInt, or withheld)")
		}
	}
	if !reason || !count {
		return e, errors.New("needs a reason and a count")
	}
	return e, nil
}

func populationsJSON(cs []Count) []fhirPopulation {
	out := make([]fhirPopulation, len(cs))
	for i, c := range cs {
		p := fhirPopulation{Code: cc(SystemMeasurePopulation, c.Population)}
		switch c.State {
		case Exact:
			v := c.Value
			p.Count = &v
		case AtLeast:
			v := c.Value
			p.CountExt = &fhirElement{Extension: []fhirExt{absent("masked"), {URL: ExtLowerBound, ValueInteger: &v}}}
		default:
			p.CountExt = &fhirElement{Extension: []fhirExt{absent("masked")}}
		}
		out[i] = p
	}
	return out
}

func scoreJSON(g *groupDef, s Score) *fhirQuantity {
	if g.score == scoreNone {
		return nil
	}
	q := &fhirQuantity{}
	withUnit := func(q *fhirQuantity, v float64) {
		q.Value = &v
		q.Unit, q.System, q.Code = g.scoreUnit(s.Unit)
	}
	switch s.State {
	case Exact:
		withUnit(q, s.Value)
	case Masked:
		q.Extension = []fhirExt{absent("masked")}
	case AtLeast:
		lb := &fhirQuantity{}
		withUnit(lb, s.Value)
		q.Extension = []fhirExt{absent("masked"), {URL: ExtLowerBound, ValueQuantity: lb}}
	case Unsupported:
		q.Extension = []fhirExt{absent("unsupported")}
	default:
		q.Extension = []fhirExt{absent("not-applicable")}
	}
	return q
}

// ParseError is a report that cannot be read: Path names the element (never
// a value).
type ParseError struct {
	Path string
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ErrNotReport is the error of ParseJSON for JSON that is neither a
// MeasureReport nor a Bundle of them.
var ErrNotReport = errors.New("not a FHIR MeasureReport or a Bundle of MeasureReports")

// ParseJSON reads a summary MeasureReport of one of the published measures,
// or a Bundle of them, as JSON and Bundle write them.
func ParseJSON(data []byte) ([]*Report, error) {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, ErrNotReport
	}
	switch head.ResourceType {
	case "MeasureReport":
		r, err := parseReport(data, "MeasureReport")
		if err != nil {
			return nil, err
		}
		return []*Report{r}, nil
	case "Bundle":
		var b fhirBundle
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, ErrNotReport
		}
		var out []*Report
		for i, e := range b.Entry {
			path := fmt.Sprintf("Bundle.entry[%d].resource", i)
			head.ResourceType = ""
			if err := json.Unmarshal(e.Resource, &head); err != nil || head.ResourceType != "MeasureReport" {
				return nil, &ParseError{Path: path, Msg: "not a MeasureReport"}
			}
			r, err := parseReport(e.Resource, path)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		if len(out) == 0 {
			return nil, &ParseError{Path: "Bundle", Msg: "holds no MeasureReport"}
		}
		return out, nil
	}
	return nil, ErrNotReport
}

func parseReport(data []byte, path string) (*Report, error) {
	var f fhirReport
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&f); err != nil {
		return nil, &ParseError{Path: path, Msg: "not a MeasureReport this version of ipsfhir can read"}
	}
	bad := func(p, msg string) error { return &ParseError{Path: path + p, Msg: msg} }
	if f.Status != "complete" || f.Type != "summary" {
		return nil, bad("", "not a complete summary MeasureReport")
	}
	url, _, _ := strings.Cut(f.Measure, "|")
	id, ok := strings.CutPrefix(url, mappings.CanonicalBase+"/Measure/")
	m := measureByID(id)
	if !ok || m == nil {
		return nil, bad(".measure", "not an ipsfhir outcome measure")
	}
	r := &Report{Measure: m.id}
	if f.Period == nil {
		return nil, bad(".period", "missing")
	}
	q, ok := quarterOfPeriod(f.Period.Start, f.Period.End)
	if !ok {
		return nil, bad(".period", "not a calendar quarter")
	}
	r.Quarter = q
	if f.Date != "" {
		if r.Date, ok = parseDateTime(f.Date); !ok {
			return nil, bad(".date", "not a FHIR dateTime")
		}
	}
	if f.Reporter != nil && f.Reporter.Identifier != nil {
		switch id := f.Reporter.Identifier; {
		case id.System == SystemProgram:
			r.Program = id.Value
			if !programPattern.MatchString(r.Program) {
				return nil, bad(".reporter.identifier.value", "not a program id")
			}
		case id.System != "" || id.Value != "":
			r.Reporter = Identifier{System: id.System, Value: id.Value}
			if !validReporter(r.Reporter) {
				return nil, bad(".reporter.identifier", "not an identifier with an absolute URI system and a value")
			}
		}
	}
	noConsent := false
	for i, e := range f.Extension {
		switch {
		case e.URL == ExtSuppressionThreshold && e.ValuePositiveInt != nil:
			r.Threshold = *e.ValuePositiveInt
		case e.URL == ExtExcluded:
			x, err := parseExcluded(e)
			if err != nil {
				return nil, bad(fmt.Sprintf(".extension[%d]", i), "ips-excluded: "+err.Error())
			}
			noConsent = noConsent || x.Reason == ExcludedNoHIEConsent
			r.Excluded = append(r.Excluded, x)
		}
	}
	if err := validExclusions(r.Excluded); err != nil {
		return nil, bad(".extension", "ips-excluded: "+err.Error())
	}
	// A report that states its exclusions but not the clients without HIE
	// consent counted them: it is a program's own report. One that states
	// none is of an earlier version, which counted consenting clients only.
	r.Audience = AudienceHIE
	if len(r.Excluded) > 0 && !noConsent {
		r.Audience = AudienceProgram
	}
	if len(f.Group) != len(m.groups) {
		return nil, bad(".group", fmt.Sprintf("has %d groups; measure %s has %d", len(f.Group), m.id, len(m.groups)))
	}
	for gi, fg := range f.Group {
		gp := fmt.Sprintf(".group[%d]", gi)
		gd := &m.groups[gi]
		if code := codeOf(fg.Code, SystemOutcome); code != gd.code {
			return nil, bad(gp+".code", "not the measure's group "+gd.code)
		}
		g := Group{Code: gd.code}
		var err error
		if g.Populations, err = parsePopulations(fg.Population, gd, path+gp); err != nil {
			return nil, err
		}
		if g.Score, err = parseScore(fg.MeasureScore, gd, path+gp+".measureScore"); err != nil {
			return nil, err
		}
		for si, fs := range fg.Stratifier {
			sp := fmt.Sprintf("%s.stratifier[%d]", gp, si)
			code := ""
			if len(fs.Code) == 1 {
				code = codeOf(&fs.Code[0], SystemOutcome)
			}
			if code != StratifierProgram && code != StratifierSpecialist {
				return nil, bad(sp+".code", "not a stratifier of the ipsfhir outcome measures")
			}
			s := Stratifier{Code: code}
			for ti, ft := range fs.Stratum {
				tp := fmt.Sprintf("%s%s.stratum[%d]", path, sp, ti)
				if ft.Value == nil || len(ft.Value.Coding) != 1 || ft.Value.Coding[0].System == "" || ft.Value.Coding[0].Code == "" {
					return nil, &ParseError{Path: tp + ".value", Msg: "not a single coding"}
				}
				st := Stratum{System: ft.Value.Coding[0].System, Code: ft.Value.Coding[0].Code}
				if st.Populations, err = parsePopulations(ft.Population, gd, tp); err != nil {
					return nil, err
				}
				if st.Score, err = parseScore(ft.MeasureScore, gd, tp+".measureScore"); err != nil {
					return nil, err
				}
				s.Strata = append(s.Strata, st)
			}
			g.Stratifiers = append(g.Stratifiers, s)
		}
		r.Groups = append(r.Groups, g)
	}
	return r, nil
}

func codeOf(c *fhirCC, system string) string {
	if c == nil {
		return ""
	}
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}

func quarterOfPeriod(start, end string) (Quarter, bool) {
	s, err := ips.ParseDate(start)
	if err != nil {
		return Quarter{}, false
	}
	q := QuarterOf(s)
	return q, q.Start().String() == start && q.End().String() == end
}

func parsePopulations(fps []fhirPopulation, g *groupDef, path string) ([]Count, error) {
	if len(fps) != len(g.populations) {
		return nil, &ParseError{Path: path + ".population", Msg: fmt.Sprintf("has %d populations; group %s has %d", len(fps), g.code, len(g.populations))}
	}
	out := make([]Count, len(fps))
	for i, fp := range fps {
		pp := fmt.Sprintf("%s.population[%d]", path, i)
		want := g.populations[i].code
		if codeOf(fp.Code, SystemMeasurePopulation) != want {
			return nil, &ParseError{Path: pp + ".code", Msg: "not " + want}
		}
		c := Count{Population: want}
		switch {
		case fp.Count != nil:
			if *fp.Count < 0 {
				return nil, &ParseError{Path: pp + ".count", Msg: "negative"}
			}
			c.Value, c.State = *fp.Count, Exact
		case fp.CountExt != nil && hasAbsent(fp.CountExt.Extension, "masked"):
			c.State = Masked
			for _, e := range fp.CountExt.Extension {
				if e.URL == ExtLowerBound && e.ValueInteger != nil && *e.ValueInteger >= 0 {
					c.Value, c.State = *e.ValueInteger, AtLeast
				}
			}
		default:
			return nil, &ParseError{Path: pp + ".count", Msg: "neither a count nor withheld"}
		}
		out[i] = c
	}
	return out, nil
}

func hasAbsent(exts []fhirExt, reason string) bool {
	for _, e := range exts {
		if e.URL == ExtDataAbsentReason && e.ValueCode == reason {
			return true
		}
	}
	return false
}

func parseScore(q *fhirQuantity, g *groupDef, path string) (Score, error) {
	if g.score == scoreNone || q == nil {
		return Score{}, nil
	}
	unit, err := unitOf(q, g, path)
	if err != nil {
		return Score{}, err
	}
	switch {
	case q.Value != nil:
		return Score{Value: *q.Value, Unit: unit, State: Exact}, nil
	case hasAbsent(q.Extension, "masked"):
		for i, e := range q.Extension {
			if e.URL == ExtLowerBound && e.ValueQuantity != nil && e.ValueQuantity.Value != nil {
				u, err := unitOf(e.ValueQuantity, g, fmt.Sprintf("%s.extension[%d].valueQuantity", path, i))
				if err != nil {
					return Score{}, err
				}
				return Score{Value: *e.ValueQuantity.Value, Unit: u, State: AtLeast}, nil
			}
		}
		return Score{Unit: unit, State: Masked}, nil
	case hasAbsent(q.Extension, "unsupported"):
		return Score{State: Unsupported}, nil
	case hasAbsent(q.Extension, "not-applicable"):
		return Score{}, nil
	}
	return Score{}, &ParseError{Path: path, Msg: "neither a value nor a data-absent-reason"}
}

// unitOf reads a score's unit as Score keeps it. A rate must be a number
// from 0 to 1: no unit, or UCUM 1 (a "%" would make 42.5 read as 4250%).
func unitOf(q *fhirQuantity, g *groupDef, path string) (string, error) {
	if g.score == scoreRate {
		if (q.Code != "" && q.Code != "1") || (q.Unit != "" && q.Unit != "1") || (q.System != "" && q.System != systemUCUM) {
			return "", &ParseError{Path: path, Msg: "a rate's unit must be UCUM 1 (a number from 0 to 1)"}
		}
		return "", nil
	}
	if q.Unit != "" {
		return q.Unit, nil
	}
	return q.Code, nil
}

// parseDateTime reads a FHIR dateTime: a year, a month, a day, or an
// instant with a time zone.
func parseDateTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
