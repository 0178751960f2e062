package telemetry

import (
	"context"
	"io"
	"log/slog"
)

// NewLogger returns a logger that writes records at level or above to w,
// as JSON when format is "json" and as slog's key=value text when it is
// "text". Any other format gets JSON: the format comes from config, which
// validates it, and a logger must still come out of a typo rather than
// crash the adapter before it can say why.
//
// Every record passes through the policy described in the package
// documentation before it is formatted, so no attribute, group, error or
// message can print patient data.
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	// No AddSource and no ReplaceAttr: source paths are harmless but the
	// point is that nothing reaches the inner handler unchecked.
	opts := &slog.HandlerOptions{Level: level}
	var inner slog.Handler
	if format == "text" {
		inner = slog.NewTextHandler(w, opts)
	} else {
		inner = slog.NewJSONHandler(w, opts)
	}
	return slog.New(&handler{inner: inner})
}

// handler wraps slog's own handler so that it only ever receives what the
// policy allows. It is not exported: NewLogger is the one way in, so that
// no caller can pair it with an inner handler that adds data of its own.
type handler struct {
	inner slog.Handler
}

var _ slog.Handler = (*handler)(nil)

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle rebuilds the record rather than editing it: a slog.Record shares
// its attribute storage with copies, and the caller may still hold one.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	// PC is dropped: the inner handler has no AddSource, and a caller
	// frame is not needed to find a constant message.
	out := slog.NewRecord(r.Time, r.Level, safeMessage(r.Message), 0)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(sanitize(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		safe[i] = sanitize(a)
	}
	return &handler{inner: h.inner.WithAttrs(safe)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{inner: h.inner.WithGroup(safeKey(name))}
}
