package syncer

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
)

// BenchmarkReplicas syncs the same caseload (200 clients unless
// IPSFHIR_BENCH_CLIENTS says otherwise) from one PostgreSQL database to the
// latency-bound EHR of BenchmarkLatencyBound (Epic's statement, every answer
// 150 ms late), once with one replica and once with three, each replica
// its own store handle, EHR client (concurrency 4) and workers, as three
// processes would be. It reports each run's requests per second, the ratio
// of three to one (issue 13 wants at least 2.5), and fails if the three
// together made more write requests or wrote more resources than the one
// did: a record written twice.
// Run: IPSFHIR_REQUIRE_PEER=1 IPSFHIR_TEST_POSTGRES_DSN=… go test -run '^$' -bench Replicas -benchtime 1x ./adapter/syncer
func BenchmarkReplicas(b *testing.B) {
	n := benchClients(b)
	for b.Loop() {
		one := benchReplicas(b, n, 1)
		three := benchReplicas(b, n, 3)
		if three.requests != one.requests || three.written != one.written {
			b.Fatalf("three replicas made %d requests and wrote %d resources; one made %d and wrote %d: a record was written twice or not at all",
				three.requests, three.written, one.requests, one.written)
		}
		b.ReportMetric(float64(n), "clients")
		b.ReportMetric(float64(one.requests), "requests")
		b.ReportMetric(one.perSecond(), "1-replica-requests/s")
		b.ReportMetric(three.perSecond(), "3-replicas-requests/s")
		b.ReportMetric(three.perSecond()/one.perSecond(), "ratio")
	}
}

type replicaRun struct {
	requests, written int
	wall              time.Duration
}

func (r replicaRun) perSecond() float64 { return float64(r.requests) / r.wall.Seconds() }

func benchReplicas(b *testing.B, n, replicas int) replicaRun {
	const concurrency = 4
	ctx := b.Context()
	cl, srv, log := latencyPeer(b, n)
	dsn := storetest.PostgresDSN(b)
	engines := make([]*Engine, replicas)
	conns := make([]*Connection, replicas)
	for i := range replicas {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		conns[i] = latencyConnection(b, srv.BaseURL, concurrency)
		engines[i] = &Engine{Store: st, Connections: []*Connection{conns[i]}, Owner: fmt.Sprintf("replica-%d", i), Lease: 10 * time.Minute, MaxAttempts: 3}
	}
	batch := make([]store.Stored, len(cl.Clients))
	for i, c := range cl.Clients {
		batch[i] = store.Stored{Client: c}
	}
	if _, err := engines[0].Store.SaveClients(ctx, batch, []string{"bench"}); err != nil {
		b.Fatal(err)
	}

	before, _ := log.requests()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sum  PushSummary
		errs []error
	)
	start := time.Now()
	for i := range replicas {
		wg.Go(func() {
			s, err := engines[i].PushConnection(ctx, conns[i], conns[i].Workers)
			mu.Lock()
			defer mu.Unlock()
			sum.add(s)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if len(errs) > 0 || sum.Failed != 0 {
		b.Fatalf("%d replicas: %+v %v", replicas, sum, errs)
	}
	// The last lines may reach the log a moment after their answers.
	time.Sleep(100 * time.Millisecond)
	after, _ := log.requests()
	return replicaRun{requests: after - before, written: sum.Written, wall: wall}
}
