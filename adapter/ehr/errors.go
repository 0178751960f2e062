package ehr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind says what went wrong with an EHR call in terms a caller can act on.
// The values are stable: the sync engine and the admin API switch on them.
//
// A Kind is also an error, so the sentinels below are just Kinds and
// errors.Is(err, ehr.ErrConflict) matches any *Error of that kind.
type Kind uint8

const (
	// KindOther is anything not covered below (a 3xx we do not follow, an
	// unexpected 4xx, a TLS failure, a response we cannot read).
	KindOther Kind = iota
	// KindInvalid: the EHR rejected the request as malformed or invalid (400,
	// 422, 413, 414, 415), or the client refused to build it. Sending it again
	// will not help.
	KindInvalid
	// KindAuth: 401 or 403 (after one token refresh), or the token could not
	// be obtained because the token endpoint refused the client.
	KindAuth
	// KindNotFound: 404 or 410.
	KindNotFound
	// KindNotAllowed: the EHR does not support the interaction (405, 406,
	// 501). A capability problem: the sync plan should change, not retry.
	KindNotAllowed
	// KindConflict: 409 or 412 (a stale If-Match). Read, compare, write.
	KindConflict
	// KindTransient: the EHR is throttling or failing (408, 429, 5xx) or
	// unreachable, and the retries allowed for this call are spent, or the
	// context ended. Retry later. Error.RetryAfter may say when.
	KindTransient
	// KindOutcomeUnknown: a request that is not safe to repeat (a plain POST
	// or PATCH) was sent and its answer was lost (connection dropped,
	// timeout, 502/504 from a gateway). The EHR may or may not have applied
	// it. Look the resource up by its business identifier before trying
	// again; never just resend.
	KindOutcomeUnknown
)

// Sentinels, one per kind, for errors.Is.
var (
	ErrOther          error = KindOther
	ErrInvalid        error = KindInvalid
	ErrAuth           error = KindAuth
	ErrNotFound       error = KindNotFound
	ErrNotAllowed     error = KindNotAllowed
	ErrConflict       error = KindConflict
	ErrTransient      error = KindTransient
	ErrOutcomeUnknown error = KindOutcomeUnknown
)

var kindNames = [...]string{
	KindOther:          "other",
	KindInvalid:        "invalid",
	KindAuth:           "auth",
	KindNotFound:       "not-found",
	KindNotAllowed:     "not-allowed",
	KindConflict:       "conflict",
	KindTransient:      "transient",
	KindOutcomeUnknown: "outcome-unknown",
}

// String is the kind's stable name, e.g. "outcome-unknown".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error makes a Kind usable as a sentinel error.
func (k Kind) Error() string { return "ehr: " + k.String() }

// Error is the one error type of this package. Everything in Error() is free
// of patient data and of addresses: the operation (verb and resource type),
// the HTTP status, the kind, the FHIR issue codes, and for a transport
// failure a one-word cause ("reset", "refused", ...), never the cause's own
// text. A URL carries the search query that names the patient, and a
// socket address ("read tcp 10.0.0.5:41822->10.0.0.9:443") names the EHR's
// host and makes every failure reason unique, so the outbox and /admin
// could not group them.
type Error struct {
	// Op is the operation, e.g. "create Goal", "search Observation",
	// "transaction", "token".
	Op string
	// Status is the HTTP status of the final response, or 0 when there was
	// none.
	Status int
	// Kind classifies the failure.
	Kind Kind
	// Outcome is the OperationOutcome JSON the EHR answered, if any. It may
	// hold patient data (diagnostics often quote the request), so it is never
	// part of Error() and must not be logged; show it to an administrator
	// through an authorized channel only.
	Outcome []byte
	// IssueCodes are OperationOutcome.issue.code values (FHIR's issue-type
	// codes such as "invalid", "conflict", "not-found"), safe to log.
	IssueCodes []string
	// Attempts is how many times the request was sent (0 if never).
	Attempts int
	// RetryAfter is how long the EHR asked us to wait (its Retry-After
	// header) when the final answer was 429 or 503, whether the client
	// waited out earlier ones or stopped because this one exceeded
	// Options.MaxRetryAfter or the context's deadline. Zero when the final
	// answer was anything else or carried no Retry-After. The caller should
	// not try again sooner.
	RetryAfter time.Duration
	// Err is the underlying cause, if any (a transport error, a context
	// error, a token endpoint failure), for errors.Is and errors.As. Its
	// text is never part of Error(): transport errors quote socket
	// addresses. Cause names it instead.
	Err error

	// cause is the transport cause token, set by this package when Err is a
	// transport failure; Cause falls back on classifying Err.
	cause string
}

