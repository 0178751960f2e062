package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// requestRecord collects what the access log may say about a request. The
// route template is filled in by the matched route, the caller by
// authentication; nothing else about the request is kept.
type requestRecord struct {
	route  string
	caller Key
}

type recordKey struct{}

// recordOf returns the request's record; a request that did not come
// through accessLog (none does) gets a throwaway one.
func recordOf(ctx context.Context) *requestRecord {
	if rec, ok := ctx.Value(recordKey{}).(*requestRecord); ok {
		return rec
	}
	return &requestRecord{}
}

// accessLog writes one line per request: method, route template, status,
// duration and the caller's name. It never logs the path (it holds client
// ids), the query (keyset cursors are client ids) or any body. It also
// turns a panic into a 500, so that net/http does not log the panic value,
// which could hold anything.
func (a *api) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &requestRecord{}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.log.LogAttrs(r.Context(), slog.LevelError, "panic in API handler", routeAttr(rec))
				if !sw.wrote {
					writeIssues(sw, http.StatusInternalServerError, internalIssue())
				}
			}
			a.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
				slog.String("method", r.Method),
				routeAttr(rec),
				slog.Int("status", sw.status()),
				slog.Duration("duration", time.Since(start)),
				slog.String("caller", rec.caller.Name))
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
	})
}

func routeAttr(rec *requestRecord) slog.Attr {
	if rec.route == "" {
		// Unauthenticated requests and paths no route matches: the path
		// could be anything a caller typed, so it is not logged either.
		return slog.String("route", "unmatched")
	}
	return slog.String("route", rec.route)
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

// internalError logs the cause of a 500 and answers with a message that
// says nothing about the request. Store errors may name the client being
// written; the ids the request carried are replaced before logging.
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
		slog.String("op", op), routeAttr(recordOf(r.Context())), slog.String("error", msg))
	writeIssues(w, http.StatusInternalServerError, internalIssue())
}
