package fhirapi_test

import (
	"bytes"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
)

// jobDir is the directory of the job whose status URL is given, under
// base: base/ipsfhir-export-{random}/{job id}; "" when there is none.
func jobDir(t *testing.T, base, status string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(base, "ipsfhir-export-*", path.Base(status)))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) > 1 {
		t.Fatalf("job directories %v", dirs)
	}
	if len(dirs) == 0 {
		return ""
	}
	return dirs[0]
}

func perm(t *testing.T, name string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestExportJobFilesOnDisk: a Bulk Data job's files are on disk under
// Options.ExportDir, readable by the server's user only, named by type (the
// job's directory by its random id, nothing from a patient), served with
// the headers they had when they were kept in memory; they are removed
// when the job is deleted, when it expires, when it fails (MaxJobBytes
// still bounds a job), and when the server closes; and nothing of a
// patient reaches the log meanwhile.
func TestExportJobFilesOnDisk(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	h := newHarness(t, func(o *fhirapi.Options) {
		o.ExportDir = base
		o.Limits = fhirapi.Limits{MaxJobs: 4, MaxJobsPerCaller: 4, JobTTL: time.Minute}
	})
	status := h.kickOff("/fhir/$export?_type=Goal,Observation&_elements=id", hieKey, "respond-async", "handling=lenient")
	m, r := h.wait(status, hieKey)
	if r.status != http.StatusOK {
		t.Fatalf("export: %d %s", r.status, r.body)
	}
	dir := jobDir(t, base, status)
	if dir == "" {
		t.Fatal("no job directory under ExportDir")
	}
	if p := perm(t, filepath.Dir(dir)); p != 0o700 {
		t.Errorf("the server's directory: mode %v, want 0700", p)
	}
	if p := perm(t, dir); p != 0o700 {
		t.Errorf("the job's directory: mode %v, want 0700", p)
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
		if p := perm(t, filepath.Join(dir, e.Name())); p != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), p)
		}
	}
	if want := []string{"Goal.ndjson", "Observation.ndjson", "errors.ndjson"}; !slices.Equal(names, want) {
		t.Errorf("the job's directory holds %v, want %v", names, want)
	}
	for _, f := range append(m.Output, m.Error...) {
		r := h.get(f.URL, hieKey)
		onDisk, err := os.ReadFile(filepath.Join(dir, path.Base(f.URL)))
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusOK || !bytes.Equal(r.body, onDisk) || len(onDisk) == 0 {
			t.Errorf("%s: %d, %d bytes served, %d on disk", f.URL, r.status, len(r.body), len(onDisk))
		}
		for k, v := range map[string]string{"Content-Type": "application/fhir+ndjson", "Cache-Control": "no-store",
			"X-Content-Type-Options": "nosniff", "Content-Length": strconv.Itoa(len(onDisk))} {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", f.URL, k, got, v)
			}
		}
	}

	// Deleted: its files go.
	if r := h.do(http.MethodDelete, status, hieKey, nil); r.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d", r.status)
	}
	if d := jobDir(t, base, status); d != "" {
		t.Errorf("a deleted job's files are still on disk: %s", d)
	}

	// Expired: its files go, and an admin's listing is enough to see to it.
	expiring := h.kickOff("/fhir/$export", adminKey)
	if _, r := h.wait(expiring, adminKey); r.status != http.StatusOK || jobDir(t, base, expiring) == "" {
		t.Fatalf("identified export: %d, files in %q", r.status, jobDir(t, base, expiring))
	}
	running := h.kickOff("/fhir/$export", hie2Key)
	h.offset.Store(int64(2 * time.Minute))
	h.server.ExportJobs()
	if d := jobDir(t, base, expiring); d != "" {
		t.Errorf("an expired job's files are still on disk: %s", d)
	}

	// Closed: no directory of the server's is left.
	h.wait(running, hie2Key)
	h.server.Close()
	if left, _ := filepath.Glob(filepath.Join(base, "ipsfhir-export-*")); len(left) != 0 {
		t.Errorf("after Close: %v", left)
	}
	logs := h.tel.Logs()
	for _, s := range h.patientData() {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log holds patient data %q", s)
		}
	}

	// Too large: the job fails, and keeps no files.
	smallBase := t.TempDir()
	small := newHarness(t, func(o *fhirapi.Options) { o.ExportDir = smallBase; o.Limits = fhirapi.Limits{MaxJobBytes: 1000} })
	tooLarge := small.kickOff("/fhir/$export", hieKey)
	if _, r := small.wait(tooLarge, hieKey); r.status != http.StatusInternalServerError {
		t.Errorf("an export over MaxJobBytes: %d, want 500", r.status)
	}
	if d := jobDir(t, smallBase, tooLarge); d != "" {
		t.Errorf("a failed job's directory is still on disk: %s", d)
	}
}

// TestExportSweepsStaleFiles: a server starting up removes the job files
// a server that stopped without closing left under the same ExportDir (a
// directory ipsfhir-export-* of this user whose lock nobody holds), and
// leaves alone a running server's, one just being made, and what is not
// such a directory.
func TestExportSweepsStaleFiles(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live := newHarness(t, func(o *fhirapi.Options) { o.ExportDir = base })
	liveJob := live.kickOff("/fhir/$export", hieKey)
	live.wait(liveJob, hieKey)

	stale := filepath.Join(base, "ipsfhir-export-1234")
	fresh := filepath.Join(base, "ipsfhir-export-5678") // no lock yet: being made
	other := filepath.Join(base, "ipsfhir-export-notadir")
	for _, d := range []string{filepath.Join(stale, "0123abcd"), fresh} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{filepath.Join(stale, ".lock"): "", filepath.Join(stale, "0123abcd", "Goal.ndjson"): "{}\n", other: "x"} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(base, "ipsfhir-export-link")
	if err := os.Symlink(stale, link); err != nil {
		t.Fatal(err)
	}

	live.sibling(func(o *fhirapi.Options) { o.ExportDir = base })
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale directory is still there: %v", err)
	}
	for _, keep := range []string{fresh, other, link} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(keep), err)
		}
	}
	if jobDir(t, base, liveJob) == "" {
		t.Error("a running server's job files were removed")
	}
	if r := live.get(liveJob, hieKey); r.status != http.StatusOK {
		t.Errorf("the running server's job after the sweep: %d", r.status)
	}
}
