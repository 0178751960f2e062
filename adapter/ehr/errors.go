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
// of patient data: the operation (verb and resource type), the HTTP status,
// the kind, the FHIR issue codes, and the cause for transport failures
// (never a URL: the query string of a FHIR search names the patient).
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
	// RetryAfter is how long the EHR asked us to wait (Retry-After) when it
	// exceeded Options.MaxRetryAfter, so the client stopped instead of
	// sleeping. The caller should not try again sooner.
	RetryAfter time.Duration
	// Err is the underlying cause, if any (a transport error, a context
	// error, a token endpoint failure). It never carries a URL.
	Err error
}

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
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

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
