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
	m  map[string]map[chan struct{}]struct{}
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
		w.m = map[string]map[chan struct{}]struct{}{}
	}
	if w.m[connection] == nil {
		w.m[connection] = map[chan struct{}]struct{}{}
	}
	w.m[connection][ch] = struct{}{}
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
	for ch := range w.m[connection] {
		wake(ch)
	}
}

// NotifyAll wakes every channel of every connection: what a store does
// when it may have missed notifications (its listener reconnected).
func (w *Watchers) NotifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, chs := range w.m {
		for ch := range chs {
			wake(ch)
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

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
