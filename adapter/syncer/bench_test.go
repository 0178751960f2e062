package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// IPSFHIR_BENCH_WORKERS sets the push workers (default 1).
// IPSFHIR_BENCH_CEILING_ENTRIES sets the least entries of a ceiling Bundle
// (default 100); 1 replays the sync's own Bundles as they were, one
// request at a time, which shows the peer's cost per request.
// Run: go test -run '^$' -bench SyncCaseload -benchtime 1x ./adapter/syncer
func BenchmarkSyncCaseload(b *testing.B) {
	n, workers, ceilingEntries := 10000, 1, 100
	if v := os.Getenv("IPSFHIR_BENCH_CLIENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("IPSFHIR_BENCH_WORKERS"); v != "" {
		workers, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("IPSFHIR_BENCH_CEILING_ENTRIES"); v != "" {
		ceilingEntries, _ = strconv.Atoi(v)
	}
	for b.Loop() {
		benchSync(b, n, workers, ceilingEntries)
	}
}

func benchSync(b *testing.B, n, workers, ceilingEntries int) {
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
	rec := &recordingEHR{EHR: c}
	conn := &Connection{Name: "bench", Plan: p, EHR: rec, Mapping: mappings.Options{Program: "bench"}, ConsentDefault: true}
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
	rec.mu.Lock()
	synced, syncRequests, syncSearches := rec.bundles, rec.requests, rec.searches
	rec.mu.Unlock()

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

	// The ceiling: what the sync wrote, entry for entry (the resources and
	// their Provenances, with the same conditional requests), regrouped
	// into transaction Bundles of at least 100 entries (whole Bundles of the
	// sync joined, so that each one's urn:uuid references still resolve
	// inside it) and posted to a fresh server holding the same patients.
	srv2 := peer.StartForTest(b, peer.Options{Args: []string{"--quiet"}})
	c2, err := ehr.New(ehr.Options{BaseURL: srv2.BaseURL, Connection: "ceiling"})
	if err != nil {
		b.Fatal(err)
	}
	seed(c2)
	bundles, entries := regrouped(b, synced, ceilingEntries)
	start = time.Now()
	for _, js := range bundles {
		if _, err := c2.Transaction(ctx, js, true); err != nil {
			b.Fatal(err)
		}
	}
	ceilWall := time.Since(start)
	sent := s.Written + s.Provenances

	b.ReportMetric(float64(n), "clients")
	b.ReportMetric(float64(workers), "workers")
	b.ReportMetric(float64(s.Written), "resources")
	b.ReportMetric(float64(s.Provenances), "provenances")
	b.ReportMetric(syncWall.Seconds(), "sync-s")
	b.ReportMetric(float64(s.Written)/syncWall.Seconds(), "sync-resources/s")
	b.ReportMetric(float64(sent)/syncWall.Seconds(), "sync-entries/s")
	b.ReportMetric(float64(entries)/ceilWall.Seconds(), "ceiling-entries/s")
	b.ReportMetric(float64(syncRequests), "sync-requests")
	b.ReportMetric(float64(syncSearches), "sync-searches")
	b.ReportMetric(float64(len(bundles)), "ceiling-requests")
	b.ReportMetric((float64(sent)/syncWall.Seconds())/(float64(entries)/ceilWall.Seconds()), "ratio")
	b.ReportMetric(incWall.Seconds(), "incremental-s")
	b.ReportMetric(float64(inc.Written), "incremental-written")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
}

// recordingEHR keeps every write the sync sends (Bundles, and single
// creates and updates as one-entry Bundles), for the ceiling to send the
// same entries again.
type recordingEHR struct {
	EHR
	mu       sync.Mutex
	requests int
	searches int
	bundles  [][]json.RawMessage // each Bundle's entries
}

func (r *recordingEHR) Search(ctx context.Context, t string, q url.Values) ([]ehr.Entry, error) {
	r.mu.Lock()
	r.searches++
	r.mu.Unlock()
	return r.EHR.Search(ctx, t, q)
}

func (r *recordingEHR) keep(entries []json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.bundles = append(r.bundles, entries)
}

func (r *recordingEHR) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	var b struct{ Entry []json.RawMessage }
	if json.Unmarshal(bundle, &b) == nil {
		r.keep(b.Entry)
	}
	return r.EHR.Transaction(ctx, bundle, idempotent)
}

func (r *recordingEHR) single(method, url string, body []byte, ifNoneExist string) {
	req := map[string]string{"method": method, "url": url}
	if ifNoneExist != "" {
		req["ifNoneExist"] = ifNoneExist
	}
	e, _ := json.Marshal(map[string]any{"resource": json.RawMessage(body), "request": req})
	r.keep([]json.RawMessage{e})
}

func (r *recordingEHR) Create(ctx context.Context, t string, body []byte, ifNoneExist string) (*ehr.Response, error) {
	r.single("POST", t, body, ifNoneExist)
	return r.EHR.Create(ctx, t, body, ifNoneExist)
}

func (r *recordingEHR) Update(ctx context.Context, t, target string, body []byte, ifMatch string) (*ehr.Response, error) {
	url := t + "/" + target
	if strings.Contains(target, "=") {
		url = t + "?" + strings.TrimPrefix(target, "?") // a conditional update
	}
	r.single("PUT", url, body, "")
	return r.EHR.Update(ctx, t, target, body, ifMatch)
}

// regrouped joins recorded Bundles into transaction Bundles of at least n
// entries each, and counts the entries. A recorded Bundle that names a
// conditional target already in the Bundle being built (two workers both
// wrote a specialist's Practitioner, and its Provenance) starts a new one:
// a transaction may not hold two entries for one resource.
func regrouped(b *testing.B, recorded [][]json.RawMessage, n int) (bundles [][]byte, entries int) {
	var cur []json.RawMessage
	targets := map[string]bool{}
	flush := func() {
		if len(cur) == 0 {
			return
		}
		js, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": cur})
		if err != nil {
			b.Fatal(err)
		}
		bundles, cur = append(bundles, js), nil
		clear(targets)
	}
	targetsOf := func(es []json.RawMessage) []string {
		var out []string
		for _, e := range es {
			var en struct {
				Request struct{ Method, URL, IfNoneExist string }
			}
			if json.Unmarshal(e, &en) == nil {
				out = append(out, en.Request.Method+" "+en.Request.URL+" "+en.Request.IfNoneExist)
			}
		}
		return out
	}
	for _, es := range recorded {
		ts := targetsOf(es)
		if slices.ContainsFunc(ts, func(t string) bool { return targets[t] }) {
			flush()
		}
		for _, t := range ts {
			targets[t] = true
		}
		cur = append(cur, es...)
		entries += len(es)
		if len(cur) >= n {
			flush()
		}
	}
	flush()
	return bundles, entries
}
