// Package ehr is the FHIR R4 client ipsfhir uses to talk to one clinic EHR.
//
// One Client serves one EHR connection. The sync engine declares the small
// interfaces it needs over it (read, search, create, update, transaction)
// and never sees HTTP: it gets *Response values, or an *Error whose Kind
// tells it what to do next. Everything goes through Do, which wraps
// github.com/hashicorp/go-retryablehttp configured for an EHR rather than
// with that library's defaults.
//
// # Retries: only what is safe to repeat
//
// A lost answer is the dangerous case. If a plain POST (a create) times out
// or its connection drops after the EHR received it, the EHR may have
// created the resource; sending it again makes a duplicate in a patient's
// chart, which a clinician then sees twice and someone has to clean up by
// hand. So the client sorts requests into two groups:
//
//   - safe to repeat: GET, HEAD, PUT, DELETE (idempotent by HTTP), and a
//     POST or PATCH the caller marks Idempotent because it is a conditional
//     create (If-None-Exist), a search via POST, or a transaction whose
//     entries are all conditional;
//   - not safe: every other POST and PATCH, and a PUT sent with
//     UpdateOnce (a first write that may create the resource: a copy of
//     it applied late would undo what was written after it).
//
// Both are retried on 429 and 503 (the server says it did not process the
// request) and on connection failures that happened before anything was
// sent (a refused connection, a failed DNS lookup). Only the first group is
// retried on 502, 504, timeouts and connections lost mid-request. A request
// of the second group that meets one of those fails at once with
// KindOutcomeUnknown (errors.Is(err, ErrOutcomeUnknown)): the caller must look
// the resource up by its business identifier before deciding to create it
// again. The same holds when the caller's context ends while such a request
// is in flight.
//
// Reads (GET, HEAD, and the POST [type]/_search that Search sends for a
// long query; a POST sent through Do counts as a write even when marked
// Idempotent) are also retried on every other 5xx, 500 included, but not
// 501 (the EHR does not do this at all: KindNotAllowed). A read changes
// nothing, and an EHR under load answers the odd 500 to a read that
// succeeds a moment later; failing the call would stop a readiness check
// or cost a sync pass the outbox's 30 s wait. A write that meets a 500 (a
// POST, conditional or not, a PUT, a DELETE, a PATCH) is not retried here:
// a 500 is often that request's fault and would fail again. It is
// KindTransient, for the outbox to retry later with its slower schedule.
//
// An If-Match PUT that was applied but whose answer was lost answers 412 on
// the retry, because the version moved on: our own write, seen as a
// conflict. Callers must resolve KindConflict by reading and comparing (the
// echo-suppression log recognises the content as ours), never by
// overwriting.
//
// Waiting between attempts: the server's Retry-After (seconds or an HTTP
// date) when it sends one, otherwise exponential backoff from 0.5 s doubling
// to at most 15 s, with jitter (half of each wait is random) so replicas that
// failed together do not come back together. A Retry-After longer than
// Options.MaxRetryAfter (default 60 s) or than the time left before the
// context's deadline is not waited out: the call ends with KindTransient, so
// the outbox reschedules the work instead of a worker sleeping for an hour
// on one EHR's say-so. Whenever the final answer is a 429 or 503 with a
// Retry-After, waited out before or not, Error.RetryAfter holds it, so the
// outbox does not come back sooner than the EHR asked. Attempts are bounded
// (Options.MaxAttempts, default 5; throttled attempts are free for a while,
// see below); the wait ends as soon as the context
// does. When the attempts run out the last response is kept (retryablehttp
// would drop it), so the Error carries the EHR's status and its
// OperationOutcome.
//
// # Pacing: concurrency, rate, throttling
//
// Every attempt of every call (retries included; not the token requests of
// Auth) passes the connection's limiter before it is sent: at most
// Options.MaxConcurrency (default 4) in flight at once, whichever
// goroutines send them, held until the answer has been read; at most
// Options.RequestsPerSecond per second (default 0: no bound); and none
// while the EHR has asked the connection to wait. Options.Timeout counts
// from the send, not from the wait for the limiter. A 429, or a 503 with
// Retry-After, pauses the whole connection for the Retry-After (at most
// MaxRetryAfter), so that every worker waits, not only the one throttled,
// and halves the connection's effective rate (not below 0.5 per second;
// with no rate configured, from the rate it was sending at). Requests
// throttled together halve it once. Answers that are not throttles raise
// it again by 5% of the configured rate per second (at least 0.5) until it
// is back there; with none configured, the limit is lifted once the rate is
// twice what it was sending at when throttled. The ipsfhir.ehr.rate_limit
// gauge (per second, label connection; 0 when unlimited) shows the
// effective rate.
//
// A 429 is slowing down, not failing: its attempts do not count towards
// MaxAttempts while the call has been throttled for less than
// Options.MaxThrottleWait (default 10 minutes), so a throttled call waits
// and succeeds rather than failing an outbox item. Past that, or for a
// Retry-After beyond MaxRetryAfter, the call ends as described above. A
// 503 slows the connection the same way but counts as an attempt: it is an
// outage, however politely announced.
//
// Redirects are not followed: FHIR APIs do not redirect, and following one
// would turn a POST into a GET or send the request where the base URL did
// not say. Search follows a Bundle's next links only when they stay under
// the base URL, for the same reason, and at most Options.MaxPages pages.
//
// # Auth: pluggable, refreshed once
//
// Options.Auth supplies the Authorization header: nil (none), Bearer (a
// static token handed over by the config package, which resolves env and
// file references), or a *SMARTBackend for SMART Backend Services: an OAuth
// client_credentials grant with a private_key_jwt client assertion signed
// RS384 or ES384 (iss = sub = client id, aud = token endpoint, a random jti,
// exp four minutes ahead, the key's kid in the header). The token endpoint is
// configured, or discovered from [base]/.well-known/smart-configuration and
// then used only on the FHIR base's origin (Origin): the assertion is a
// credential, and a discovery document naming another host is refused with
// ErrTokenEndpointOrigin rather than followed. The
// access token is cached until RefreshBefore (default 60 s) ahead of its
// expires_in, so no request leaves with a token about to expire; one fetch
// runs at a time. On a 401 the client drops the token, fetches a new one and
// sends the request once more, which is safe for any method because a 401
// means the request was not processed. A second 401 is KindAuth. JWKS
// renders the public keys for the adapter to serve at
// /.well-known/jwks.json, and LoadPrivateKey reads the PEM private key.
// Credentials are only sent over https (plain http only to loopback, for
// tests), TLS verification is always on, and Options.CAFile adds a private
// CA to the system roots rather than turning verification off.
// /metadata and the SMART configuration are fetched without credentials:
// they are public, and the readiness check must read them before any
// credential works.
//
// # What leaves the process
//
// FHIR URLs name patients (Goal?patient=..., identifier=...), and bodies and
// OperationOutcome diagnostics hold patient data. So retryablehttp's logger
// is off (it logs URLs), and the client logs through Options.Logger only the
// connection name, method, resource type, status, attempt, duration and the
// cause token of a transport failure, at Debug per attempt and per call,
// Warn for a failed call. Each call is one
// OpenTelemetry span ("ehr read Goal") with http.request.method,
// fhir.resource_type, http.response.status_code, http.request.resend_count
// and error.type (the kind); metrics are the ipsfhir.ehr.request.duration
// histogram (seconds) and the ipsfhir.ehr.requests counter with connection,
// method, resource_type, status_class (2xx, 3xx, 4xx, 5xx, error) and blame
// (client: a 4xx we caused; external: the EHR's 5xx, 408, 429, timeouts,
// connection and TLS failures; server: a request this package refused to
// build; none: success or a cancelled context). Error messages carry the
// operation, status, kind, OperationOutcome issue codes and, for a transport
// failure, a one-word cause (Error.Cause: "reset", "refused", "timeout",
// ...), never the cause's own text, which quotes socket addresses
// ("read tcp 10.0.0.5:41822->10.0.0.9:443: ..."): an address names the
// EHR's host, and makes every stored failure reason unique. Error.Token is
// one word for the whole failure ("http-5xx", "throttled", "reset",
// "conflict", ...) to group failures by and to log under a token key;
// Error.LogSafe ("update Goal: http-5xx") is what telemetry.ErrorSummary
// prints for an *Error. Attempt and call log lines name a transport
// failure by the same cause token, under "cause". The OperationOutcome
// itself is in Error.Outcome for an authorized reader and never in
// Error().
package ehr
