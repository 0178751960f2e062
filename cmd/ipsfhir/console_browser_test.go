package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/internal/browsertest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// The console's browser test drives `ipsfhir serve` in headless Chromium
// and runs axe-core on every page. It needs chromium on the PATH and
// axe-core from npm (the package.json of outcomes/chart/testdata/browser,
// installed on first use when npm is there; .ci/run installs both); without
// them it skips, unless IPSFHIR_REQUIRE_BROWSER=1, when it fails. With
// IPSFHIR_SCREENSHOTS=DIR it writes each page at 1280 and 390 px wide there.

// TestConsoleInBrowser: an administrator signs in with an admin key, sees
// two enabled connections (one ready against the peer EHR, one failing)
// and a disabled one, replays a dead letter and sees it delivered to the
// peer, closes a conflict, and signs out; axe-core finds no violation on
// any page, and the overview refreshes itself without a reload.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	chrome, axe := browsertest.Setup(t, filepath.Join("..", "..", "outcomes", "chart", "testdata", "browser"))
	shots := os.Getenv("IPSFHIR_SCREENSHOTS")
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	// northside-oracle's EHR: disabled in the file, enabled in the browser.
	north := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	const adminKey, specKey, directorKey = "console-admin-key-0001", "console-spec-key-0002", "console-director-key-0003"
	const clinicianKey, hieKey = "console-clinician-key-0004", "console-hie-key-0005"
	dbPath := filepath.Join(dir, "ips.db")
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `program: {id: console-test}
store: {driver: sqlite, dsn: %s}
server: {listen: "127.0.0.1:0"}
sync: {pushInterval: 1s, pollInterval: 1h, maxAttempts: 1}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: ops, role: admin, sha256: %s}
  - {name: dana, role: director, sha256: %s}
  - {name: dr-lee, role: clinician, sha256: %s}
  - {name: state-hie, role: hie, sha256: %s}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}, timeout: 10s, retry: {initial: 1s, max: 2s}}
  - {name: riverside-epic, fhirBaseUrl: %q, enabled: true, auth: {type: none}, retry: {initial: 1s, max: 5s}}
  - {name: northside-oracle, fhirBaseUrl: %q, enabled: false, auth: {type: none}, timeout: 10s}
`, dbPath, keyOf(specKey), keyOf(adminKey), keyOf(directorKey), keyOf(clinicianKey), keyOf(hieKey), srv.BaseURL, closedPortURL(t), north.BaseURL), 0o644); err != nil {
		t.Fatal(err)
	}
	peerClient, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	createPatient := func(mrn string) {
		t.Helper()
		if _, err := peerClient.Create(t.Context(), "Patient", fmt.Appendf(nil, `{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":%q}]}`, mrn), ""); err != nil {
			t.Fatal(err)
		}
	}
	createPatient("MRN700")
	northClient, err := ehr.New(ehr.Options{BaseURL: north.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, mrn := range []string{"MRN700", "MRN701"} {
		if _, err := northClient.Create(t.Context(), "Patient", fmt.Appendf(nil, `{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":%q}]}`, mrn), ""); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	call := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// c1's patient is in the EHR; c2's is not yet, so its push fails and,
	// with maxAttempts 1, becomes a dead letter.
	for _, c := range []struct{ id, mrn string }{{"c1", "MRN700"}, {"c2", "MRN701"}} {
		body := fmt.Sprintf(`{"id":%q,"patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":%q},"enrolledOn":"2026-11-02",
		 "goals":[{"id":"g1","description":"Work in a library","status":"active","start":"2026-11-03"}]}`, c.id, c.mrn)
		if code, b := call("POST", "/api/v1/clients", specKey, body); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", c.id, code, b)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, dl := call("GET", "/admin/dead-letters?connection=clinic", adminKey, "")
		_, r, _ := getReadyz(t, base)
		if strings.Contains(dl, `"clientId":"c2"`) && len(r.Connections) == 2 && r.Connections[0].State == "ready" && r.Connections[1].State == "failing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never: c2 a dead letter, clinic ready, riverside-epic failing: %s\n%s", dl, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A conflict, made as in a clinic: a clinician puts c1's goal on hold
	// in the EHR while the specialist marks it completed in the program.
	// The push finds the goal changed in the EHR (its If-Match fails),
	// merges, and records the conflict; the status's winner is the EHR.
	goalKey := mappings.Key{Program: "console-test", Kind: mappings.KindGoal, Client: "c1", Record: "g1"}
	ehrGoal := func() map[string]any {
		t.Helper()
		es, err := peerClient.Search(t.Context(), "Goal", url.Values{"identifier": {goalKey.System() + "|" + goalKey.Value()}})
		if err != nil || len(es) != 1 {
			t.Fatalf("c1's goal in the EHR: %d found, %v", len(es), err)
		}
		var g map[string]any
		if err := json.Unmarshal(es[0].Resource, &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := ehrGoal()
	g["lifecycleStatus"] = "on-hold"
	edited, _ := json.Marshal(g)
	if _, err := peerClient.Update(t.Context(), "Goal", g["id"].(string), edited, ""); err != nil {
		t.Fatalf("the clinician's edit: %v", err)
	}
	if code, b := call("PUT", "/api/v1/clients/c1", specKey, `{"id":"c1","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN700"},"enrolledOn":"2026-11-02",
		 "goals":[{"id":"g1","description":"Work in a library","status":"completed","start":"2026-11-03"}]}`); code != http.StatusOK {
		t.Fatalf("the specialist's edit: %d %s", code, b)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, b := call("GET", "/admin/conflicts", adminKey, ""); strings.Contains(b, `"field":"status"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two edits never made a conflict:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	actx, cancelA := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 3*time.Minute)
	defer cancelT()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("browser: %v\n%s", err, stderr.String())
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("browser: %s: %v", js, err)
		}
		return s
	}
	// arrive waits until the browser has loaded the page whose path and
	// query start with want: after a click, an element the page before had
	// too (a table) says nothing of which page is shown.
	arrive := func(want string) {
		t.Helper()
		js := fmt.Sprintf(`String((location.pathname + location.search).startsWith(%q) && document.readyState === "complete")`, want)
		for deadline := time.Now().Add(30 * time.Second); eval(js) != "true"; {
			if time.Now().After(deadline) {
				t.Fatalf("the browser did not arrive at %s", want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// check runs axe-core on the page and screenshots it at 1280 and 390
	// px wide.
	check := func(name string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[*runtime.RemoteObject](string(axe))); err != nil {
			t.Fatalf("loading axe-core: %v", err)
		}
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](`axe.run(document).then(r => JSON.stringify({violations: r.violations, passes: r.passes.length}))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("axe on %s: %v", name, err)
		}
		var res struct {
			Violations []struct {
				ID, Impact, Help string
				Nodes            []struct {
					Target []any `json:"target"`
				} `json:"nodes"`
			} `json:"violations"`
			Passes int `json:"passes"`
		}
		if err := json.Unmarshal([]byte(raw), &res); err != nil {
			t.Fatalf("axe result: %v", err)
		}
		if res.Passes == 0 {
			t.Fatalf("axe-core checked nothing on %s", name)
		}
		for _, v := range res.Violations {
			t.Errorf("%s: axe %s (%s): %s at %v", name, v.ID, v.Impact, v.Help, v.Nodes)
		}
		// On a phone the page never scrolls sideways (tables stack, or
		// scroll in their own frame).
		do(chromedp.EmulateViewport(390, 900))
		if sw := eval(`String(document.documentElement.scrollWidth)`); sw != "390" {
			t.Errorf("%s is %s px wide in a 390 px viewport: it scrolls sideways", name, sw)
		}
		do(chromedp.EmulateViewport(1280, 900))
		if shots == "" {
			return
		}
		eval(`document.activeElement && document.activeElement.blur(); ""`)
		for _, w := range []int64{1280, 390} {
			do(chromedp.EmulateViewport(w, 900))
			png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("console-%s-%d.png", name, w)), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		do(chromedp.EmulateViewport(1280, 900))
	}

	// Not signed in: the sign-in form.
	do(chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#key")))
	if loc, _ := chromedp.Run(bctx, chromedp.Location()); !strings.HasSuffix(loc, "/console/login") {
		t.Errorf("the console without a session is at %s", loc)
	}
	// The key field has the focus, ready to type in.
	if got := eval(`document.activeElement.id`); got != "key" {
		t.Errorf("focus on the sign-in form: %q, want the key field", got)
	}
	check("login")
	// A wrong key first.
	do(chromedp.SendKeys(chromedp.CSS("#key"), "wrong-key"), chromedp.Click(chromedp.CSS("form.login button")), chromedp.WaitVisible(chromedp.CSS(".problem")))
	if s := text(".problem"); !strings.Contains(s, "not valid") || strings.Contains(eval(`document.body.innerHTML`), "wrong-key") {
		t.Errorf("wrong key: %q", s)
	}
	do(chromedp.SendKeys(chromedp.CSS("#key"), adminKey), chromedp.Click(chromedp.CSS("form.login button")), chromedp.WaitVisible(chromedp.CSS("#live")))

	// The overview: clinic ready, riverside-epic failing and why,
	// northside-oracle disabled, c2 a dead letter of clinic.
	main := text("main")
	for _, want := range []string{"clinic", "Ready", "riverside-epic", "Failing", "the EHR cannot be reached", "ehr-unreachable", "northside-oracle", "Disabled", "1 dead letter", "1 open conflict", "Signed in as ops"} {
		if !strings.Contains(main+text("header"), want) {
			t.Errorf("the overview lacks %q:\n%s", want, main)
		}
	}
	// The keyboard's first stop is the skip link, which leads to the
	// content.
	do(chromedp.KeyEvent("\t"))
	if got := eval(`document.activeElement.className`); got != "skip" {
		t.Errorf("first Tab stop: %q, want the skip link", got)
	}
	check("overview")

	// A connection's page: its sync plan, as the peer's statement made it.
	do(chromedp.Click(chromedp.CSS(`#conn-clinic a`)), chromedp.WaitVisible(chromedp.CSS("#plan")))
	if s := text("main"); !strings.Contains(s, "employment-goal") || !strings.Contains(s, "Change detection") || !strings.Contains(s, "Ready") {
		t.Errorf("clinic's page: %s", s)
	}
	check("connection")
	// Its readiness check, run from the page against the peer: it runs in
	// the background, and the page reloads itself until it is ready.
	do(chromedp.Click(chromedp.CSS(`form[action="/console/connections/clinic/check"] button`)))
	arrive("/console/connections/clinic")
	verdict := func() string {
		t.Helper()
		js := `(document.querySelector(".check-verdict") || {textContent: ""}).textContent`
		for deadline := time.Now().Add(60 * time.Second); ; {
			if s := eval(js); s != "" && !strings.HasPrefix(s, "Running") {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("the readiness check never finished: %s", eval(js))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if s := verdict(); !strings.Contains(s, "Ready: nothing blocks sync") || !strings.Contains(s, "by ops") {
		t.Errorf("the readiness check run from the console: %s", s)
	}
	if s := text("main"); !strings.Contains(s, "metadata.fhir-version") {
		t.Errorf("the check's results are not listed: %.600s", s)
	}
	check("connection-checked")

	// Enabling northside-oracle: its page says it is disabled by the file;
	// the enable page has no plan to show until a readiness check ran, then
	// shows it and asks to confirm.
	do(chromedp.Navigate(base+"/console/connections/northside-oracle"), chromedp.WaitVisible(chromedp.CSS("#enabled")))
	if s := text("main"); !strings.Contains(s, "Disabled, as the configuration file says") {
		t.Errorf("northside-oracle's page: %.400s", s)
	}
	do(chromedp.Click(chromedp.CSS(`a[href="/console/connections/northside-oracle/enable"]`)))
	arrive("/console/connections/northside-oracle/enable")
	if s := text("main"); !strings.Contains(s, "No readiness check of this connection was run yet") || strings.Contains(s, "Yes, enable") {
		t.Errorf("the enable page before a check: %.600s", s)
	}
	do(chromedp.Click(chromedp.CSS(`form[action="/console/connections/northside-oracle/check"] button`)))
	arrive("/console/connections/northside-oracle")
	if s := verdict(); !strings.Contains(s, "Ready") {
		t.Errorf("northside-oracle's readiness check: %s", s)
	}
	do(chromedp.Click(chromedp.CSS(`a[href="/console/connections/northside-oracle/enable"]`)))
	arrive("/console/connections/northside-oracle/enable")
	do(chromedp.WaitVisible(chromedp.CSS("form.confirm")))
	if s := text("main"); !strings.Contains(s, "What goes into the chart") || !strings.Contains(s, "employment-goal") || !strings.Contains(s, "every client") {
		t.Errorf("the enable page after the check: %.800s", s)
	}
	check("enable")
	do(chromedp.Click(chromedp.CSS(`form.confirm button[value="yes"]`)))
	arrive("/console/connections/northside-oracle?changed=enabled")
	if s := text(".notice"); !strings.Contains(s, "is enabled") {
		t.Errorf("after enabling: %q", s)
	}
	if s := text("main"); !strings.Contains(s, "enabled from the console by ops") {
		t.Errorf("northside-oracle after enabling: %.500s", s)
	}
	// The whole caseload reaches its EHR: c1 now (c2's patient is not in
	// the clinic's EHR yet, so it is a dead letter there, but it is here).
	for _, c := range []string{"c1", "c2"} {
		key := mappings.Key{Program: "console-test", Kind: mappings.KindPlan, Client: c}
		for deadline := time.Now().Add(60 * time.Second); countIdentifiers(t, northClient, "CarePlan", "console-test", mappings.KindPlan)[key.Value()] != 1; {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the connection enabled from the console:\n%s", c, stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var listed bytes.Buffer
	if code := run(t.Context(), []string{"connections", "--config", cfg}, strings.NewReader(""), &listed, io.Discard); code != exitOK || !strings.Contains(listed.String(), "console (ops,") {
		t.Errorf("ipsfhir connections after the console enabled northside-oracle: %d\n%s", code, listed.String())
	}

	// Dead letters: c2, and why.
	do(chromedp.Click(chromedp.CSS(`nav a[href="/console/dead-letters"]`)))
	arrive("/console/dead-letters")
	do(chromedp.WaitVisible(chromedp.CSS("table")))
	if s := text("table"); !strings.Contains(s, "c2") || !strings.Contains(s, "clinic") || !strings.Contains(s, "patient") {
		t.Errorf("dead letters table: %s", s)
	}
	check("dead-letters")
	// The clinic registers the patient; the administrator replays.
	createPatient("MRN701")
	do(chromedp.Click(chromedp.CSS(`table form button`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if s := text(".notice"); !strings.Contains(s, "queued again") {
		t.Errorf("after replay: %q", s)
	}
	check("dead-letters-replayed")
	key := mappings.Key{Program: "console-test", Kind: mappings.KindPlan, Client: "c2"}
	for deadline := time.Now().Add(60 * time.Second); countIdentifiers(t, peerClient, "CarePlan", "console-test", mappings.KindPlan)[key.Value()] != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the replayed client never reached the EHR:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The overview says so, and refreshes itself without a reload.
	do(chromedp.Click(chromedp.CSS(`nav a[href="/console/"]`)), chromedp.WaitVisible(chromedp.CSS("#live")))
	eval(`window.consoleMarker = "still here"; ""`)
	// Read in one evaluation: the refresh may replace the node between
	// a query and a read.
	asOf := func() string { return eval(`document.querySelector("#live .summary time").textContent`) }
	first := asOf()
	if s := text("#live .summary"); !strings.Contains(s, "no dead letters") {
		t.Errorf("the overview after the replay was delivered: %s", s)
	}
	for deadline := time.Now().Add(45 * time.Second); asOf() == first; {
		if time.Now().After(deadline) {
			t.Fatal("the overview did not refresh itself within 45 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if eval(`String(window.consoleMarker)`) != "still here" {
		t.Error("the overview refreshed by reloading the page, not its live part")
	}

	// Conflicts: both values (the clinician's on-hold applied, the
	// specialist's completed not), and a decision: keep the program's.
	do(chromedp.Click(chromedp.CSS(`nav a[href="/console/conflicts"]`)), chromedp.WaitVisible(chromedp.CSS(".sides")))
	if s := text(".sides"); !strings.Contains(s, "on-hold") || !strings.Contains(s, "completed") || !strings.Contains(s, "applied") {
		t.Errorf("conflict: %s", s)
	}
	if g := ehrGoal(); g["lifecycleStatus"] != "on-hold" {
		t.Errorf("the EHR's goal before the decision: %v, want the clinician's on-hold", g["lifecycleStatus"])
	}
	check("conflicts")
	do(chromedp.Click(chromedp.CSS(`button[value="kept-ips"]`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if s := text("main"); !strings.Contains(s, "No open conflicts") {
		t.Errorf("after resolving: %s", s)
	}
	if s := text(".notice"); !strings.Contains(s, "IPS value") {
		t.Errorf("the notice after keeping the IPS value: %q", s)
	}
	check("conflicts-resolved")
	if code, b := call("GET", "/admin/conflicts?all=true", adminKey, ""); code != 200 || !strings.Contains(b, `"resolution":"kept-ips"`) {
		t.Errorf("/admin/conflicts after the console resolved it: %d %s", code, b)
	}
	// The program's value is written to the EHR, and the program keeps it.
	for deadline := time.Now().Add(60 * time.Second); ehrGoal()["lifecycleStatus"] != "completed"; {
		if time.Now().After(deadline) {
			t.Fatalf("the kept IPS value never reached the EHR: %v\n%s", ehrGoal()["lifecycleStatus"], stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, b := call("GET", "/api/v1/clients/c1", specKey, ""); !strings.Contains(b, `"status":"completed"`) {
		t.Errorf("the program's record after keeping its value: %s", b)
	}
	if code, b := call("GET", "/admin/audit?caller=ops", adminKey, ""); code != 200 || !strings.Contains(b, `/console/conflicts/{id}/resolve`) || !strings.Contains(b, `/console/dead-letters/{id}/replay`) {
		t.Errorf("the audit trail lacks the console's changes: %d %.500s", code, b)
	}
	// The audit page shows the same, filtered by the administrator's key.
	do(chromedp.Click(chromedp.CSS(`nav a[href="/console/audit"]`)), chromedp.WaitVisible(chromedp.CSS("#caller")))
	do(chromedp.SendKeys(chromedp.CSS("#caller"), "ops"), chromedp.Click(chromedp.CSS("form.filters button")))
	arrive("/console/audit?caller=ops")
	do(chromedp.WaitVisible(chromedp.CSS("table.audit")))
	if s := text("table.audit"); !strings.Contains(s, "/console/conflicts/{id}/resolve") || !strings.Contains(s, "/console/dead-letters/{id}/replay") || strings.Contains(s, "state-hie") {
		t.Errorf("the audit page filtered by ops: %s", s)
	}
	check("audit")

	// A form whose CSRF token was tampered with changes nothing: the
	// sign-out form, sent with another token, leaves the session signed in.
	eval(`document.querySelector(".who form input[name=csrf]").value = "tampered"; ""`)
	do(chromedp.Click(chromedp.CSS(`.who button`)))
	arrive("/console/signout")
	if s := text("main"); !strings.Contains(s, "This form has expired") || !strings.Contains(s, "nothing was changed") {
		t.Errorf("a tampered CSRF token: %.300s", s)
	}
	do(chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("#caller")))
	// A session cookie tampered with opens nothing: the sign-in form.
	do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: "ipsfhir_console", Value: "tampered-session-id", URL: base + "/console/", Path: "/console/"})
		return err
	}))
	do(chromedp.Navigate(base+"/console/dead-letters"), chromedp.WaitVisible(chromedp.CSS("#key")))
	do(chromedp.SendKeys(chromedp.CSS("#key"), adminKey), chromedp.Click(chromedp.CSS("form.login button")), chromedp.WaitVisible(chromedp.CSS("#live")))

	// Sign out: the session is gone.
	do(chromedp.Click(chromedp.CSS(`.who button`)), chromedp.WaitVisible(chromedp.CSS("#key")))
	if s := text(".notice"); !strings.Contains(s, "signed out") {
		t.Errorf("after sign-out: %q", s)
	}
	do(chromedp.Navigate(base+"/console/dead-letters"), chromedp.WaitVisible(chromedp.CSS("#key")))

	// A clinician's key and an HIE's key open nothing: 403.
	for role, k := range map[string]string{"clinician": clinicianKey, "hie": hieKey} {
		do(chromedp.SendKeys(chromedp.CSS("#key"), k), chromedp.Click(chromedp.CSS("form.login button")))
		// The answer stays at /console/login: wait for its words. The page
		// may be between documents when asked (no body, or its context
		// gone): ask again.
		want := "has role " + role + ". The console is for administrators"
		body := func() string {
			s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			if err != nil {
				return ""
			}
			return s
		}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(body(), want); {
			if time.Now().After(deadline) {
				t.Fatalf("a %s key in the console: %.300s", role, body())
			}
			time.Sleep(100 * time.Millisecond)
		}
		do(chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#key")))
	}

	// A program director: the outcomes page, and the report it opens,
	// whose inline style sheet and chart the report's own policy lets
	// through; none of the administrator's pages.
	do(chromedp.SendKeys(chromedp.CSS("#key"), directorKey), chromedp.Click(chromedp.CSS("form.login button")), chromedp.WaitVisible(chromedp.CSS("a.button")))
	if nav := text("nav"); strings.Contains(nav, "Dead letters") || !strings.Contains(nav, "Outcomes") {
		t.Errorf("a director's navigation: %q", nav)
	}
	check("outcomes")
	do(chromedp.Click(chromedp.CSS("a.button")), chromedp.WaitVisible(chromedp.CSS("main img")))
	if w := eval(`String(document.querySelector("main img").naturalWidth)`); w == "0" {
		t.Error("the report's chart did not load under its Content-Security-Policy")
	}
	if mw := eval(`getComputedStyle(document.querySelector("main")).maxWidth`); mw == "none" {
		t.Error("the report's style sheet did not apply under its Content-Security-Policy")
	}
	if shots != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, "console-outcomes-report-1280.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do(chromedp.Navigate(base + "/console/dead-letters"))
	if s := text("main"); !strings.Contains(s, "may not open this page") {
		t.Errorf("a director on the dead letters page: %s", s)
	}

	if logs := stderr.String(); strings.Contains(logs, adminKey) || strings.Contains(logs, "MRN70") {
		t.Errorf("the service log holds a key or patient data:\n%s", logs)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
