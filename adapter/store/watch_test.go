package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

func TestWatchers(t *testing.T) {
	t.Parallel()
	var w store.Watchers
	ctx, cancel := context.WithCancel(t.Context())
	a := w.Watch(ctx, "a")
	b := w.Watch(t.Context(), "b")
	if n := w.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	// Notify never blocks, and wakes coalesce into one.
	w.Notify("a")
	w.Notify("a")
	w.Notify("x")
	if got := len(a); got != 1 {
		t.Errorf("a holds %d wakes, want 1", got)
	}
	if got := len(b); got != 0 {
		t.Errorf("b holds %d wakes after Notify(a), want 0", got)
	}
	<-a
	w.NotifyAll()
	if len(a) != 1 || len(b) != 1 {
		t.Errorf("after NotifyAll a, b hold %d, %d wakes; want 1, 1", len(a), len(b))
	}

	// A watch is let go when its context ends.
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for w.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Len = %d after the context ended, want 1", w.Len())
		}
		time.Sleep(time.Millisecond)
	}
	if ch := w.Watch(ctx, "c"); w.Len() != 1 || ch == nil {
		t.Errorf("a watch with an ended context was registered")
	}
}

// TestWatchersEndedNotWoken: a watch is not woken once its context has
// ended, even before the clean-up that unregisters it has run (it runs in
// a goroutine of its own). Notify right after cancel: the clean-up has
// almost never run by then.
func TestWatchersEndedNotWoken(t *testing.T) {
	t.Parallel()
	var w store.Watchers
	for i := range 200 {
		ctx, cancel := context.WithCancel(t.Context())
		ch := w.Watch(ctx, "a")
		cancel()
		w.Notify("a")
		w.NotifyAll()
		if len(ch) != 0 {
			t.Fatalf("round %d: a watch whose context ended was woken", i)
		}
	}
}
