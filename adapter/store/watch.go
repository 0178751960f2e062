package store

import (
	"context"
	"sync"
)

// Watchers is the in-process half of Store.WatchOutbox: channels registered
// per connection, each woken by Notify. A store calls Notify after a commit
// that enqueued items for a connection. Sends never block and coalesce: a
// channel holds at most one wake, however many Notify calls came before its
// reader got to it. The zero value is ready to use.
type Watchers struct {
	mu sync.Mutex
	// m holds each channel with its watch's context: the context is
	// checked on every wake, so a watch whose context ended is not woken
	// even before the clean-up that lets it go has run (context.AfterFunc
	// runs it in a goroutine of its own, later).
	m map[string]map[chan struct{}]context.Context
}

// Watch returns a channel that Notify(connection) and NotifyAll wake until
// ctx ends. The channel is never closed.
func (w *Watchers) Watch(ctx context.Context, connection string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	if ctx.Err() != nil {
		return ch
	}
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]map[chan struct{}]context.Context{}
	}
	if w.m[connection] == nil {
		w.m[connection] = map[chan struct{}]context.Context{}
	}
	w.m[connection][ch] = ctx
	w.mu.Unlock()
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.m[connection], ch)
		if len(w.m[connection]) == 0 {
			delete(w.m, connection)
		}
	})
	return ch
}

// Notify wakes every channel watching connection.
func (w *Watchers) Notify(connection string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch, ctx := range w.m[connection] {
		wake(ctx, ch)
	}
}

// NotifyAll wakes every channel of every connection: what a store does
// when it may have missed notifications (its listener reconnected).
func (w *Watchers) NotifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, chs := range w.m {
		for ch, ctx := range chs {
			wake(ctx, ch)
		}
	}
}

// Len counts the channels registered (for tests).
func (w *Watchers) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, chs := range w.m {
		n += len(chs)
	}
	return n
}

// wake sends one wake to ch unless it holds one already or its watch's
// context has ended.
func wake(ctx context.Context, ch chan struct{}) {
	if ctx.Err() != nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}
