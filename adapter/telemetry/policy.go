package telemetry

import (
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Redacted replaces any attribute value that the policy does not let
// through. It is exported so that tests elsewhere can assert that a value
// was redacted rather than dropped.
const Redacted = "[redacted]"

// RedactedMessage replaces a log message that does not look like a
// constant.
const RedactedMessage = "[redacted message]"

// redactedKey replaces a key or group name that is not a plain word: a key
// built from data (a map key, a header name, an identifier) is data.
const redactedKey = "redacted_key"

// A rule decides whether a resolved value may be printed under its key,
// and returns the value to print. Rules never return the input when they
// reject it.
type rule func(v slog.Value) (slog.Value, bool)

// allowList is the whole logging policy: the keys that may carry a value,
// each with the narrowest rule that fits what the adapter means by it.
// Adding a key here is a privacy review; see doc.go.
var allowList = map[string]rule{
	// What the adapter was doing, and where.
	"op":            token,
	"component":     token,
	"connection":    token,
	"kind":          token,
	"error_kind":    token,
	"phase":         token,
	"mode":          token,
	"reason":        token,
	"concept":       token,
	"write_path":    token,
	"detection":     token,
	"issue_code":    token,
	"service":       token,
	"signal":        token,
	"format":        token,
	"vendor":        token,
	"action":        token,
	"state":         token,
	"step":          token,
	"queue":         token,
	"table":         token,
	"worker":        oneOf(number, token),
	"blame":         enum("client", "server", "external", "none"),
	"direction":     enum("push", "pull"),
	"outcome":       enum("written", "unchanged", "failed", "conflict", "skipped"),
	"result":        enum("ok", "error"),
	"method":        enum("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
	"status_class":  enum("1xx", "2xx", "3xx", "4xx", "5xx", "none", "invalid"),
	"status":        oneOf(httpStatus, token),
	"route":         route,
	"resource_type": resourceType,
	"hashed_id":     hashedID,
	"version":       version,
	"addr":          addr,
	"trace_id":      hexDigits(32),
	"span_id":       hexDigits(16),

	// caller is the configured name of the API key that made a request
	// ("sync-bot", "jordan"): an account, not a client of the program.
	"caller": token,
	// cause is a transport failure's cause ("reset", "timeout").
	"cause": token,

	// How much and how long. Counts of patient records are not patient
	// data; a count under any other key might be an MRN.
	"attempt":      number,
	"attempts":     number,
	"failed":       number,
	"max_attempts": number,
	"count":        number,
	"total":        number,
	"depth":        number,
	"pending":      number,
	"batch":        number,
	"limit":        number,
	"size":         number,
	"bytes":        number,
	"duration":     number,
	"elapsed":      number,
	"lag":          number,
	"age":          number,
	"backoff":      number,
	"retry_after":  number,
	"timeout":      number,
	"interval":     number,
	"wait":         number,
	"enabled":      number,

	// Whether an outbox item was dead-lettered.
	"dead": boolean,
	// When a failure or a run began.
	"since": instant,

	"error": errorValue,
	"err":   errorValue,
}

// sanitize returns the attribute as it may be printed. Group members are
// judged by their own keys, so slog.Group("ehr", slog.String("route", r))
// keeps the route.
func sanitize(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		// slog drops empty attributes; keep it that way rather than
		// printing a redacted one.
		return slog.Attr{}
	}
	if v.Kind() == slog.KindGroup {
		members := v.Group()
		out := make([]slog.Attr, 0, len(members))
		for _, m := range members {
			out = append(out, sanitize(m))
		}
		key := a.Key
		if key != "" { // "" inlines the group's members; keep that meaning.
			key = safeKey(key)
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(out...)}
	}
	r, ok := allowList[a.Key]
	if !ok {
		return slog.String(safeKey(a.Key), Redacted)
	}
	sv, ok := r(v)
	if !ok {
		return slog.String(a.Key, Redacted)
	}
	return slog.Attr{Key: a.Key, Value: sv}
}

var keyShape = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// safeKey keeps a key or group name only when it is a plain lowercase word
// that does not look like an identifier, so that a key built from data is
// not printed while a forgotten key still shows up (redacted) in the log.
func safeKey(k string) string {
	if keyShape.MatchString(k) && !identifierLike(k) {
		return k
	}
	return redactedKey
}

// identifierLike reports whether s has more than two digits. Identifiers,
// dates, phone numbers, UUIDs and hex ids do; enum words rarely need more
// than "v1", "oauth2" or "2xx". Software versions and status codes have
// rules of their own.
func identifierLike(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			digits++
			if digits > 2 {
				return true
			}
		}
	}
	return false
}

