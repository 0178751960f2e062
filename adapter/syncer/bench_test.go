package syncer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
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

// BenchmarkSyncCaseload syncs a synthetic caseload (10,000 clients unless
// IPSFHIR_BENCH_CLIENTS says otherwise) from an SQLite store to the peer FHIR
// server, then posts the same resources as pre-built transaction Bundles of
// 100 to a second, fresh peer: the ceiling, what the server itself accepts.
// It also times an incremental pass after 1% of the clients changed.
// IPSFHIR_BENCH_WORKERS sets the push workers (default 1, as sync.workers).
// Run: go test -run '^$' -bench SyncCaseload -benchtime 1x ./adapter/syncer
func BenchmarkSyncCaseload(b *testing.B) {
	n, workers := 10000, 1
	if v := os.Getenv("IPSFHIR_BENCH_CLIENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("IPSFHIR_BENCH_WORKERS"); v != "" {
		workers, _ = strconv.Atoi(v)
	}
	for b.Loop() {
		benchSync(b, n, workers)
	}
}

func benchSync(b *testing.B, n, workers int) {
	ctx := b.Context()
	cl := synth.Generate(rand.New(rand.NewPCG(99, 99)), n)
	cl.Program = &ips.Program{ID: "bench"}
	yes := true
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
	}
	seed := func(c *ehr.Client) {
		for i := 0; i < len(cl.Clients); i += 500 {
			body := `{"resourceType":"Bundle","type":"batch","entry":[`
			for j, cc := range cl.Clients[i:min(i+500, len(cl.Clients))] {
				if j > 0 {
					body += ","
				}
				body += fmt.Sprintf(`{"resource":{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]},"request":{"method":"POST","url":"Patient"}}`, cc.Patient.System, cc.Patient.Value)
			}
			if _, err := c.Batch(ctx, []byte(body+"]}"), false); err != nil {
				b.Fatal(err)
			}
		}
	}

	// The sync.
	srv := peer.StartForTest(b, peer.Options{Args: []string{"--quiet"}})
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL, Connection: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	seed(c)
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ips.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	meta, _ := c.Metadata(ctx)
	p, err := plan.Build(meta, plan.Options{})
	if err != nil {
		b.Fatal(err)
	}
	conn := &Connection{Name: "bench", Plan: p, EHR: c, Mapping: mappings.Options{Program: "bench"}, ConsentDefault: true}
	e := &Engine{Store: st, Connections: []*Connection{conn}, Owner: "bench", Lease: 10 * time.Minute, MaxAttempts: 3}
	save := func(clients []*ips.Client) {
		for i := 0; i < len(clients); i += 1000 {
			var batch []store.Stored
			for _, cc := range clients[i:min(i+1000, len(clients))] {
				_, v, _ := st.GetClient(ctx, cc.ID)
				batch = append(batch, store.Stored{Client: cc, Version: v})
			}
			if _, err := st.SaveClients(ctx, batch, []string{"bench"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	save(cl.Clients)
	start := time.Now()
	s, err := e.PushParallel(ctx, workers)
	syncWall := time.Since(start)
	if err != nil || s.Failed != 0 {
		b.Fatalf("sync: %+v %v", s, err)
	}

	// 1% of the clients change one goal each: an incremental pass.
	var changed []*ips.Client
	for i, cc := range cl.Clients {
		if i%100 == 0 && len(cc.Goals) > 0 {
			cc.Goals[0].Description += " (updated)"
			changed = append(changed, cc)
		}
	}
	save(changed)
	start = time.Now()
	inc, err := e.PushParallel(ctx, workers)
	incWall := time.Since(start)
	if err != nil || inc.Failed != 0 {
		b.Fatalf("incremental: %+v %v", inc, err)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)

	// The ceiling: the same resources as transaction Bundles of 100, built
	// beforehand, posted to a fresh server holding the same patients.
	srv2 := peer.StartForTest(b, peer.Options{Args: []string{"--quiet"}})
	c2, err := ehr.New(ehr.Options{BaseURL: srv2.BaseURL, Connection: "ceiling"})
	if err != nil {
		b.Fatal(err)
	}
	seed(c2)
	var entries []mappings.Entry
	for _, cc := range cl.Clients {
		entries = append(entries, mappings.ClientEntries(cc, mappings.Options{Program: "bench"})...)
	}
	var bundles [][]byte
	for i := 0; i < len(entries); i += 100 {
		bd, err := mappings.EntriesBundle(entries[i:min(i+100, len(entries))], mappings.Transaction)
		if err != nil {
			b.Fatal(err)
		}
		js, err := mappings.MarshalCompact(bd)
		if err != nil {
			b.Fatal(err)
		}
		bundles = append(bundles, js)
	}
	start = time.Now()
	for _, js := range bundles {
		if _, err := c2.Transaction(ctx, js, true); err != nil {
			b.Fatal(err)
		}
	}
	ceilWall := time.Since(start)

	b.ReportMetric(float64(n), "clients")
	b.ReportMetric(float64(workers), "workers")
	b.ReportMetric(float64(s.Written), "resources")
	b.ReportMetric(syncWall.Seconds(), "sync-s")
	b.ReportMetric(float64(s.Written)/syncWall.Seconds(), "sync-resources/s")
	b.ReportMetric(float64(len(entries))/ceilWall.Seconds(), "ceiling-resources/s")
	b.ReportMetric(ceilWall.Seconds()/syncWall.Seconds(), "ratio")
	b.ReportMetric(incWall.Seconds(), "incremental-s")
	b.ReportMetric(float64(inc.Written), "incremental-written")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
}
