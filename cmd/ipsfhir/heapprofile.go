//go:build ipsfhir_heapprofile

package main

// A measuring hook, only in binaries built with -tags ipsfhir_heapprofile
// (BenchmarkAdapterRSS with IPSFHIR_BENCH_HEAPPROFILE): never in the
// shipped binary. With IPSFHIR_HEAPPROFILE=FILE set, the process samples
// its heap every 200 ms and, each time the heap in use reaches a new high
// (by at least 1 MiB), writes the heap profile to FILE: the profile at the
// peak, for `go tool pprof -sample_index=inuse_space`. FILE.txt gets the
// runtime's memory figures at that moment.

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

func init() {
	path := os.Getenv("IPSFHIR_HEAPPROFILE")
	if path == "" {
		return
	}
	runtime.MemProfileRate = 64 << 10
	go func() {
		var high uint64
		for range time.Tick(200 * time.Millisecond) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse < high+1<<20 {
				continue
			}
			high = m.HeapInuse
			writeHeapProfile(path, &m)
		}
	}()
}

func writeHeapProfile(path string, m *runtime.MemStats) {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return
	}
	runtime.GC() // the profile's in-use figures are as of the last GC
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil || f.Close() != nil {
		return
	}
	_ = os.Rename(path+".tmp", path)
	_ = os.WriteFile(path+".txt", fmt.Appendf(nil,
		"HeapInuse %d MiB\nHeapAlloc %d MiB\nHeapSys %d MiB\nStackInuse %d MiB\nSys %d MiB\nNumGC %d\nat %s\n",
		m.HeapInuse>>20, m.HeapAlloc>>20, m.HeapSys>>20, m.StackInuse>>20, m.Sys>>20, m.NumGC, time.Now().UTC().Format(time.RFC3339)), 0o600)
}
