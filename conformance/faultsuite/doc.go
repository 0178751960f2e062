// Package faultsuite is the reliability suite: it runs the real ipsfhir
// binary as several `ipsfhir serve` replicas against the peer FHIR server
// behind a fault-injecting proxy, kills replicas, edits on both sides, and
// then checks that the EHR and the store converged with nothing lost,
// duplicated, reverted or left stale. docs/RELIABILITY.md has the
// scenarios, the commands and measured results.
//
// # One run (Run)
//
//  1. go build ./cmd/ipsfhir into a temporary directory (once: every
//     replica runs the binary a deployment would).
//  2. Start the peer (conformance/peer), in its own mode (for the
//     no-conditional-create scenario, without conditional create of
//     Goal) or acting out Epic's CapabilityStatement, and a faultproxy
//     in front of it,
//     seeded, with faults off for now.
//  3. Make a store: an SQLite file, or a fresh PostgreSQL schema on the
//     server in IPSFHIR_TEST_POSTGRES_DSN (dropped at the end).
//  4. Generate N clients (ips/synth), create each client's Patient on the
//     peer directly (the adapter finds patients by identifier), and
//     `ipsfhir import` the caseload, which queues every client.
//  5. Start R replicas of `ipsfhir serve`, each on its own port, all on
//     the same store, all talking to the EHR through the proxy; wait for
//     each /healthz.
//  6. Chaos: faults on at Options.Rate (500, 502, 503, 429 with
//     Retry-After, hangs past the client's 30 s timeout, resets, lost
//     replies); every few seconds a random replica is SIGKILLed and
//     restarted (a replica that exits on its own is restarted too, and
//     counted as a failure); the IPS side edits through /api/v1 and a
//     clinician edits Goals on the peer directly. The two sides never
//     change the same field (see edits.go), and each keeps a log of the
//     last value it set.
//  7. Faults off (SetRate(0), ReleaseHung), every replica stopped with
//     SIGTERM and started again, and a bounded wait until the outbox
//     (GET /admin/connections) stays empty.
//  8. Checks, reading the EHR on the peer directly and the store through
//     /api/v1: no duplicates by business identifier; no consenting
//     client's record missing, no non-consenting client's record
//     present; every resource holds the expected final values (IPS-owned
//     fields: the last API edit; clinician-owned: the last clinician
//     edit); the store still holds every last API value and holds the
//     clinician's changes; no conflict records (no field was changed by
//     both sides); no dead letters; no serve process exited on its own.
//
// Failures are reported, never hidden: each failed assertion says what was
// observed (counts by resource type and field, HTTP statuses, the last
// lines of a dead replica's stderr). Report and its Mismatches hold
// counts, codes and the synthetic program ids, never free text or patient
// identifiers.
//
// # Soak (Soak)
//
// The same set-up under a steady load instead of chaos: a fault rate and
// a stream of edits for a given time, with each serve process's RSS and
// open file descriptors (from /proc), goroutines (from /metrics when serve
// exports them) and the outbox depth sampled every 30 s, and a trend
// (least-squares slope per hour) of each. Then faults off and the same
// checks, except that dead letters from a permanent refusal are tolerated.
//
// # Commands
//
// The tests run a short run of each scenario and the five-minute soak
// (TestSoak), in parallel. Longer runs:
//
//	go run ./conformance/faultsuite/cmd/faultrun -scenario sqlite -clients 1000 -chaos 10m -seed 1 -rate 0.2
//	go run ./conformance/faultsuite/cmd/faultrun -soak -clients 500 -minutes 60
package faultsuite
