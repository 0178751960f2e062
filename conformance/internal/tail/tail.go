// Package tail keeps the last lines a child process wrote, for the failure
// messages of the conformance tools (the peer server's and each replica's
// stderr).
package tail

import (
	"bytes"
	"strings"
	"sync"
)

// maxPartial bounds a line still without its newline; past it, what is held
// is kept as a line of its own.
const maxPartial = 8192

// Buffer keeps the last n lines written to it. It is safe for concurrent use.
type Buffer struct {
	mu      sync.Mutex
	n       int
	lines   []string
	partial []byte
}

// New returns a Buffer that keeps the last n lines.
func New(n int) *Buffer { return &Buffer{n: n} }

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
	if len(b.partial) > maxPartial {
		b.lines = append(b.lines, string(b.partial))
		b.partial = nil
	}
	if len(b.lines) > b.n {
		b.lines = b.lines[len(b.lines)-b.n:]
	}
	return len(p), nil
}

// String returns the kept lines (with a last line not yet ended), or
// "(none)".
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := b.lines
	if len(b.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(b.partial))
	}
	if len(lines) == 0 {
		return "(none)"
	}
	return strings.Join(lines, "\n")
}

// Reset forgets what was written, so the tail of a restarted process is
// its own.
func (b *Buffer) Reset() {
	b.mu.Lock()
	b.lines, b.partial = nil, nil
	b.mu.Unlock()
}
