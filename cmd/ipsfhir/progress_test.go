package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// progressRun is one long command, run after its setup, with the progress
// line it draws (its name and what it counts) and what the total is.
type progressRun struct {
	name  string
	args  []string
	line  string // the line's name: "import", "export", …
	total int
}

// progressRuns sets up a store (and for sync a peer EHR) and returns the
// long commands to run on it, in order: import, export, sync --once, demo.
// The caseload's patients are returned too: no output may show them.
func progressRuns(t *testing.T) ([]progressRun, []string) {
	t.Helper()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	cl := synth.Generate(rand.New(rand.NewPCG(5, 5)), 40)
	cl.Program = &ips.Program{ID: "progress-test"}
	yes := true
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	var patients []string
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
		patients = append(patients, c.Patient.Value)
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, c.Patient.System, c.Patient.Value)
		if _, err := client.Create(t.Context(), "Patient", []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	caseload := filepath.Join(dir, "caseload.json")
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(caseload, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: progress-test}
store: {driver: sqlite, dsn: ips.db}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, srv.BaseURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	n := len(cl.Clients)
	return []progressRun{
		{"import", []string{"import", "--config", cfg, caseload}, "import", n},
		{"export", []string{"export", "--config", cfg, "--identified", "--out", filepath.Join(dir, "export")}, "export", n},
		{"sync --once", []string{"sync", "--config", cfg, "--once"}, "push", n},
		{"demo", []string{"demo", "--serve=false", "--clients", "25", "--seed", "3", "--out", filepath.Join(dir, "demo")}, "demo: map and validate", 25},
	}, patients
}

// TestProgressOnATerminal runs the long commands with stderr on a
// pseudo-terminal, as a person at a terminal would: each draws its
// progress there (its name, done/total, a rate, elapsed:left), counts
// only, and clears it when done, so that the screen ends with the
// command's own output. Standard output gets none of it.
func TestProgressOnATerminal(t *testing.T) {
	throttle := progressThrottle
	t.Cleanup(func() { progressThrottle = throttle })
	progressThrottle = 0 // draw every update, however fast the test runs
	runs, patients := progressRuns(t)
	for _, r := range runs {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatalf("open a pseudo-terminal: %v", err)
		}
		drawn := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(ptmx) // until the terminal closes (EIO)
			drawn <- b
		}()
		var stdout bytes.Buffer
		code := run(context.Background(), r.args, strings.NewReader(""), &stdout, tty)
		tty.Close()
		screen := <-drawn
		ptmx.Close()
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s\n%q", r.name, code, stdout.String(), screen)
		}
		// A line in progress: "import  45% |███   | (18/40, 903 clients/s) [0s:0s]".
		line := regexp.MustCompile(regexp.QuoteMeta(r.line) + ` +\d+% \|[^|]*\| \(([1-9]\d*)/` + fmt.Sprint(r.total) + `, \d+ (clients|patients)/(s|min|hr)\) \[\d+\w+:\d+\w+\]`)
		if !line.Match(screen) {
			t.Errorf("%s: no progress line of %q with done/total (of %d), rate and time left on the terminal:\n%q", r.name, r.line, r.total, screen)
		}
		if last := lastLine(screen); last != "" {
			t.Errorf("%s: the terminal's last line is %q, want the progress line cleared", r.name, last)
		}
		if bytes.ContainsAny(stdout.Bytes(), "\r\x1b") || strings.Contains(stdout.String(), "clients/") {
			t.Errorf("%s: progress on standard output:\n%q", r.name, stdout.String())
		}
		for _, p := range patients {
			if bytes.Contains(screen, []byte(p)) {
				t.Fatalf("%s: the terminal shows a patient identifier", r.name)
			}
		}
	}
}

// TestNoProgressWhenNotATerminal: with stderr a file (as under cron, or
// redirected), the same commands write no progress at all: no carriage
// returns or escapes, no rate; import, export and demo write nothing there.
func TestNoProgressWhenNotATerminal(t *testing.T) {
	throttle := progressThrottle
	t.Cleanup(func() { progressThrottle = throttle })
	progressThrottle = 0
	runs, _ := progressRuns(t)
	for _, r := range runs {
		errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		outFile, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		code := run(context.Background(), r.args, strings.NewReader(""), outFile, errFile)
		errFile.Close()
		outFile.Close()
		stderr, _ := os.ReadFile(errFile.Name())
		stdout, _ := os.ReadFile(outFile.Name())
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s%s", r.name, code, stdout, stderr)
		}
		for what, b := range map[string][]byte{"stderr": stderr, "stdout": stdout} {
			if bytes.ContainsAny(b, "\r\x1b") || bytes.Contains(b, []byte("clients/")) || bytes.Contains(b, []byte("%|")) {
				t.Errorf("%s: progress in %s, which is not a terminal:\n%q", r.name, what, b)
			}
		}
		if r.line != "push" && len(stderr) > 0 {
			t.Errorf("%s: wrote to stderr:\n%s", r.name, stderr)
		}
	}
}

// lastLine is what a terminal shows on its last line after the output b
// (carriage return, newline and erase-to-end-of-line applied), without
// trailing spaces: "" when the output ended with a newline or a cleared
// line.
func lastLine(b []byte) string {
	var cur []rune
	col := 0
	s := []rune(string(b))
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r':
			col = 0
		case s[i] == '\n':
			cur, col = nil, 0
		case s[i] == 0x1b && i+2 < len(s) && s[i+1] == '[' && s[i+2] == 'K':
			cur = cur[:min(col, len(cur))]
			i += 2
		default:
			if col < len(cur) {
				cur[col] = s[i]
			} else {
				cur = append(cur, s[i])
			}
			col++
		}
	}
	return strings.TrimRight(string(cur), " ")
}
