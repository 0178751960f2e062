package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// RequestRecord collects what an access log may say about a request. The
// route template is filled in by the matched route, the caller by
// authentication; nothing else about the request is kept.
type RequestRecord struct {
	// Route is the matched route's template ("/api/v1/clients/{id}"),
	// never the path; "" until a route matches.
	Route string
	// Caller is the authenticated caller; zero until authentication.
	Caller Key
	// Records is how many records the request read or wrote, for the
	// audit trail; handlers that return lists set it (see Audited).
	Records int
	// ResourceType overrides the audit trail's resource type, which is
	// otherwise taken from the route.
	ResourceType string
}

type recordKey struct{}

// RecordOf returns the record of a request served through AccessLog, for
// routes and authentication to fill in. A request that did not come
// through AccessLog gets a throwaway record.
func RecordOf(ctx context.Context) *RequestRecord {
	if rec, ok := ctx.Value(recordKey{}).(*RequestRecord); ok {
		return rec
	}
	return &RequestRecord{}
}

// RouteAttr is the record's route as a log attribute: the template, or
// "unmatched" when no route matched (unauthenticated requests and paths no
// route serves: the path could be anything a caller typed, so it is not
// logged either).
func (rec *RequestRecord) RouteAttr() slog.Attr {
	if rec.Route == "" {
		return slog.String("route", "unmatched")
	}
	return slog.String("route", rec.Route)
}

// AccessLog returns middleware that logs one line per request at Info,
// with message: method, route template, status, duration and the caller's
// name (from the request's RequestRecord, which it puts in the context).
// It never logs the path (it holds client ids), the query (keyset cursors
// are client ids) or any body.
//
// It also recovers a handler's panic, so that net/http does not log the
// panic value, which could hold anything: it logs panicMessage at Error
// with the route only, and, unless the handler already wrote the headers,
// calls onPanic to answer 500. http.ErrAbortHandler is panicked again, as
// net/http expects.
func AccessLog(log *slog.Logger, message, panicMessage string, onPanic func(w http.ResponseWriter)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &RequestRecord{}
			sw := &statusWriter{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.LogAttrs(r.Context(), slog.LevelError, panicMessage, rec.RouteAttr())
					if !sw.wrote {
						onPanic(sw)
					}
				}
				log.LogAttrs(r.Context(), slog.LevelInfo, message,
					slog.String("method", r.Method),
					rec.RouteAttr(),
					slog.Int("status", sw.status()),
					slog.Duration("duration", time.Since(start)),
					slog.String("caller", rec.Caller.Name))
			}()
			next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
		})
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// internalError logs the cause of a failure the caller cannot fix and
// answers with a message that says nothing about the request: 503 with
// Retry-After when the store cannot be reached (store.ErrUnavailable), so
// that callers retry and an outage reads as one, else 500. Store errors may
// name the client being written; the ids the request carried are replaced
// before logging.
func (a *api) internalError(w http.ResponseWriter, r *http.Request, op string, err error, ids ...string) {
	msg := err.Error()
	for _, id := range ids {
		if id != "" {
			msg = strings.ReplaceAll(msg, id, "{id}")
		}
	}
	level := slog.LevelError
	if errors.Is(err, context.Canceled) {
		level = slog.LevelInfo // the caller went away; nothing is wrong here
	}
	a.log.LogAttrs(r.Context(), level, "API request failed",
		slog.String("op", op), RecordOf(r.Context()).RouteAttr(), slog.String("error", msg))
	if errors.Is(err, store.ErrUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(int(storeRetryAfter/time.Second)))
		writeIssues(w, http.StatusServiceUnavailable, issue("transient", "", "store unavailable"))
		return
	}
	writeIssues(w, http.StatusInternalServerError, internalIssue())
}
