package main

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress lines. A long step of a command (import, export, demo, sync
// --once) draws one line on stderr while it runs, redrawn in place:
//
//	export  42% |████████            | (4200/10000, 1450 clients/s) [2s:4s]
//
// done/total, the rate, and the time elapsed:left. The line holds counts
// only, never a client, and is cleared when the step ends, so that what
// stays on the screen is the command's own output. It is drawn only when
// stderr is a terminal: redirected to a file or a pipe, or under a
// scheduler, stderr gets nothing extra. Drawing is done by
// github.com/schollz/progressbar.

// progressOut is stderr when it is a terminal, shared by the progress line
// and anything else written there meanwhile (sync's log): a line written
// while the progress line is drawn clears it first, and the progress line
// is drawn again on its next update.
type progressOut struct {
	w     io.Writer
	mu    sync.Mutex
	drawn bool // the progress line has been written to and not cleared since
}

// progressTo returns stderr's progressOut, or nil when stderr is not a
// terminal: then no progress is drawn (every method of a nil progressOut or
// progress does nothing).
func progressTo(stderr io.Writer) *progressOut {
	if o, ok := stderr.(*progressOut); ok {
		return o
	}
	if !isTerminal(stderr) {
		return nil
	}
	return &progressOut{w: stderr}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Write writes a line of other output (a log line): it clears the
// progress line first, if one is drawn.
func (o *progressOut) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drawn {
		// Carriage return, then erase to the end of the line.
		if _, err := io.WriteString(o.w, "\r\x1b[K"); err != nil {
			return 0, err
		}
		o.drawn = false
	}
	return o.w.Write(b)
}

// barWriter is what the progress bar draws through.
type barWriter struct{ o *progressOut }

func (b barWriter) Write(p []byte) (int, error) {
	b.o.mu.Lock()
	defer b.o.mu.Unlock()
	b.o.drawn = true
	return b.o.w.Write(p)
}

// progressThrottle spaces a line's redraws (tests draw every update).
var progressThrottle = 100 * time.Millisecond

// progress is one step's progress line.
type progress struct {
	out  *progressOut
	what string
	unit string
	// estimate: total is a guess that done may pass (sync's outbox depth
	// at the start, before pulls queue more), so reaching it does not end
	// the line.
	estimate bool
	mu       sync.Mutex
	total    int
	bar      *progressbar.ProgressBar
}

// start begins a progress line for a step of total units (clients, say),
// named what ("export"); unit names the units in the rate ("clients/s").
// With total 0 nothing is drawn.
func (o *progressOut) start(what, unit string, total int) *progress {
	if o == nil || total <= 0 {
		return nil
	}
	p := &progress{out: o, what: what, unit: unit, total: total}
	p.bar = p.newBar(total)
	return p
}

// startEstimate begins a progress line whose total is an estimate that
// done may pass; with an estimate of 0 the line appears at the first
// update.
func (o *progressOut) startEstimate(what, unit string, total int) *progress {
	if o == nil {
		return nil
	}
	p := &progress{out: o, what: what, unit: unit, total: total, estimate: true}
	if total > 0 {
		p.bar = p.newBar(total)
	}
	return p
}

func (p *progress) newBar(total int) *progressbar.ProgressBar {
	p.out.clear() // a status line
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(barWriter{p.out}),
		progressbar.OptionSetDescription(p.what),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(p.unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(progressThrottle),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// set shows done units of the total.
func (p *progress) set(done int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.bar == nil: // an estimate of 0
		p.total = done + 1
		p.bar = p.newBar(p.total)
	case p.estimate && done >= p.total:
		// Past the estimate: the bar would end at its total; it ends
		// at finish instead.
		p.total = done + 1
		p.bar.ChangeMax(p.total)
	case done > p.total:
		// More than counted at the start (clients added meanwhile).
		p.total = done
		p.bar.ChangeMax(p.total)
	}
	_ = p.bar.Set(done)
}

// finish ends the step: the line is cleared.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// status draws a line saying what a step whose size is not known is doing
// ("import: saving 20000 clients"), until the next progress line, status
// or clear. It holds counts only, like a progress line.
func (o *progressOut) status(text string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = io.WriteString(o.w, "\r\x1b[K"+text+" …")
	o.drawn = true
}

// clear erases a status line.
func (o *progressOut) clear() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drawn {
		_, _ = io.WriteString(o.w, "\r\x1b[K")
		o.drawn = false
	}
}
