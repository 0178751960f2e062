package syncer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// BenchmarkChangeLatency measures how long one IPS change takes to reach a
// responsive EHR (the peer) under a running Runner: from the save's commit
// to the EHR's answer to the write it causes. It makes 200 single edits
// (IPSFHIR_BENCH_EDITS) one after another with the outbox waking the push
// loop, then a tenth as many (at least 10) with PollOnly, where a change
// waits for the next pass of the default 5 s push interval: the ceiling it
// is compared against, measured in the same run. Polling edits come at a
// random moment of the interval. On SQLite the save goes through the
// Runner's Store; on PostgreSQL through a second Store on the same
// database, as another replica's API would. It reports p50 and p95 of
// each, and the ratio of the p95s.
// Run: go test -run '^$' -bench ChangeLatency -benchtime 1x ./adapter/syncer
func BenchmarkChangeLatency(b *testing.B) {
	edits := 200
	if v := os.Getenv("IPSFHIR_BENCH_EDITS"); v != "" {
		edits, _ = strconv.Atoi(v)
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				woken := changeLatencies(b, kind, edits, false)
				polled := changeLatencies(b, kind, max(edits/10, 10), true)
				wp50, wp95 := percentile(woken, 50), percentile(woken, 95)
				pp50, pp95 := percentile(polled, 50), percentile(polled, 95)
				b.ReportMetric(ms(wp50), "woken-p50-ms")
				b.ReportMetric(ms(wp95), "woken-p95-ms")
				b.ReportMetric(ms(pp50), "poll-p50-ms")
				b.ReportMetric(ms(pp95), "poll-p95-ms")
				b.ReportMetric(float64(wp95)/float64(pp95), "p95-ratio")
				b.Logf("%s: woken %d edits p50 %v p95 %v max %v; polling (%v) %d edits p50 %v p95 %v; p95 ratio %.3f",
					kind, len(woken), wp50, wp95, slices.Max(woken), DefaultPushInterval, len(polled), pp50, pp95, float64(wp95)/float64(pp95))
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// writeSignal tells, after each write the EHR answered without error,
// that a write landed.
type writeSignal struct {
	EHR
	landed chan struct{}
}

func (w *writeSignal) signal(err error) {
	if err == nil {
		select {
		case w.landed <- struct{}{}:
		default:
		}
	}
}

func (w *writeSignal) Create(ctx context.Context, t string, body []byte, ifNoneExist string) (*ehr.Response, error) {
	r, err := w.EHR.Create(ctx, t, body, ifNoneExist)
	w.signal(err)
	return r, err
}

func (w *writeSignal) Update(ctx context.Context, t, target string, body []byte, ifMatch string) (*ehr.Response, error) {
	r, err := w.EHR.Update(ctx, t, target, body, ifMatch)
	w.signal(err)
	return r, err
}

func (w *writeSignal) UpdateOnce(ctx context.Context, t, target string, body []byte) (*ehr.Response, error) {
	r, err := w.EHR.UpdateOnce(ctx, t, target, body)
	w.signal(err)
	return r, err
}

func (w *writeSignal) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	r, err := w.EHR.Transaction(ctx, bundle, idempotent)
	w.signal(err)
	return r, err
}

func (w *writeSignal) Batch(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	r, err := w.EHR.Batch(ctx, bundle, idempotent)
	w.signal(err)
	return r, err
}

// changeLatencies runs a Runner over a small synced caseload and returns the
// latency of each of edits single edits.
func changeLatencies(b *testing.B, kind string, edits int, pollOnly bool) []time.Duration {
	ctx := b.Context()
	cl := synth.Generate(rand.New(rand.NewPCG(5, 5)), 20)
	cl.Program = &ips.Program{ID: "latency"}
	yes := true
	var withGoals []*ips.Client
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
		if len(c.Goals) > 0 {
			withGoals = append(withGoals, c)
		}
	}
	srv := peer.StartForTest(b, peer.Options{Args: []string{"--quiet"}})
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL, Connection: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for _, cc := range cl.Clients {
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, cc.Patient.System, cc.Patient.Value)
		if _, err := c.Create(ctx, "Patient", []byte(body), ""); err != nil {
			b.Fatal(err)
		}
	}

	var st, saver store.Store
	switch kind {
	case "sqlite":
		s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ips.db"))
		if err != nil {
			b.Fatal(err)
		}
		st, saver = s, s
	case "postgres":
		dsn := storetest.PostgresDSN(b)
		s1, err := postgres.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		s2, err := postgres.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer s2.Close()
		st, saver = s1, s2
	}
	defer st.Close()

	batch := make([]store.Stored, len(cl.Clients))
	for i, cc := range cl.Clients {
		batch[i] = store.Stored{Client: cc}
	}
	if _, err := st.SaveClients(ctx, batch, []string{"bench"}); err != nil {
		b.Fatal(err)
	}
	sig := &writeSignal{EHR: c, landed: make(chan struct{}, 1)}
	connector := Connector{Name: "bench", Connect: func(ctx context.Context) (*Connection, error) {
		meta, err := c.Metadata(ctx)
		if err != nil {
			return nil, err
		}
		p, err := plan.Build(meta, plan.Options{})
		if err != nil {
			return nil, err
		}
		return &Connection{Plan: p, EHR: sig, Mapping: mappings.Options{Program: cl.ProgramID()}, ConsentDefault: true}, nil
	}}
	e := &Engine{Store: st, Owner: "bench", Lease: time.Minute, MaxAttempts: 3}
	r := NewRunner(e, Schedule{PushInterval: DefaultPushInterval, PollInterval: time.Hour, PollOnly: pollOnly}, connector)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()

	drained := func() {
		for deadline := time.Now().Add(2 * time.Minute); ; {
			d, err := st.OutboxDepth(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if d["bench"] == 0 {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("the outbox did not drain: %v", d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	drained()
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]time.Duration, 0, edits)
	for i := range edits {
		if pollOnly {
			// A change comes at any moment of the push interval.
			time.Sleep(rand.N(DefaultPushInterval))
		}
		select {
		case <-sig.landed:
		default:
		}
		cc := withGoals[rng.IntN(len(withGoals))]
		cc.Goals[0].Description = fmt.Sprintf("Work 20 hours a week (edit %d)", i)
		_, v, err := saver.GetClient(ctx, cc.ID)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := saver.SaveClients(ctx, []store.Stored{{Client: cc, Version: v}}, []string{"bench"}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-sig.landed:
			out = append(out, time.Since(start))
		case <-time.After(time.Minute):
			b.Fatalf("edit %d did not reach the EHR", i)
		}
		drained()
	}
	if dl, err := st.DeadLetters(ctx, ""); err != nil || len(dl) != 0 {
		b.Fatalf("dead letters %v, %v", dl, err)
	}
	return out
}
