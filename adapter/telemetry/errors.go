package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// LogSafer is implemented by errors that can describe themselves without
// patient data, typically as "op: kind" ("ehr.write: conflict"). Error
// types of the adapter's boundaries implement it so that logs say more
// than a type name. The result is still checked (see [ErrorSummary]): a
// LogSafe that quotes a value is treated as if it were absent.
type LogSafer interface {
	LogSafe() string
}

// maxErrorChain bounds the type chain printed for an error without
// LogSafe, so a deeply wrapped error stays one short line.
const maxErrorChain = 4

// ErrorSummary describes err without its message: the LogSafe() of the
// first error in its chain that has one, when that reads like a constant;
// a fixed text for context cancellation; otherwise the chain of its type
// names ("*fmt.wrapError > *url.Error > *net.OpError"). Error messages
// are never used, because errors from HTTP clients, drivers and parsers
// quote URLs, queries and the values they failed on.
func ErrorSummary(err error) string {
	if err == nil {
		return "nil"
	}
	var ls LogSafer
	if errors.As(err, &ls) {
		if s, ok := callString(ls.LogSafe); ok && safeText(s) {
			return s
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "context canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "context deadline exceeded"
	}
	names := make([]string, 0, maxErrorChain)
	for e := err; e != nil && len(names) < maxErrorChain; e = errors.Unwrap(e) {
		names = append(names, fmt.Sprintf("%T", e))
	}
	return strings.Join(names, " > ")
}

// RecordSpanError marks span as failed with err's summary. Use it instead
// of span.RecordError, which copies err.Error() into an event attribute
// that is exported with the trace.
func RecordSpanError(span trace.Span, err error) {
	if err == nil {
		return
	}
	summary := ErrorSummary(err)
	span.AddEvent("exception", trace.WithAttributes(
		attribute.String("exception.type", fmt.Sprintf("%T", err)),
		attribute.String("exception.message", summary),
	))
	span.SetStatus(codes.Error, summary)
}
