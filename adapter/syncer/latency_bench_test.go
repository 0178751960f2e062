package syncer

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// benchLatency is the latency-bound EHR's answer time.
const benchLatency = 150 * time.Millisecond

// BenchmarkLatencyBound syncs a synthetic caseload (200 clients unless
// IPSFHIR_BENCH_CLIENTS says otherwise) to the peer acting as Epic (its
// CapabilityStatement enforced: one request per resource, no Bundles) and
// answering every request 150 ms late, with the EHR client's concurrency
// limit (and as many push workers) at 4 and at 8. The ceiling is what that
// limit allows against that latency, concurrency / 150 ms requests per
// second; the ratio is the requests per second the sync made, counted in
// the peer's access log, over the ceiling.
// Run: IPSFHIR_REQUIRE_PEER=1 go test -run '^$' -bench LatencyBound -benchtime 1x ./adapter/syncer
func BenchmarkLatencyBound(b *testing.B) {
	n := benchClients(b)
	for _, c := range []int{4, 8} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			for b.Loop() {
				benchLatencyBound(b, n, c)
			}
		})
	}
}

// benchClients is IPSFHIR_BENCH_CLIENTS, or 200.
func benchClients(b *testing.B) int {
	v := os.Getenv("IPSFHIR_BENCH_CLIENTS")
	if v == "" {
		return 200
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("IPSFHIR_BENCH_CLIENTS=%q: want a positive number of clients", v)
	}
	return n
}

// latencyCaseload makes cl the program "bench"'s, every client consenting,
// and writes the clinic's patients as NDJSON for the peer to load before
// it listens (and without its latency); it returns the file.
func latencyCaseload(b *testing.B, cl *ips.Caseload) string {
	cl.Program = &ips.Program{ID: "bench"}
	yes := true
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
	}
	seed := filepath.Join(b.TempDir(), "patients.ndjson")
	f, err := os.Create(seed)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, c := range cl.Clients {
		fmt.Fprintf(w, `{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`+"\n", c.Patient.System, c.Patient.Value)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return seed
}

// latencyPeer starts a peer of its own acting out Epic's statement and
// answering every request benchLatency late, holding the patients of a
// synthetic caseload of n clients (latencyCaseload); its access log counts
// the requests.
func latencyPeer(b *testing.B, n int) (*ips.Caseload, *peer.Server, *accessLog) {
	cl := synth.Generate(rand.New(rand.NewPCG(13, 13)), n)
	log := &accessLog{}
	srv := peer.StartForTest(b, peer.Options{
		Capability: filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"),
		Seed:       latencyCaseload(b, cl), Latency: benchLatency, Stderr: log, Dedicated: true,
	})
	return cl, srv, log
}

// latencyConnection is a connection "bench" to the latency-bound peer at
// base: its own EHR client with the given concurrency limit and as many
// workers, and the plan its statement gives, which must send one request
// per resource.
func latencyConnection(b *testing.B, base string, concurrency int) *Connection {
	client, err := ehr.New(ehr.Options{BaseURL: base, Connection: "bench", MaxConcurrency: concurrency})
	if err != nil {
		b.Fatal(err)
	}
	meta, err := client.Metadata(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	p, err := plan.Build(meta, plan.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if p.Bundles != "none" {
		b.Fatalf("the Epic plan groups writes in %s Bundles; this benchmark is about one request per resource", p.Bundles)
	}
	return &Connection{Name: "bench", Plan: p, EHR: client, Mapping: mappings.Options{Program: "bench"}, ConsentDefault: true, Workers: concurrency}
}

// accessLog counts the peer's access log lines: one per request answered.
type accessLog struct {
	mu      sync.Mutex
	partial []byte
	count   int
	ms      int // the answer times the lines report, added up
}

var accessLine = regexp.MustCompile(`^peer: [A-Z]+ \S+.* (\d+)ms$`)

func (l *accessLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := -1
		for j, c := range l.partial {
			if c == '\n' {
				i = j
				break
			}
		}
		if i < 0 {
			return len(p), nil
		}
		if m := accessLine.FindSubmatch(l.partial[:i]); m != nil {
			l.count++
			ms, _ := strconv.Atoi(string(m[1]))
			l.ms += ms
		}
		l.partial = l.partial[i+1:]
	}
}

func (l *accessLog) requests() (n, ms int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.ms
}

func benchLatencyBound(b *testing.B, n, concurrency int) {
	ctx := b.Context()
	cl, srv, log := latencyPeer(b, n)
	conn := latencyConnection(b, srv.BaseURL, concurrency)
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ips.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := &Engine{Store: st, Connections: []*Connection{conn}, Owner: "bench", Lease: 10 * time.Minute, MaxAttempts: 3}
	var batch []store.Stored
	for _, c := range cl.Clients {
		batch = append(batch, store.Stored{Client: c})
	}
	if _, err := st.SaveClients(ctx, batch, []string{"bench"}); err != nil {
		b.Fatal(err)
	}

	before, beforeMS := log.requests()
	start := time.Now()
	s, err := e.PushConnection(ctx, conn, conn.Workers)
	wall := time.Since(start)
	if err != nil || s.Failed != 0 {
		b.Fatalf("sync: %+v %v", s, err)
	}
	// The last lines may reach the log a moment after their answers.
	time.Sleep(100 * time.Millisecond)
	after, afterMS := log.requests()
	requests := after - before

	throughput := float64(requests) / wall.Seconds()
	ceiling := float64(concurrency) / benchLatency.Seconds()
	b.ReportMetric(float64(n), "clients")
	b.ReportMetric(float64(concurrency), "concurrency")
	b.ReportMetric(float64(s.Written), "resources")
	b.ReportMetric(float64(requests), "requests")
	b.ReportMetric(wall.Seconds(), "sync-s")
	b.ReportMetric(throughput, "requests/s")
	b.ReportMetric(ceiling, "ceiling-requests/s")
	b.ReportMetric(float64(afterMS-beforeMS)/float64(requests), "peer-ms/request")
	b.ReportMetric(throughput/ceiling, "ratio")
}
