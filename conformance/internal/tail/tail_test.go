package tail

import (
	"fmt"
	"strings"
	"testing"
)

func TestBufferKeepsTheLastLines(t *testing.T) {
	b := New(3)
	if got := b.String(); got != "(none)" {
		t.Errorf("empty: %q", got)
	}
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(b, "line %d\n", i)
	}
	b.Write([]byte("half a li"))
	b.Write([]byte("ne"))
	if got, want := b.String(), "line 3\nline 4\nline 5\nhalf a line"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	b.Write([]byte(strings.Repeat("x", maxPartial+1)))
	if got := strings.Split(b.String(), "\n"); len(got) != 3 || len(got[2]) != maxPartial+len("half a line")+1 {
		t.Errorf("a line without a newline past %d bytes is not kept as a line of its own: %d lines", maxPartial, len(got))
	}
	b.Reset()
	if got := b.String(); got != "(none)" {
		t.Errorf("after Reset: %q", got)
	}
}
