package mappings

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// The mapping benchmarks measure what a sync pass costs per client before any
// network I/O: building the resources and writing their JSON. The ceiling is
// google/fhir/go's own marshal of the same, already-built resources; the gap
// between the two is what the mapping adds. Results: docs/BENCHMARKS.md.

const benchClients = 1000

func benchCaseloadEntries() []Entry {
	cl := synth.Generate(rand.New(rand.NewPCG(7, 7)), benchClients)
	o := Options{Program: cl.ProgramID(), Now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	var entries []Entry
	for _, c := range cl.Clients {
		entries = append(entries, ClientEntries(c, o)...)
	}
	return entries
}

// BenchmarkMapAndMarshal1000Clients maps a 1,000-client caseload and writes
// every resource as FHIR JSON.
func BenchmarkMapAndMarshal1000Clients(b *testing.B) {
	cl := synth.Generate(rand.New(rand.NewPCG(7, 7)), benchClients)
	o := Options{Program: cl.ProgramID(), Now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	var resources int
	for b.Loop() {
		resources = 0
		for _, c := range cl.Clients {
			for _, e := range ClientEntries(c, o) {
				if _, err := MarshalCompact(e.Resource); err != nil {
					b.Fatal(err)
				}
				resources++
			}
		}
	}
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkMarshalOnly1000Clients is the ceiling: the same resources, built
// beforehand, written by google/fhir/go's marshaller alone.
func BenchmarkMarshalOnly1000Clients(b *testing.B) {
	entries := benchCaseloadEntries()
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range entries {
			if _, err := MarshalCompact(e.Resource); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(entries))*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkMapOnly1000Clients isolates building the protos.
func BenchmarkMapOnly1000Clients(b *testing.B) {
	cl := synth.Generate(rand.New(rand.NewPCG(7, 7)), benchClients)
	o := Options{Program: cl.ProgramID()}
	b.ReportAllocs()
	var resources int
	for b.Loop() {
		resources = 0
		for _, c := range cl.Clients {
			resources += len(ClientEntries(c, o))
		}
	}
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
