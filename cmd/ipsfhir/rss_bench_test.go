package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// BenchmarkAdapterRSS measures the peak resident memory of the ipsfhir
// process alone while it does the jobs that touch the whole caseload: the first
// sync of every client to the EHR (the peer), and the Bulk Data exports for
// an HIE (de-identified) and for the program (identified). The ceiling is
// issue 13's: 150 MiB at up to 10,000 clients, 180 MiB above; each job
// reports its peak and the ratio to the ceiling.
//
// The peak is the child's VmHWM (/proc/PID/status: the high-water mark of
// its own address space), read every few milliseconds until it exits; not
// getrusage's ru_maxrss of the child, which on Linux also counts this
// process's peak: Go starts a child with vfork (CLONE_VM), and the exec
// records the shared address space's high-water mark, this process's with
// its fixtures, as the child's (a child /bin/true of a process holding
// 200 MiB reports 200 MiB).
//
//	IPSFHIR_REQUIRE_PEER=1 go test -run '^$' -bench AdapterRSS -benchtime 1x -timeout 60m ./cmd/ipsfhir
//
// IPSFHIR_BENCH_CLIENTS sets the caseload size (default 10,000).
// IPSFHIR_BENCH_JOBS picks the jobs, comma-separated (default all: help,
// sync, export-hie, export-identified; help is the floor, the binary's
// start-up alone); without sync no peer is started. The binary measured is
// built here without -race, as it ships. IPSFHIR_BENCH_HEAPPROFILE=DIR
// builds it with the ipsfhir_heapprofile tag instead (heapprofile.go) and
// writes each job's heap profile at its peak to DIR/JOB.pprof.
func BenchmarkAdapterRSS(b *testing.B) {
	n := 10000
	if v := os.Getenv("IPSFHIR_BENCH_CLIENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("IPSFHIR_BENCH_CLIENTS=%q: want a positive number of clients", v)
		}
	}
	jobs := map[string]bool{"help": true, "sync": true, "export-hie": true, "export-identified": true}
	if v := os.Getenv("IPSFHIR_BENCH_JOBS"); v != "" {
		picked := map[string]bool{}
		for _, name := range strings.Split(v, ",") {
			if !jobs[strings.TrimSpace(name)] {
				b.Fatalf("IPSFHIR_BENCH_JOBS: %q is not a job (help, sync, export-hie, export-identified)", name)
			}
			picked[strings.TrimSpace(name)] = true
		}
		jobs = picked
	}
	profDir := os.Getenv("IPSFHIR_BENCH_HEAPPROFILE")
	ceiling := 150.0
	if n > 10000 {
		ceiling = 180
	}
	ctx := context.Background()
	dir := b.TempDir()

	bin := filepath.Join(dir, "ipsfhir")
	build := exec.Command("go", "build", "-o", bin, ".")
	if profDir != "" {
		build = exec.Command("go", "build", "-tags", "ipsfhir_heapprofile", "-o", bin, ".")
	}
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	cl := synth.Generate(rand.New(rand.NewPCG(99, 99)), n)
	yes := true
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes, HIE: &yes}
	}
	// The EHR already holds the patients, loaded as the peer starts.
	patients := filepath.Join(dir, "patients.ndjson")
	if err := writePatients(patients, cl.Clients); err != nil {
		b.Fatal(err)
	}
	peerURL := "http://127.0.0.1:1" // no sync: never called
	if jobs["sync"] {
		peerURL = peer.StartForTest(b, peer.Options{Seed: patients, Dedicated: true, Args: []string{"--quiet"}}).BaseURL
	}

	st, err := sqlite.Open(ctx, filepath.Join(dir, "ips.db"))
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	for i := 0; i < len(cl.Clients); i += batch {
		var page []store.Stored
		for _, c := range cl.Clients[i:min(i+batch, len(cl.Clients))] {
			page = append(page, store.Stored{Client: c})
		}
		if _, err := st.SaveClients(ctx, page, []string{"clinic"}); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pseudonym.key"), []byte("bench-pseudonym-key-0123456789abcdef\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `program: {id: bench-ips, name: Bench IPS}
store: {driver: sqlite, dsn: ips.db}
consent: {hie: true}
export: {pseudonymKey: {file: pseudonym.key}}
sync: {maxAttempts: 8}
connections:
  - name: clinic
    fhirBaseUrl: %s
    enabled: true
    auth: {type: none}
`, peerURL), 0o600); err != nil {
		b.Fatal(err)
	}
	cl = nil
	runtime.GC()

	b.ResetTimer()
	for range b.N {
		for _, job := range []struct {
			name string
			args []string
			ok   func(stdout []byte) error
		}{
			{"help", []string{"--help"}, nil},
			{"sync", []string{"sync", "--config", cfg, "--once", "--json"}, func(out []byte) error {
				var sum syncJSON
				if err := json.Unmarshal(out, &sum); err != nil {
					return err
				}
				if sum.Push.Failed != 0 || sum.Push.DeadLettered != 0 || sum.Push.Items < n {
					return fmt.Errorf("push: %d items, %d failed, %d dead-lettered; want %d items, none failed", sum.Push.Items, sum.Push.Failed, sum.Push.DeadLettered, n)
				}
				b.ReportMetric(float64(sum.Push.Written), "sync-resources-written")
				return nil
			}},
			{"export-hie", []string{"export", "--config", cfg, "--out", filepath.Join(dir, "hie"), "--recipient", "bench-hie"}, nil},
			{"export-identified", []string{"export", "--config", cfg, "--out", filepath.Join(dir, "program"), "--identified"}, nil},
		} {
			if !jobs[job.name] {
				continue
			}
			cmd := exec.Command(bin, job.args...)
			cmd.Dir = dir
			if profDir != "" {
				cmd.Env = append(os.Environ(), "IPSFHIR_HEAPPROFILE="+filepath.Join(profDir, job.name+".pprof"))
			}
			var stdout bytes.Buffer
			var stderr boundedBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			peak := watchHWM(cmd.Process.Pid)
			err := cmd.Wait()
			took := time.Since(start)
			kib := <-peak
			if err != nil {
				b.Fatalf("%s: %v\n%s", job.name, err, stderr.String())
			}
			out := stdout.Bytes()
			if job.ok != nil {
				if err := job.ok(out); err != nil {
					b.Fatalf("%s: %v", job.name, err)
				}
			}
			if kib == 0 {
				b.Skip("no /proc/PID/status VmHWM on this platform")
			}
			mib := float64(kib) / 1024
			b.ReportMetric(mib, job.name+"-peak-RSS-MiB")
			b.ReportMetric(mib/ceiling, job.name+"-RSS/ceiling")
			b.ReportMetric(took.Seconds(), job.name+"-s")
		}
	}
}

