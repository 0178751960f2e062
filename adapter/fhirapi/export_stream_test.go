package fhirapi

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// streamServer is a facade over a SQLite store of n synthetic clients, all
// consenting to HIE sharing.
func streamServer(t *testing.T, n int) *Server {
	t.Helper()
	cl := synth.GenerateWithOptions(rand.New(rand.NewPCG(13, 5)), n, synth.Options{EveryValue: true})
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	batch := make([]store.Stored, len(cl.Clients))
	for i, c := range cl.Clients {
		batch[i] = store.Stored{Client: c}
	}
	if _, err := st.SaveClients(t.Context(), batch, nil); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{BaseURL: "http://ips.example/fhir", Store: st, Mapping: mappings.Options{Program: cl.ProgramID()},
		AllowsHIE: func(*ips.Client) bool { return true }, PseudonymKey: unitKey, ExportDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// dirFiles is what a directory holds: each file's name and content.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range es {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// TestStreamedExportMatchesLegacy: the export written to disk as the
// clients are read, its de-identified lines sorted in spilled runs, is byte
// for byte the export as it was made in memory, whatever the size of the
// runs (many runs, merged in several rounds, or none), and leaves nothing
// but its files.
func TestStreamedExportMatchesLegacy(t *testing.T) {
	t.Parallel()
	s := streamServer(t, 40)
	for _, c := range []struct {
		name     string
		job      func() *exportJob
		runBytes int
	}{
		{"identified", func() *exportJob { return &exportJob{} }, sortRunBytes},
		{"identified-types", func() *exportJob { return &exportJob{types: []string{"CarePlan", "DocumentReference"}} }, sortRunBytes},
		{"deidentified-in-memory", func() *exportJob { return &exportJob{deidentified: true} }, sortRunBytes},
		// A line a run, merged four at a time: many more than 4² runs,
		// so merged in rounds, and the rounds merged.
		{"deidentified-tiny-runs", func() *exportJob { return &exportJob{deidentified: true} }, 1},
		{"deidentified-small-runs", func() *exportJob { return &exportJob{deidentified: true, types: []string{"Observation"}} }, 16 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			j := c.job()
			j.txTime = time.Now()
			if j.deidentified {
				j.deid = newDeidentifier(s.mapping.Program, s.pseudonymKey, unitScope)
			}
			want, err := s.legacyExport(t.Context(), j)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			files := newExportFiles(dir, 0)
			files.runBytes = c.runBytes
			if c.runBytes == 1 {
				files.fanIn = 4
			}
			outs, err := s.collectExportTo(t.Context(), j, files)
			if err != nil {
				t.Fatal(err)
			}
			got := dirFiles(t, dir)
			if len(got) != len(want) || len(outs) != len(want) {
				t.Errorf("%d files in the directory, %d returned; the legacy export made %d", len(got), len(outs), len(want))
			}
			for typ, data := range want {
				name := typ + ".ndjson"
				if !bytes.Equal(got[name], data) {
					t.Errorf("%s differs from the legacy export's (%d bytes, want %d)", name, len(got[name]), len(data))
				}
			}
			for _, o := range outs {
				if n := bytes.Count(want[o.typ], []byte("\n")); o.count != n || o.size != int64(len(want[o.typ])) {
					t.Errorf("%s: count %d size %d, want %d and %d", o.name, o.count, o.size, n, len(want[o.typ]))
				}
			}
			if c.runBytes == 1 && bytes.Count(want["Observation"], []byte("\n")) < 2*4*4 {
				t.Fatalf("the caseload is too small to merge runs in rounds")
			}
		})
	}
}

// TestExportFailingMidwayLeavesNoFile: an export that stops part way (here
// cancelled, as an interrupted ipsfhir export is, after 60 of 120 clients
// were read, some of them in sort runs on disk) leaves the directory as it
// was: the previous export's files untouched, no file of its own, complete
// or not.
func TestExportFailingMidwayLeavesNoFile(t *testing.T) {
	t.Parallel()
	s := streamServer(t, 120)
	for _, identified := range []bool{true, false} {
		dir := t.TempDir()
		before := map[string][]byte{"Goal.ndjson": []byte("{\"previous\":\"export\"}\n"), "manifest.json": []byte("{}\n")}
		for name, data := range before {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		o := ExportOptions{Identified: identified, PseudonymScope: unitScope, Dir: dir, Progress: func(read int) {
			if read == 60 {
				cancel()
			}
		}}
		_, err := s.Export(ctx, o)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("identified %v: Export = %v, want it cancelled", identified, err)
		}
		if got := dirFiles(t, dir); len(got) != len(before) || !bytes.Equal(got["Goal.ndjson"], before["Goal.ndjson"]) {
			t.Errorf("identified %v: after a failed export the directory holds %v", identified, slices.Sorted(mapsKeys(got)))
		}
	}
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestExportTempNames: the temporary files of an export (outputs and sort
// runs) are named from a fixed prefix and random digits, never from a
// patient's data, and are readable by their owner only.
func TestExportTempNames(t *testing.T) {
	t.Parallel()
	s := streamServer(t, 20)
	dir := t.TempDir()
	j := &exportJob{deidentified: true, txTime: time.Now(), deid: newDeidentifier(s.mapping.Program, s.pseudonymKey, unitScope)}
	files := newExportFiles(dir, 0)
	files.runBytes = 1
	var seen []os.DirEntry
	j.progress = func(read int) {
		if read == 15 {
			es, err := os.ReadDir(dir)
			if err != nil {
				t.Error(err)
			}
			seen = es
		}
	}
	if _, err := s.collectExportTo(t.Context(), j, files); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 4 {
		t.Fatalf("%d temporary files part way through; want the outputs and their runs", len(seen))
	}
	for _, e := range seen {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, tempPrefix)
		rest = strings.TrimPrefix(rest, "run-")
		rest, ok2 := strings.CutSuffix(rest, ".tmp")
		if !ok || !ok2 || strings.Trim(rest, "0123456789") != "" {
			t.Errorf("temporary file %q: want %s[run-]{digits}.tmp", name, tempPrefix)
		}
		fi, err := e.Info()
		if err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("temporary file %q: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}
