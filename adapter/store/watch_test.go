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
