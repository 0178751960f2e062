// Package telemetry is how ipsfhir tells its operators what it is doing
// without telling anyone about its clients.
//
// Everything the adapter moves is patient data: names, medical record
// numbers and other identifiers, dates of birth, the free text of goals and
// notes, and the FHIR search strings that carry identifiers
// ("Patient?identifier=…|MRN-…"). Logs, traces and metrics leave the
// process for places with weaker controls than the store (log shippers,
// collectors, dashboards, support tickets), so none of that may reach them.
// Instead of asking every caller to remember this, the package makes the
// safe thing the only thing that prints.
//
// # Logs
//
// [NewLogger] returns a log/slog logger whose handler rewrites every record
// before slog's JSON or text handler sees it:
//
//   - Attribute keys are an allow-list (see policy.go). A key that is not on
//     it keeps its name, if the name is a plain lowercase word, but its value
//     becomes "[redacted]", whatever its kind: an int under "mrn" is as
//     dangerous as a string. A key that is not a plain word (it could itself
//     be data, e.g. from a map) is replaced by "redacted_key".
//   - Each allowed key has a rule for its values. Numbers, durations and bools
//     pass only under numeric keys (attempt, count, duration, …), and bools
//     under flag keys (dead), where nothing else does. Strings pass
//     only when they match the narrow shape expected for that key: an enum
//     value for blame/outcome/direction/result/method, a FHIR R4 resource type
//     name for resource_type, a route template for route, HashID's output for
//     hashed_id, a lowercase token for op/connection/kind/caller/cause/….
//     Tokens may not
//     contain spaces, '@', '?', '=', '|', and may not hold more than two
//     digits, which is where identifiers, dates, emails, URLs with queries
//     and FHIR search strings fail.
//   - time.Time values pass only under "since" (when a failure or a run
//     began), and only when they look like the adapter's own clock: from
//     2000 on and not exactly midnight, which is what a date of birth looks
//     like once parsed into a time. They print as RFC 3339 in UTC, to the
//     second. Under any other key a time never passes, and a string never
//     passes as a time.
//   - Values of other kinds (structs, maps, slices, byte slices, JSON) never
//     pass: they are how request and response bodies get logged.
//   - Errors (under "error" or "err") print only a patient-free summary, see
//     [ErrorSummary]: the result of LogSafe() when the error or one it wraps
//     implements [LogSafer], otherwise its type names. Error strings are
//     never printed, because wrapped errors from HTTP clients and drivers
//     quote URLs, queries and values.
//   - Group names (slog.Group, Logger.WithGroup) are checked like keys.
//   - The message must look like a constant: lowercase words, small numbers,
//     a short list of acronyms (EHR, FHIR, …), FHIR resource type names and
//     route templates, at most 16 words. Anything else replaces the whole
//     message with "[redacted message]", because a message built with
//     fmt.Sprintf is the most common way a name ends up in a log.
//
// The patterns are a second line of defence. They cannot tell a single
// lowercase word that is a name from one that is an enum value, nor a
// lowercase sentence from a constant message; what keeps a name out of
// "op" is that nobody puts it there, and the allow-list makes that a
// reviewed change in this package rather than an accident elsewhere. To log
// something new, add its key and the narrowest rule that fits to policy.go,
// with a test. Config can check connection names with [IsToken] at load
// time, so that a name the policy would redact is refused with a message
// naming the key instead.
//
// To correlate records across log lines without revealing them, log
// [HashID] of the identifier under "hashed_id". It is a keyed HMAC, so an
// identifier cannot be recovered by hashing candidate MRNs unless the key
// leaks. The key is random per process unless one is configured
// ([SetHashKey], or Config.HashKey in [Setup]) so that replicas agree.
//
// # Traces and metrics
//
// [Setup] builds OpenTelemetry tracer and meter providers. Nothing leaves
// the process unless a collector is named: Config.OTLPEndpoint, or where it
// is empty the standard OTEL_EXPORTER_OTLP_ENDPOINT variable (or its
// per-signal OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and _METRICS_ENDPOINT), as
// any OpenTelemetry SDK reads them; OTEL_TRACES_EXPORTER or
// OTEL_METRICS_EXPORTER set to none keeps that signal in. Without a
// collector, spans are never sampled (they still carry trace ids, for
// correlation) and metrics are only served in Prometheus text format by
// [Telemetry.MetricsHandler], from a registry of its own so that nothing
// registered globally by a dependency shows up. Setup does not touch the
// otel globals; wiring is explicit in cmd/ipsfhir.
//
// Span names, span attributes and metric attributes follow the same rule as
// logs. Metric attributes must also be bounded, because every distinct value
// is a time series kept forever: [MetricAttrs] builds the standard set
// (connection, resource_type, status_class, blame), mapping anything that
// fails its rule to "invalid" rather than passing it on. [RecordSpanError]
// records an error on a span with its summary instead of its message.
//
// [SyncMetrics] defines the sync engine's instruments here so that their
// names, units and attributes are the same wherever they are recorded.
//
// Package telemetrytest captures all three signals in memory so that any
// package can prove in its tests that planted patient data reaches none of
// them.
package telemetry
