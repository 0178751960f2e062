// Package peer starts the peer FHIR R4 server that ipsfhir's integration
// tests run against: a FHIR server nobody on this project wrote.
//
// The engine is Medplum's @medplum/fhir-router (5.2.13, pinned in
// package-lock.json) with its in-memory MemoryRepository. server.mjs, next to
// this file, is a small node:http wrapper that adds what the engine lacks and
// tests need: a CapabilityStatement at /metadata, validation (400 with an
// OperationOutcome), paging links, transaction rollback, ETag/Location/
// Last-Modified headers, an identifier index, an "enforce" mode that behaves
// like a given EHR's CapabilityStatement (405 for undeclared interactions,
// 400 for undeclared search parameters), and fault injection. README.md in this
// directory has the details and the known gaps. Options.NoVersionHeaders
// drops the ETag and versioned Locations, as stock Medplum does.
// conformance/faultproxy injects faults the client does not ask for.
//
// A test starts one with
//
//	srv := peer.StartForTest(t, peer.Options{})
//	resp, err := http.Get(srv.BaseURL + "/metadata")
//
// and, to act like Epic:
//
//	srv := peer.StartForTest(t, peer.Options{
//		Capability: "../../testdata/ehr-capabilities/epic-r4-sandbox-2026-07.json",
//	})
//
// Each test's server is a tenant of one node process shared by the test
// binary (server.mjs --tenants): its own store, statement and base URL, but
// no process start per test. Options.Dedicated, Options.Dir, process-wide
// flags, benchmarks and IPSFHIR_PEER_SHARED=0 get a process of their own.
//
// NodeForTest gives a test node and the installed dependencies without a
// server, to run Medplum's client (@medplum/core) against one of this
// project's servers (adapter/fhirapi's TestMedplumClient does).
//
// The server needs Node.js 20 or later. The first start runs `npm ci` in this
// directory (from the npm registry, under a lock file so parallel test
// packages do not race) when node_modules is missing or older than
// package-lock.json. StartForTest skips the test when node is not on PATH,
// unless IPSFHIR_REQUIRE_PEER is set (CI sets it), in which case it fails.
package peer