// stringOf returns the string held by v: a string value, or a named string
// type or fmt.Stringer passed through slog.Any (typed enums such as Blame).
// The result is only ever printed after a rule has accepted it.
func stringOf(v slog.Value) (string, bool) {
	switch v.Kind() {
	case slog.KindString:
		return v.String(), true
	case slog.KindAny:
		a := v.Any()
		if a == nil {
			return "", false
		}
		if rv := reflect.ValueOf(a); rv.Kind() == reflect.String {
			return rv.String(), true
		}
		if s, ok := a.(fmt.Stringer); ok {
			return callString(s.String)
		}
	}
	return "", false
}

// callString calls a caller-supplied method (String, LogSafe) and turns a
// panic into a refusal: a logging call must not crash the adapter, and the
// panic value could hold anything.
func callString(f func() string) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	return f(), true
}

var tokenShape = regexp.MustCompile(`^[a-z][A-Za-z0-9_.:/-]{0,63}$`)

// IsToken reports whether s may be logged and used as a metric label under
// a token key such as "connection" or "op": it starts with a lowercase
// letter, has no spaces or query characters, at most 64 characters and at
// most two digits. Config can validate connection names with it, so that a
// name is rejected at start rather than redacted in every log line.
func IsToken(s string) bool {
	return s != "" && tokenShape.MatchString(s) && !identifierLike(s)
}

// token accepts enum-ish words: "ehr.write", "epic-sandbox", "not_found",
// "chart_note". It rejects spaces (free text), capitals at the start
// (names), '@' (emails), '?', '=', '|' and '&' (queries and FHIR search
// strings), and identifier-like digits.
func token(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok {
		return slog.Value{}, false
	}
	if s != "" && !IsToken(s) {
		return slog.Value{}, false
	}
	return slog.StringValue(s), true
}

func enum(values ...string) rule {
	set := make(map[string]bool, len(values))
	for _, v := range values {
		set[v] = true
	}
	return func(v slog.Value) (slog.Value, bool) {
		s, ok := stringOf(v)
		if !ok || !set[s] {
			return slog.Value{}, false
		}
		return slog.StringValue(s), true
	}
}

// number accepts counts, durations and flags. Strings that hold numbers
// do not pass: a string is how an identifier arrives.
func number(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration:
		return v, true
	case slog.KindAny:
		// slog.Any with a named integer type (an enum) arrives as KindAny.
		if a := v.Any(); a != nil {
			switch rv := reflect.ValueOf(a); rv.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				return slog.Int64Value(rv.Int()), true
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				return slog.Uint64Value(rv.Uint()), true
			case reflect.Float32, reflect.Float64:
				return slog.Float64Value(rv.Float()), true
			case reflect.Bool:
				return slog.BoolValue(rv.Bool()), true
			}
		}
	}
	return slog.Value{}, false
}

// boolean accepts true and false only, as a bool (slog.Bool, or slog.Any
// of a bool type), so a flag key cannot carry a count or a string.
func boolean(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindBool:
		return v, true
	case slog.KindAny:
		if a := v.Any(); a != nil {
			if rv := reflect.ValueOf(a); rv.Kind() == reflect.Bool {
				return slog.BoolValue(rv.Bool()), true
			}
		}
	}
	return slog.Value{}, false
}

