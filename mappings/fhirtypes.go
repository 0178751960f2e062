package mappings

import (
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/jsonformat"

	"github.com/ipsfhir/ipsfhir/ips"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
)

// Small constructors for google/fhir/go R4 datatypes. They keep the mapping
// files readable: one line per FHIR element instead of five of proto nesting.

func fstr(s string) *dtpb.String {
	if s == "" {
		return nil
	}
	return &dtpb.String{Value: s}
}

func furi(s string) *dtpb.Uri { return &dtpb.Uri{Value: s} }

func fcode(s string) *dtpb.Code { return &dtpb.Code{Value: s} }

func fcoding(system, code, display string) *dtpb.Coding {
	return &dtpb.Coding{System: furi(system), Code: fcode(code), Display: fstr(display)}
}

func fconcept(system, code, display string) *dtpb.CodeableConcept {
	return &dtpb.CodeableConcept{Coding: []*dtpb.Coding{fcoding(system, code, display)}}
}

func fbool(b bool) *dtpb.Boolean { return &dtpb.Boolean{Value: b} }

func fdecimal(v float64) *dtpb.Decimal {
	return &dtpb.Decimal{Value: strconv.FormatFloat(v, 'f', -1, 64)}
}

// fdate encodes a calendar date as google/fhir/go does: microseconds since the
// epoch at midnight in the named zone, with day precision.
func fdate(d ips.Date) *dtpb.Date {
	return &dtpb.Date{ValueUs: d.Time().UnixMicro(), Timezone: "UTC", Precision: dtpb.Date_DAY}
}

func fdateTime(d ips.Date) *dtpb.DateTime {
	return &dtpb.DateTime{ValueUs: d.Time().UnixMicro(), Timezone: "UTC", Precision: dtpb.DateTime_DAY}
}

func finstant(t time.Time) *dtpb.Instant {
	return &dtpb.Instant{ValueUs: t.Truncate(time.Second).UnixMicro(), Timezone: "UTC", Precision: dtpb.Instant_SECOND}
}

func fperiod(start, end ips.Date) *dtpb.Period {
	p := &dtpb.Period{}
	if !start.IsZero() {
		p.Start = fdateTime(start)
	}
	if !end.IsZero() {
		p.End = fdateTime(end)
	}
	return p
}

func fquantity(v float64, system, code, unit string) *dtpb.Quantity {
	return &dtpb.Quantity{Value: fdecimal(v), System: furi(system), Code: fcode(code), Unit: fstr(unit)}
}

func fidentifier(system, value string) *dtpb.Identifier {
	return &dtpb.Identifier{System: furi(system), Value: &dtpb.String{Value: value}}
}

func fannotation(text string) *dtpb.Annotation {
	return &dtpb.Annotation{Text: &dtpb.Markdown{Value: text}}
}

// fref is a reference to another entry of the same Bundle (urn:uuid) or to a
// literal EHR resource.
func fref(uri string) *dtpb.Reference {
	return &dtpb.Reference{Reference: &dtpb.Reference_Uri{Uri: &dtpb.String{Value: uri}}}
}

// literalRef is fref for a reference that may be relative ("Goal/123"),
// stored the way google/fhir/go stores parsed references so that mapped and
// parsed resources compare equal.
func literalRef(ref string) *dtpb.Reference {
	r := fref(ref)
	if !strings.HasPrefix(ref, "urn:") {
		_ = jsonformat.NormalizeReference(r)
	}
	return r
}

// Reading back.

// dateFromDateTime reads the calendar date a FHIR dateTime names. A dateTime
// with a time of day is read in its own zone, so 2026-03-01T23:00:00-05:00 is
// 1 March, as the writer meant.
func dateFromDateTime(dt *dtpb.DateTime) ips.Date {
	if dt == nil {
		return ips.Date{}
	}
	t := time.UnixMicro(dt.GetValueUs())
	if loc, err := zone(dt.GetTimezone()); err == nil {
		t = t.In(loc)
	} else {
		t = t.UTC()
	}
	return ips.DateOf(t)
}

func dateFromDate(d *dtpb.Date) ips.Date {
	if d == nil {
		return ips.Date{}
	}
	t := time.UnixMicro(d.GetValueUs())
	if loc, err := zone(d.GetTimezone()); err == nil {
		t = t.In(loc)
	} else {
		t = t.UTC()
	}
	return ips.DateOf(t)
}

// zone understands the two forms google/fhir/go stores: an IANA name or an
// offset such as "-05:00" / "Z".
func zone(tz string) (*time.Location, error) {
	switch tz {
	case "", "Z", "UTC":
		return time.UTC, nil
	}
	if strings.HasPrefix(tz, "+") || strings.HasPrefix(tz, "-") {
		t, err := time.Parse("-07:00", tz)
		if err != nil {
			return nil, err
		}
		return t.Location(), nil
	}
	return time.LoadLocation(tz)
}

func parseDecimal(d *dtpb.Decimal) (float64, bool) {
	if d == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(d.GetValue(), 64)
	return v, err == nil
}

// codingIn returns the first coding of cc in system, or nil.
func codingIn(cc *dtpb.CodeableConcept, system string) *dtpb.Coding {
	for _, c := range cc.GetCoding() {
		if c.GetSystem().GetValue() == system {
			return c
		}
	}
	return nil
}

func hasCoding(cc *dtpb.CodeableConcept, system, code string) bool {
	for _, c := range cc.GetCoding() {
		if c.GetSystem().GetValue() == system && c.GetCode().GetValue() == code {
			return true
		}
	}
	return false
}

// referenceString renders a Reference's literal target, whichever way
// google/fhir/go stored it: "Patient/123", "urn:uuid:…", or "".
func referenceString(r *dtpb.Reference) string {
	if r == nil {
		return ""
	}
	if u := r.GetUri(); u != nil {
		return u.GetValue()
	}
	if f := r.GetFragment(); f != nil {
		return "#" + f.GetValue()
	}
	m := r.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("reference")
	if od == nil {
		return ""
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return ""
	}
	id, ok := m.Get(fd).Message().Interface().(*dtpb.ReferenceId)
	if !ok {
		return ""
	}
	typ := resourceTypeOfRefField(string(fd.Name()))
	s := typ + "/" + id.GetValue()
	if h := id.GetHistory().GetValue(); h != "" {
		s += "/_history/" + h
	}
	return s
}

// resourceTypeOfRefField turns google/fhir/go's oneof field name
// ("care_plan_id") back into a FHIR type name ("CarePlan").
func resourceTypeOfRefField(field string) string {
	field = strings.TrimSuffix(field, "_id")
	var b strings.Builder
	for _, part := range strings.Split(field, "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