// watchHWM reads the process's VmHWM every 2 ms until it can no longer
// (the process has exited), and then sends the last value read, in KiB
// (0 if none was).
func watchHWM(pid int) <-chan int64 {
	out := make(chan int64, 1)
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		var last int64
		for {
			data, err := os.ReadFile(path)
			if err != nil {
				break
			}
			hwm, ok := vmHWM(data)
			if !ok {
				break // a zombie: its address space is gone
			}
			last = hwm
			time.Sleep(2 * time.Millisecond)
		}
		out <- last
	}()
	return out
}

// vmHWM finds the VmHWM line of a /proc/PID/status.
func vmHWM(status []byte) (int64, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// syncJSON is the part of `sync --once --json` the benchmark checks.
type syncJSON struct {
	Push struct {
		Items        int `json:"items"`
		Written      int `json:"written"`
		Failed       int `json:"failed"`
		DeadLettered int `json:"deadLettered"`
	} `json:"push"`
}

// writePatients writes one Patient per client, as NDJSON the peer loads.
func writePatients(path string, clients []*ips.Client) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i, c := range clients {
		p := map[string]any{
			"resourceType": "Patient",
			"id":           fmt.Sprintf("bench-%d", i),
			"identifier":   []map[string]string{{"system": c.Patient.System, "value": c.Patient.Value}},
		}
		if err := enc.Encode(p); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// boundedBuffer keeps the last 64 KiB written to it: a child's stderr for
// a failure message, without holding a long run's log.
type boundedBuffer struct{ b []byte }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if over := len(w.b) - 64<<10; over > 0 {
		w.b = w.b[over:]
	}
	return len(p), nil
}

func (w *boundedBuffer) String() string { return string(w.b) }