// instant accepts a time.Time that reads like the adapter's own clock (when
// an item started failing, when a run began) and prints it RFC 3339 in UTC
// to the second. A date of birth is a time too, and one parsed from a
// record sits exactly at midnight, usually before 2000: those are refused.
// Strings are refused, since a string is how a date arrives from a record.
func instant(v slog.Value) (slog.Value, bool) {
	if v.Kind() != slog.KindTime {
		return slog.Value{}, false
	}
	t := v.Time()
	if h, m, s := t.Clock(); h == 0 && m == 0 && s == 0 && t.Nanosecond() == 0 {
		return slog.Value{}, false
	}
	if t.Year() < 2000 || t.Year() > 9999 {
		return slog.Value{}, false
	}
	return slog.StringValue(t.UTC().Format(time.RFC3339)), true
}

func oneOf(rules ...rule) rule {
	return func(v slog.Value) (slog.Value, bool) {
		for _, r := range rules {
			if out, ok := r(v); ok {
				return out, true
			}
		}
		return slog.Value{}, false
	}
}

var statusShape = regexp.MustCompile(`^[1-5][0-9][0-9]$`)

// httpStatus accepts an HTTP status code, as a number or a string.
func httpStatus(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindInt64:
		if n := v.Int64(); n >= 100 && n <= 599 {
			return v, true
		}
	case slog.KindUint64:
		if n := v.Uint64(); n >= 100 && n <= 599 {
			return v, true
		}
	case slog.KindString:
		if statusShape.MatchString(v.String()) {
			return v, true
		}
	}
	return slog.Value{}, false
}

var (
	routeParam   = regexp.MustCompile(`^\{[A-Za-z_][A-Za-z0-9_]*(:[^{}/?]*)?\}$`)
	routeLiteral = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
	routeOp      = regexp.MustCompile(`^\$[a-z][a-z-]*$`)
	routeSpecial = regexp.MustCompile(`^_[a-z]+$`)
)

// route accepts a route template ("/api/v1/clients/{id}",
// "/fhir/{type}/{id}/_history/{vid}", "/fhir/Patient/$export"), never a
// request path: every segment must be a placeholder, a lowercase word, a
// FHIR resource type, a $operation or an _underscore word, so concrete
// ids and query strings fail.
func route(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok || !strings.HasPrefix(s, "/") || len(s) > 200 || strings.ContainsAny(s, "?#") {
		return slog.Value{}, false
	}
	if s == "/" {
		return slog.StringValue(s), true
	}
	segs := strings.Split(strings.TrimSuffix(s[1:], "/"), "/")
	for _, seg := range segs {
		switch {
		case routeParam.MatchString(seg),
			routeOp.MatchString(seg),
			routeSpecial.MatchString(seg),
			IsResourceType(seg),
			routeLiteral.MatchString(seg) && !identifierLike(seg):
		default:
			return slog.Value{}, false
		}
	}
	return slog.StringValue(s), true
}

func resourceType(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok || !IsResourceType(s) {
		return slog.Value{}, false
	}
	return slog.StringValue(s), true
}

var resourceTypes = sync.OnceValue(func() map[string]bool {
	// The oneof of ContainedResource has one field per R4 resource type,
	// each typed by the resource's message, whose name is the FHIR type
	// name. Reading it from the library we map with means the list cannot
	// drift from the resources the adapter can actually produce.
	od := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource")
	fields := od.Fields()
	set := make(map[string]bool, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		set[string(fields.Get(i).Message().Name())] = true
	}
	return set
})

// IsResourceType reports whether s is the name of a FHIR R4 resource type
// ("Goal", "CarePlan"). Resource type names are safe in logs, spans and
// metric attributes; a capitalised word that is not one may be a name.
func IsResourceType(s string) bool {
	return resourceTypes()[s]
}

var hashedIDShape = regexp.MustCompile(`^h:[0-9a-f]{16}$`)

