package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ipsfhir/ipsfhir/internal/browsertest"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/outcomes"
)

// The browser test opens the page of a synthetic program in headless
// Chromium and runs axe-core on it. It needs chromium on the PATH and
// axe-core from npm in testdata/browser (installed on first use when npm is
// there; .ci/run installs chromium); without them it skips,
// unless IPSFHIR_REQUIRE_BROWSER=1, when it fails. With
// IPSFHIR_SCREENSHOTS=DIR it also writes a screenshot of each page there.

// programPage computes a synthetic program of n clients as the CLI does
// and renders its page.
func programPage(t *testing.T, n int, last outcomes.Quarter, today time.Time) []byte {
	t.Helper()
	cl := synth.GenerateWithOptions(rand.New(rand.NewPCG(uint64(n), 7)), n, synth.Options{AsOf: ips.DateOf(today)})
	opts := outcomes.Options{Program: "riverside-ips", Audience: outcomes.AudienceProgram, Consents: func(*ips.Client) bool { return true }, Date: today}
	var qs []outcomes.Quarter
	for q := last.Add(-7); !last.Before(q); q = q.Add(1) {
		qs = append(qs, q)
	}
	trend, err := outcomes.ComputeTrend(cl.Clients, qs, opts)
	if err != nil {
		t.Fatal(err)
	}
	var quarters []QuarterReports
	for _, tr := range trend {
		quarters = append(quarters, QuarterReports{Quarter: tr.Quarter, Status: tr.Quarter.CompletenessOn(ips.DateOf(today)), Reports: tr.Reports, Rolling: tr.Rolling})
	}
	pts := Points(quarters)
	title := fmt.Sprintf("Competitive employment, Riverside IPS (%d clients), %s to %s", n, pts[0].Quarter, pts[len(pts)-1].Quarter)
	var buf bytes.Buffer
	err = WriteHTML(&buf, title, pts, nil, Reports(quarters), AsOf(today, "the ipsfhir store of program riverside-ips"),
		Section("Program fidelity (IPS-25)", "Warning: the fidelity review is of 2025-03-15, more than a year before these figures."),
		Warning("the fidelity review is of 2025-03-15, more than a year before these figures."))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type axeResult struct {
	Violations []struct {
		ID    string `json:"id"`
		Help  string `json:"help"`
		Nodes []struct {
			Target []any `json:"target"`
		} `json:"nodes"`
	} `json:"violations"`
	Passes []struct {
		ID string `json:"id"`
	} `json:"passes"`
}

func TestPageInBrowserPassesAxe(t *testing.T) {
	chrome, axe := browsertest.Setup(t, filepath.Join("testdata", "browser"))
	shots := os.Getenv("IPSFHIR_SCREENSHOTS")
	today := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC) // 2026Q4 not over
	last := outcomes.Quarter{Year: 2026, Q: 4}
	for _, n := range []int{30, 400} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			page := programPage(t, n, last, today)
			file := filepath.Join(t.TempDir(), "page.html")
			if err := os.WriteFile(file, page, 0o600); err != nil {
				t.Fatal(err)
			}
			actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
				chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
			defer cancel()
			ctx, cancel := chromedp.NewContext(actx)
			defer cancel()
			ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
			defer cancel()

			step := func(a chromedp.Action[chromedp.Void]) {
				t.Helper()
				if _, err := chromedp.Run(ctx, a); err != nil {
					t.Fatalf("browser: %v", err)
				}
			}
			step(chromedp.Navigate("file://" + file))
			step(chromedp.WaitReady("main"))
			sections, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main h2").length`))
			if err != nil {
				t.Fatalf("browser: %v", err)
			}
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[*runtime.RemoteObject](string(axe))); err != nil {
				t.Fatalf("loading axe-core: %v", err)
			}
			raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r))`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("axe: %v", err)
			}
			var shot []byte
			if shots != "" {
				if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(80)); err != nil {
					t.Fatalf("screenshot: %v", err)
				}
			}
			var res axeResult
			if err := json.Unmarshal([]byte(raw), &res); err != nil {
				t.Fatalf("axe result: %v", err)
			}
			if len(res.Passes) == 0 {
				t.Fatal("axe-core checked nothing")
			}
			for _, v := range res.Violations {
				t.Errorf("axe %s: %s at %v", v.ID, v.Help, v.Nodes)
			}
			// The competitive rate, a section for each other measure
			// group, the benchmarks and the fidelity section: every one
			// rendered.
			if want := 1 + len(measureSections) + 2; sections != want {
				t.Errorf("%d h2 sections in the browser, want %d", sections, want)
			}
			if shots != "" {
				if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("page-%d.jpg", n)), shot, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("page-%d.html", n)), page, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if strings.Contains(string(page), "Alex") {
				t.Error("the page names someone")
			}
		})
	}
}