// Transport cause tokens, as Cause returns them.
const (
	causeTimeout    = "timeout"    // an attempt or the context's deadline ran out
	causeReset      = "reset"      // the EHR (or something between) reset or broke the connection
	causeRefused    = "refused"    // nothing listens at the EHR's address
	causeDNS        = "dns"        // the EHR's host name did not resolve
	causeTLS        = "tls"        // TLS verification or handshake failed
	causeEOF        = "eof"        // the connection closed before a whole answer arrived
	causeCanceled   = "canceled"   // the caller's context was cancelled
	causeConnection = "connection" // any other transport failure
)

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ehr: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if len(e.IssueCodes) > 0 {
		b.WriteString(" issues ")
		b.WriteString(strings.Join(e.IssueCodes, ","))
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; EHR asks to retry after %s", e.RetryAfter.Round(time.Second))
	}
	if s := e.causeText(); s != "" {
		b.WriteString(": ")
		b.WriteString(s)
	}
	return b.String()
}

// causeText is what Error() says about Err: a nested *Error's own message
// (as free of addresses as this one), the fixed text of a failure this
// package described itself, or the cause token. Any other text is left
// out: an Auth implementation's error or a library's may quote anything.
func (e *Error) causeText() string {
	switch err := e.Err.(type) {
	case nil:
		return ""
	case *Error:
		return err.Error()
	case *detail:
		return err.msg
	}
	return e.Cause()
}

// Cause is the transport cause as one token, or "" when the call did not
// fail in transport (the EHR answered, or the request was refused before it
// was sent):
//
//   - "timeout": an attempt or the context's deadline ran out;
//   - "reset": the connection was reset (ECONNRESET, EPIPE);
//   - "refused": the connection was refused (ECONNREFUSED);
//   - "dns": the EHR's host name did not resolve;
//   - "tls": TLS verification or the handshake failed;
//   - "eof": the connection closed before a whole answer arrived;
//   - "canceled": the caller's context was cancelled;
//   - "connection": any other transport failure.
//
// A failure to get a token (Err is the token endpoint's *Error) has that
// call's cause.
func (e *Error) Cause() string {
	if e.cause != "" {
		return e.cause
	}
	switch err := e.Err.(type) {
	case nil, *detail:
		return ""
	case *Error:
		return err.Cause()
	}
	return knownCause(e.Err)
}

// Token is one short constant-like word for grouping failures (the
// outbox's stored reason, /admin) and for logs under a token key such as
// error_kind:
//
//   - "outcome-unknown" for KindOutcomeUnknown;
//   - the transport cause (see Cause) when no HTTP error status came back;
//   - "throttled" for 429;
//   - "http-5xx" for a 5xx (except 501, which is "not-allowed");
//   - otherwise the kind's name: "invalid", "auth", "not-found",
//     "not-allowed", "conflict", "transient" (408) or "other".
//
// A call that failed getting its token has the token call's Token.
func (e *Error) Token() string {
	if e.Kind == KindOutcomeUnknown {
		return KindOutcomeUnknown.String()
	}
	if e.Status == 0 {
		if inner, ok := e.Err.(*Error); ok {
			return inner.Token()
		}
	}
	if e.Status < 300 {
		// No status, or a 2xx whose body could not be read.
		if c := e.Cause(); c != "" {
			return c
		}
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		return "throttled"
	case e.Status >= 500 && e.Kind != KindNotAllowed:
		return "http-5xx"
	}
	return e.Kind.String()
}

// LogSafe is "<op>: <token>", e.g. "update Goal: http-5xx", for
// telemetry.ErrorSummary: what a log line may say about the failure.
func (e *Error) LogSafe() string { return e.Op + ": " + e.Token() }

// detail is a cause this package wrote itself ("not a FHIR id"): fixed text
// that holds no data, so Error() may quote it. err, if set, is what it
// stands for (a sentinel, a library's error), for errors.Is and errors.As;
// its text is not used.
type detail struct {
	msg string
	err error
}

func (d *detail) Error() string { return d.msg }
func (d *detail) Unwrap() error { return d.err }

// because returns a detail with the fixed text msg.
func because(msg string) error { return &detail{msg: msg} }

// Unwrap returns the cause, so errors.Is(err, context.Canceled) works.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the kind sentinels (ErrConflict, KindConflict, ...).
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && e.Kind == k
}

// kindForStatus maps an HTTP error status to a kind, for requests that are
// safe to repeat. Do adjusts it for the others.
func kindForStatus(status int) Kind {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge,
		http.StatusRequestURITooLong, http.StatusUnsupportedMediaType:
		return KindInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		return KindAuth
	case http.StatusNotFound, http.StatusGone:
		return KindNotFound
	case http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusNotImplemented:
		return KindNotAllowed
	case http.StatusConflict, http.StatusPreconditionFailed:
		return KindConflict
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return KindTransient
	}
	if status >= 500 {
		return KindTransient
	}
	return KindOther
}

// issueCode accepts FHIR issue-type codes ("not-found", "too-costly"); an
// EHR that puts something else there does not get it into our logs.
var issueCode = regexp.MustCompile(`^[a-z][a-z-]{0,39}$`)

// parseOutcome returns body if it is an OperationOutcome, with its issue
// codes.
func parseOutcome(body []byte) (outcome []byte, codes []string) {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if len(body) == 0 || json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil, nil
	}
	for _, is := range oo.Issue {
		if issueCode.MatchString(is.Code) {
			codes = append(codes, is.Code)
		}
	}
	return body, codes
}
