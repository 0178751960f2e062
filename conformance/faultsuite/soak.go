package faultsuite

import (
	"bufio"
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SoakOptions configure the steady phase of Soak; the rest (scenario,
// clients, fault rate, seed, store) comes from Options.
type SoakOptions struct {
	// Duration is how long faults and edits run. Default 10 min.
	Duration time.Duration
	// EditsPerSecond is the steady stream of edits: two thirds through
	// the API, one third by a clinician on the peer (where goals are
	// written natively). Default 2.
	EditsPerSecond float64
	// SampleEvery is how often each serve process is sampled. Default 30 s.
	SampleEvery time.Duration
	// WarmUp is left out of the trends: the first sync of the whole
	// caseload and the runtime's first growth are not a leak. Default a
	// sixth of Duration, at most 5 min.
	WarmUp time.Duration
}

func (s SoakOptions) withDefaults() SoakOptions {
	if s.Duration == 0 {
		s.Duration = 10 * time.Minute
	}
	if s.EditsPerSecond == 0 {
		s.EditsPerSecond = 2
	}
	if s.SampleEvery == 0 {
		s.SampleEvery = 30 * time.Second
	}
	if s.WarmUp == 0 {
		s.WarmUp = min(s.Duration/6, 5*time.Minute)
	}
	return s
}

// Sample is one look at one serve process.
type Sample struct {
	At         time.Duration // since the steady phase began
	Replica    int
	PID        int
	RSS        int64 // bytes, from /proc/PID/status VmRSS
	FDs        int   // open file descriptors, from /proc/PID/fd
	Goroutines int   // from /metrics; -1 when serve does not export them
	Outbox     int   // outbox depth (all connections), -1 when unknown
	Phase      string
}

// Trend is the least-squares slope of one measure of one replica over
// the samples, per hour.
type Trend struct {
	Replica int
	Measure string // rss-mib, fds, goroutines, outbox
	PerHour float64
	First   float64
	Last    float64
	Samples int
}

// SoakReport is what a soak saw: the end-of-run checks, the samples and
// their trends.
type SoakReport struct {
	*Report
	Duration       time.Duration
	EditsPerSecond float64
	WarmUp         time.Duration // samples before it are not in Trends
	Samples        []Sample
	Trends         []Trend
	// GoroutinesNote says where goroutine counts came from, or that serve
	// does not export them.
	GoroutinesNote string
	// PermanentDeadLetters counts dead letters whose reason is a
	// permanent refusal by the EHR (a 4xx other than 408, 409, 412 and
	// 429), which the soak tolerates.
	PermanentDeadLetters int
}

// Soak runs a steady load: N clients, a fault rate, a stream of edits for
// SoakOptions.Duration, sampling each serve process's RSS, open file
// descriptors, goroutines and the outbox depth; then faults off, and the
// same end-of-run checks as Run. The replicas are not restarted before
// the drain (the point is the long-running processes), and only dead
// letters caused by a permanent refusal are tolerated.
func Soak(ctx context.Context, o Options, s SoakOptions) (*SoakReport, error) {
	s = s.withDefaults()
	o.soak = &s
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 5 * time.Minute
	}
	o.KillEvery = -1
	o.Chaos = s.Duration
	rep, err := Run(ctx, o)
	sr := &SoakReport{Report: rep, Duration: s.Duration, EditsPerSecond: s.EditsPerSecond}
	if rep == nil {
		return sr, err
	}
	sr.Samples, sr.GoroutinesNote, sr.PermanentDeadLetters = rep.soakSamples, rep.soakGoroutines, rep.soakPermanent
	sr.WarmUp = s.WarmUp
	sr.Trends = trends(sr.Samples, s.WarmUp)
	return sr, err
}

// soakPhase is Soak's steady phase, run in place of chaos.
func (r *run) soakPhase(ctx context.Context, s SoakOptions) error {
	r.logf("soak for %v: fault rate %.2f, %.1f edits/s, a sample every %v", s.Duration, r.opts.Rate, s.EditsPerSecond, s.SampleEvery)
	r.proxy.SetRate(r.opts.Rate)
	start := time.Now()
	steady, stop := context.WithTimeout(ctx, s.Duration)
	defer stop()
	graceCtx, stopGrace := context.WithTimeout(ctx, s.Duration+editGrace)
	defer stopGrace()

	r.sampleStart = start
	sampleCtx, stopSampling := context.WithCancel(ctx)
	r.sampling = stopSampling
	r.samplerDone = make(chan struct{})
	go func() {
		defer close(r.samplerDone)
		r.sampler(sampleCtx, start, s.SampleEvery)
	}()

	ipsRate, clinRate := s.EditsPerSecond, 0.0
	if r.paths["employment-goal"] == "native" {
		ipsRate, clinRate = s.EditsPerSecond*2/3, s.EditsPerSecond/3
	} else {
		r.report.ClinicianNote = "none: the EHR's statement makes Goal read-only, so goals travel in the chart note and there is no Goal for a clinician to edit"
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.supervise(steady, -1) }()
	go func() {
		defer wg.Done()
		rngs := sync.Pool{New: func() any { return r.childRand() }}
		paced(steady, ipsRate, 1, func() int { return int(r.editSeq.Add(1)) }, func(n int) {
			rng := rngs.Get().(*mrand.Rand)
			defer rngs.Put(rng)
			r.ipsEdit(graceCtx, rng, n)
		})
	}()
	go func() {
		defer wg.Done()
		rngs := sync.Pool{New: func() any { return r.childRand() }}
		paced(steady, clinRate, 1, func() int { return int(r.editSeq.Add(1)) }, func(n int) {
			rng := rngs.Get().(*mrand.Rand)
			defer rngs.Put(rng)
			r.clinicianEdit(graceCtx, rng, n)
		})
	}()
	<-steady.Done()
	r.proxy.SetRate(0)
	r.proxy.ReleaseHung()
	r.setPhase("drain")
	r.logf("soak: faults off after %v", time.Since(start).Round(time.Second))
	wg.Wait()
	return ctx.Err()
}

func (r *run) setPhase(p string) {
	r.smu.Lock()
	r.phase = p
	r.smu.Unlock()
}

// sampler samples every replica every `every` until ctx ends.
func (r *run) sampler(ctx context.Context, start time.Time, every time.Duration) {
	r.setPhase("steady")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.sampleOnce(ctx, start)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var goroutineMetric = regexp.MustCompile(`(?m)^(go_goroutines|go_goroutine_count|process_runtime_go_goroutines)(\{[^}]*\})?\s+([0-9.e+]+)`)

func (r *run) sampleOnce(ctx context.Context, start time.Time) {
	depth := -1
	if d, err := r.api(0).outboxDepth(ctx); err == nil {
		depth = d
	}
	r.smu.Lock()
	phase := r.phase
	r.smu.Unlock()
	for i, rep := range r.replicas {
		pid := rep.pid()
		if pid == 0 {
			continue
		}
		rss, fds, ok := procSample(pid)
		if !ok {
			continue
		}
		g := -1
		if text, err := r.api(i).metrics(ctx); err == nil {
			if m := goroutineMetric.FindStringSubmatch(text); m != nil {
				if v, err := strconv.ParseFloat(m[3], 64); err == nil {
					g = int(v)
					r.smu.Lock()
					r.report.soakGoroutines = "from /metrics (" + m[1] + ")"
					r.smu.Unlock()
				}
			} else {
				r.smu.Lock()
				if r.report.soakGoroutines == "" {
					r.report.soakGoroutines = "serve's /metrics exports no goroutine count (no go_goroutines): not sampled"
				}
				r.smu.Unlock()
			}
		}
		s := Sample{At: time.Since(start), Replica: i, PID: pid, RSS: rss, FDs: fds, Goroutines: g, Outbox: depth, Phase: phase}
		r.smu.Lock()
		r.report.soakSamples = append(r.report.soakSamples, s)
		r.smu.Unlock()
		r.logf("sample %s replica %d: rss %.1f MiB, %d fds, goroutines %d, outbox %d", s.At.Round(time.Second), i, float64(rss)/(1<<20), fds, g, depth)
	}
}

// stopSampling takes a last sample and ends the sampler, which runs
// through the drain too.
func (r *run) stopSampling() {
	if r.sampling == nil {
		return
	}
	r.sampling()
	<-r.samplerDone
	r.sampling = nil
	r.setPhase("end")
	r.sampleOnce(context.Background(), r.sampleStart)
}

// trends fits a line to each replica's measures over time, leaving out
// the samples taken before warmUp.
func trends(samples []Sample, warmUp time.Duration) []Trend {
	type series struct{ xs, ys []float64 }
	byKey := map[[2]string]*series{}
	var keys [][2]string
	addPoint := func(rep int, measure string, x, y float64) {
		k := [2]string{strconv.Itoa(rep), measure}
		s := byKey[k]
		if s == nil {
			s = &series{}
			byKey[k] = s
			keys = append(keys, k)
		}
		s.xs, s.ys = append(s.xs, x), append(s.ys, y)
	}
	for _, s := range samples {
		if s.At < warmUp {
			continue
		}
		h := s.At.Hours()
		addPoint(s.Replica, "rss-mib", h, float64(s.RSS)/(1<<20))
		addPoint(s.Replica, "fds", h, float64(s.FDs))
		if s.Goroutines >= 0 {
			addPoint(s.Replica, "goroutines", h, float64(s.Goroutines))
		}
		if s.Replica == 0 && s.Outbox >= 0 {
			addPoint(s.Replica, "outbox", h, float64(s.Outbox))
		}
	}
	var out []Trend
	for _, k := range keys {
		s := byKey[k]
		rep, _ := strconv.Atoi(k[0])
		out = append(out, Trend{Replica: rep, Measure: k[1], PerHour: slope(s.xs, s.ys), First: s.ys[0], Last: s.ys[len(s.ys)-1], Samples: len(s.xs)})
	}
	return out
}

// slope is the least-squares slope of ys over xs (0 with fewer than two
// distinct xs).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if math.Abs(den) < 1e-12 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// permanentRefusal reports whether a dead letter's reason is the EHR
// refusing the request for good: an HTTP 4xx other than 408 (timeout),
// 409/412 (a race), 429 (rate limit).
var httpStatusInReason = regexp.MustCompile(`\(HTTP (\d{3})\)`)

func permanentRefusal(reason string) bool {
	m := httpStatusInReason.FindStringSubmatch(reason)
	if m == nil {
		return false
	}
	code, _ := strconv.Atoi(m[1])
	return code >= 400 && code < 500 && code != 408 && code != 409 && code != 412 && code != 429
}

// String renders the soak's samples, trends and checks.
func (s *SoakReport) String() string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	fmt.Fprintf(w, "soak: %v steady at fault rate %.2f, %.1f edits/s\n", s.Duration, s.Rate, s.EditsPerSecond)
	fmt.Fprintf(w, "  goroutines: %s\n", s.GoroutinesNote)
	fmt.Fprintf(w, "  samples (every replica):\n    %-8s %-6s %-7s %-9s %-5s %-10s %-6s %s\n", "at", "phase", "replica", "rss MiB", "fds", "goroutines", "outbox", "pid")
	for _, x := range s.Samples {
		fmt.Fprintf(w, "    %-8s %-6s %-7d %-9.1f %-5d %-10d %-6d %d\n", x.At.Round(time.Second), x.Phase, x.Replica, float64(x.RSS)/(1<<20), x.FDs, x.Goroutines, x.Outbox, x.PID)
	}
	fmt.Fprintf(w, "  trends (least-squares slope per hour, samples after the first %v):\n", s.WarmUp)
	for _, t := range s.Trends {
		fmt.Fprintf(w, "    replica %d %-10s %+10.2f/h  (first %.1f, last %.1f, %d samples)\n", t.Replica, t.Measure, t.PerHour, t.First, t.Last, t.Samples)
	}
	if s.PermanentDeadLetters > 0 {
		fmt.Fprintf(w, "  dead letters from permanent refusals (tolerated): %d\n", s.PermanentDeadLetters)
	}
	w.Flush()
	if s.Report != nil {
		b.WriteString(s.Report.String())
	}
	return b.String()
}