func hashedID(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok || !hashedIDShape.MatchString(s) {
		return slog.Value{}, false
	}
	return slog.StringValue(s), true
}

var versionShape = regexp.MustCompile(`^(v?[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(-[0-9A-Za-z.]{1,32})?(\+[0-9A-Za-z.]{1,40})?|dev|\(devel\))$`)

// version accepts software versions (semver, "dev", Go's "(devel)"). A
// FHIR resource's versionId is not a software version: on some servers it
// is a UUID, which is an identifier.
func version(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok || !versionShape.MatchString(s) {
		return slog.Value{}, false
	}
	return slog.StringValue(s), true
}

var addrShape = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{0,253}):[0-9]{1,5}$`)

// addr accepts a listen or dial address (host:port), which names a machine,
// never a person.
func addr(v slog.Value) (slog.Value, bool) {
	s, ok := stringOf(v)
	if !ok || !addrShape.MatchString(s) {
		return slog.Value{}, false
	}
	return slog.StringValue(s), true
}

func hexDigits(n int) rule {
	shape := regexp.MustCompile(fmt.Sprintf(`^[0-9a-f]{%d}$`, n))
	return func(v slog.Value) (slog.Value, bool) {
		s, ok := stringOf(v)
		if !ok || !shape.MatchString(s) {
			return slog.Value{}, false
		}
		return slog.StringValue(s), true
	}
}

// errorValue prints an error's summary, never its message. A string under
// "error" (someone logged err.Error()) is held to the message rule.
func errorValue(v slog.Value) (slog.Value, bool) {
	if v.Kind() == slog.KindAny {
		if err, ok := v.Any().(error); ok {
			return slog.StringValue(ErrorSummary(err)), true
		}
		if v.Any() == nil {
			return slog.StringValue("nil"), true
		}
	}
	if v.Kind() == slog.KindString {
		if s := v.String(); safeText(s) {
			return slog.StringValue(s), true
		}
	}
	return slog.Value{}, false
}

// acronyms may appear in messages in capitals; other capitalised words
// may be names. None of them is a person's name.
var acronyms = map[string]bool{
	"API": true, "CLI": true, "CSV": true, "EHR": true, "FHIR": true,
	"HIE": true, "HTTP": true, "HTTPS": true, "ID": true, "IPS": true,
	"JSON": true, "JWT": true, "NDJSON": true, "OK": true, "OTLP": true,
	// HTTP methods, as in the default operation name of an EHR call
	// ("GET Goal: http-5xx").
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true,
	"SMART": true, "SQL": true, "SQLite": true, "PostgreSQL": true,
	"TLS": true, "URL": true, "YAML": true, "R4": true,
}

var (
	wordShape   = regexp.MustCompile(`^[a-z][a-z0-9_./'-]*$`)
	numberShape = regexp.MustCompile(`^[0-9]{1,3}$`)
)

const (
	maxMessageLen   = 160
	maxMessageWords = 16
)

// safeText reports whether s reads like a constant message: short, made of
// lowercase words, small numbers, known acronyms, FHIR resource type names
// and route templates. It is all or nothing: a message with one suspect
// word is replaced whole, since the rest of it would frame the redacted
// part ("wrote goal for [redacted]") and free text is mostly lowercase.
func safeText(s string) bool {
	if len(s) > maxMessageLen {
		return false
	}
	words := strings.Fields(s)
	if len(words) > maxMessageWords {
		return false
	}
	for _, w := range words {
		w = strings.TrimLeft(w, "(\"'")
		w = strings.TrimRight(w, ".,:;!)\"'")
		switch {
		case w == "" || w == "-" || w == "->" || w == "=":
		case wordShape.MatchString(w) && !identifierLike(w):
		case numberShape.MatchString(w):
		case acronyms[w], IsResourceType(w):
		case strings.HasPrefix(w, "/"):
			if _, ok := route(slog.StringValue(w)); !ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func safeMessage(msg string) string {
	if safeText(msg) {
		return msg
	}
	return RedactedMessage
}
