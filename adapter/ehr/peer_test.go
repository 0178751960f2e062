package ehr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
)

const epicCapability = "../../testdata/ehr-capabilities/epic-r4-sandbox-2026-07.json"

// TestPeer runs the client against the peer FHIR server (Medplum's engine)
// with fault injection on: the faults fire only on requests that carry
// X-Peer-Fault, so the same server also serves the plain cases.
func TestPeer(t *testing.T) {
	srv := peer.StartForTest(t, peer.Options{Faults: true})
	base := srv.BaseURL

	t.Run("CreateReadUpdateIfMatch", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, _ := newClient(t, base, ehr.Options{})
		id := unique("crud")
		created, err := c.Create(ctx, "Goal", goalJSON(t, "Patient/p-crud", id), "")
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if created.Status != http.StatusCreated || created.ResourceID == "" || created.VersionID == "" {
			t.Fatalf("create: status %d, id %q, version %q", created.Status, created.ResourceID, created.VersionID)
		}
		v1 := created.VersionID

		read, err := c.Read(ctx, "Goal", created.ResourceID)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if read.VersionID != v1 || read.ETag != `W/"`+v1+`"` || read.ResourceID != created.ResourceID {
			t.Fatalf("read: version %q etag %q id %q; want version %q", read.VersionID, read.ETag, read.ResourceID, v1)
		}

		var goal map[string]any
		if err := json.Unmarshal(read.Body, &goal); err != nil {
			t.Fatal(err)
		}
		goal["lifecycleStatus"] = "completed"
		body, _ := json.Marshal(goal)
		updated, err := c.Update(ctx, "Goal", created.ResourceID, body, v1)
		if err != nil {
			t.Fatalf("update with current version: %v", err)
		}
		if updated.VersionID == "" || updated.VersionID == v1 {
			t.Fatalf("update: version %q, want a new one after %q", updated.VersionID, v1)
		}

		_, err = c.Update(ctx, "Goal", created.ResourceID, body, v1)
		e := wantKind(t, err, ehr.KindConflict)
		if e.Status != http.StatusPreconditionFailed || len(e.Outcome) == 0 {
			t.Fatalf("stale If-Match: status %d, outcome %d bytes", e.Status, len(e.Outcome))
		}
		if !errors.Is(err, ehr.ErrConflict) {
			t.Fatal("errors.Is(err, ErrConflict) = false")
		}

		hist, err := c.History(ctx, "Goal", created.ResourceID)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		var versions, statuses []string
		for _, h := range hist {
			var g struct {
				Meta struct {
					VersionID string `json:"versionId"`
				} `json:"meta"`
				LifecycleStatus string `json:"lifecycleStatus"`
			}
			_ = json.Unmarshal(h.Resource, &g)
			versions, statuses = append(versions, g.Meta.VersionID), append(statuses, g.LifecycleStatus)
		}
		if len(hist) != 2 || versions[0] != updated.VersionID || versions[1] != v1 || statuses[0] != "completed" {
			t.Fatalf("history: versions %v statuses %v; want the update then the create, newest first", versions, statuses)
		}
		_, err = c.History(ctx, "Goal", "not an id")
		wantKind(t, err, ehr.KindInvalid)

		_, err = c.Read(ctx, "Goal", "does-not-exist")
		wantKind(t, err, ehr.KindNotFound)
	})

	t.Run("ConditionalUpdateByIdentifier", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, _ := newClient(t, base, ehr.Options{})
		id := unique("cu")
		criteria := "identifier=" + url.QueryEscape(idSystem+"|"+id)
		first, err := c.Update(ctx, "Goal", criteria, goalJSON(t, "Patient/p-cu", id), "")
		if err != nil {
			t.Fatalf("conditional update (create): %v", err)
		}
		// Criteria as a person writes them, unescaped, with a leading "?".
		second, err := c.Update(ctx, "Goal", "?identifier="+idSystem+"|"+id, goalJSON(t, "Patient/p-cu", id), "")
		if err != nil {
			t.Fatalf("conditional update (update): %v", err)
		}
		if first.ResourceID == "" || first.ResourceID != second.ResourceID {
			t.Fatalf("ids %q then %q, want the same", first.ResourceID, second.ResourceID)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("%d Goals, want 1", n)
		}
	})

	t.Run("ConditionalCreate", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, _ := newClient(t, base, ehr.Options{})
		id := unique("cond")
		ifNoneExist := "identifier=" + url.QueryEscape(idSystem+"|"+id)
		first, err := c.Create(ctx, "Goal", goalJSON(t, "Patient/p-cond", id), ifNoneExist)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Create(ctx, "Goal", goalJSON(t, "Patient/p-cond", id), ifNoneExist)
		if err != nil {
			t.Fatal(err)
		}
		if first.Status != http.StatusCreated || second.Status != http.StatusOK || first.ResourceID != second.ResourceID {
			t.Fatalf("statuses %d, %d ids %q, %q; want 201 then 200 with one id", first.Status, second.Status, first.ResourceID, second.ResourceID)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("%d Goals, want 1", n)
		}
	})

	t.Run("ConditionalCreateRetriedAfterLostAnswer", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{})
		id := unique("cond-drop")
		resp, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodPost, Path: "Goal", Body: goalJSON(t, "Patient/p-cd", id),
			Header: http.Header{
				"If-None-Exist": {"identifier=" + url.QueryEscape(idSystem+"|"+id)},
				"X-Peer-Fault":  {"drop-after; once=" + id},
			},
			Idempotent: true,
		})
		if err != nil {
			t.Fatalf("conditional create after a lost answer: %v", err)
		}
		// The first attempt created it; the retry found it.
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d, want 200 (found by If-None-Exist)", resp.Status)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 1 {
			t.Fatalf("resend counts %v, want [1]", got)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("%d Goals, want 1", n)
		}
	})

	t.Run("PlainPostLostAnswerIsOutcomeUnknown", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{})
		id := unique("drop")
		// No once= token: every attempt would be dropped and would create
		// another Goal, so the count shows whether the client resent.
		_, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodPost, Path: "Goal", Body: goalJSON(t, "Patient/p-drop", id),
			Header: http.Header{"X-Peer-Fault": {"drop-after"}},
		})
		e := wantKind(t, err, ehr.KindOutcomeUnknown)
		if !errors.Is(err, ehr.ErrOutcomeUnknown) || e.Attempts != 1 || e.Status != 0 {
			t.Fatalf("error %q: attempts %d status %d, want 1 attempt and no status", err, e.Attempts, e.Status)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 0 {
			t.Fatalf("resend counts %v, want [0]", got)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("the peer holds %d Goals, want exactly 1 (committed once, never resent)", n)
		}
	})

	t.Run("OncePutLostAnswerIsOutcomeUnknown", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{})
		id := unique("once")
		// A conditional update that creates the goal, marked Once (what
		// UpdateOnce sends): its lost answer is not repeated.
		_, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodPut, Path: "Goal?identifier=" + url.QueryEscape(idSystem+"|"+id), Body: goalJSON(t, "Patient/p-once", id),
			Header: http.Header{"X-Peer-Fault": {"drop-after"}}, Once: true,
		})
		e := wantKind(t, err, ehr.KindOutcomeUnknown)
		if e.Attempts != 1 {
			t.Fatalf("error %q: %d attempts, want 1", err, e.Attempts)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 0 {
			t.Fatalf("resend counts %v, want [0]", got)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("the peer holds %d Goals, want exactly 1 (applied once, never resent)", n)
		}
	})

	t.Run("PlainPostGatewayTimeoutIsOutcomeUnknown", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{})
		_, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodPost, Path: "Goal", Body: goalJSON(t, "Patient/p-504", unique("gw")),
			Header: http.Header{"X-Peer-Fault": {"504"}},
		})
		e := wantKind(t, err, ehr.KindOutcomeUnknown)
		if e.Status != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504", e.Status)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 0 {
			t.Fatalf("resend counts %v, want [0]", got)
		}
	})

	t.Run("PlainPostRetriedOn429", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{})
		id := unique("throttled")
		// 429 says the request was not processed: safe to resend any method.
		resp, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodPost, Path: "Goal", Body: goalJSON(t, "Patient/p-429", id),
			Header: http.Header{"X-Peer-Fault": {"429; retry-after=0; once=" + id}},
		})
		if err != nil {
			t.Fatalf("POST after a 429: %v", err)
		}
		if resp.Status != http.StatusCreated {
			t.Fatalf("status %d, want 201", resp.Status)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 1 {
			t.Fatalf("resend counts %v, want [1]", got)
		}
		if n := countGoals(t, c, id); n != 1 {
			t.Fatalf("%d Goals, want 1", n)
		}
	})

	t.Run("GetRetriedOnTransientFaults", func(t *testing.T) {
		t.Parallel()
		for _, fault := range []string{"503; retry-after=0", "502", "504", "drop-before", "drop-after"} {
			// A fresh client per fault: on a reused keep-alive connection,
			// net/http itself resends a GET that got no answer, below us.
			c, rec := newClient(t, base, ehr.Options{})
			tok := unique("get")
			_, err := c.Do(t.Context(), ehr.Request{
				Method: http.MethodGet, Path: "Goal", Query: url.Values{"identifier": {idSystem + "|none"}},
				Header: http.Header{"X-Peer-Fault": {fault + "; once=" + tok}},
			})
			if err != nil {
				t.Fatalf("GET with fault %q once: %v", fault, err)
			}
			if got, _ := spanAttr(rec, "http.request.resend_count"); got.AsInt64() != 1 {
				t.Fatalf("fault %q: resend count %d, want 1", fault, got.AsInt64())
			}
		}
	})

	t.Run("TimeoutRetriedForGet", func(t *testing.T) {
		t.Parallel()
		c, rec := newClient(t, base, ehr.Options{Timeout: 500 * time.Millisecond})
		tok := unique("slow")
		_, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodGet, Path: "metadata",
			Header: http.Header{"X-Peer-Fault": {"delay=2000; once=" + tok}},
		})
		if err != nil {
			t.Fatalf("GET after one timed-out attempt: %v", err)
		}
		if got := resends(rec); len(got) != 1 || got[0] != 1 {
			t.Fatalf("resend counts %v, want [1]", got)
		}
	})

	t.Run("RetriesExhaustedKeepLastOutcome", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, base, ehr.Options{MaxAttempts: 3})
		_, err := c.Do(t.Context(), ehr.Request{
			Method: http.MethodGet, Path: "metadata",
			Header: http.Header{"X-Peer-Fault": {"503; retry-after=0"}},
		})
		e := wantKind(t, err, ehr.KindTransient)
		if e.Status != http.StatusServiceUnavailable || e.Attempts != 3 {
			t.Fatalf("status %d attempts %d, want 503 after 3", e.Status, e.Attempts)
		}
		if len(e.Outcome) == 0 || len(e.IssueCodes) != 1 || e.IssueCodes[0] != "transient" {
			t.Fatalf("outcome %d bytes, issue codes %v; want the peer's OperationOutcome with code transient", len(e.Outcome), e.IssueCodes)
		}
		if strings.Contains(err.Error(), "Injected") {
			t.Fatalf("Error() quotes the diagnostics: %q", err)
		}
	})

	t.Run("CancelStopsBackoff", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, base, ehr.Options{})
		ctx, cancel := context.WithCancel(t.Context())
		timer := time.AfterFunc(200*time.Millisecond, cancel)
		defer timer.Stop()
		start := time.Now()
		// Retry-After 30 s is under the 60 s cap, so the client would wait.
		_, err := c.Do(ctx, ehr.Request{
			Method: http.MethodGet, Path: "metadata",
			Header: http.Header{"X-Peer-Fault": {"503; retry-after=30"}},
		})
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("returned after %v, want promptly after the cancel", took)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		wantKind(t, err, ehr.KindTransient)
	})

	t.Run("DeadlineShorterThanRetryAfter", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, base, ehr.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Do(ctx, ehr.Request{
			Method: http.MethodGet, Path: "metadata",
			Header: http.Header{"X-Peer-Fault": {"429; retry-after=30"}},
		})
		e := wantKind(t, err, ehr.KindTransient)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("waited %v although the deadline is before the Retry-After", took)
		}
		if e.Status != http.StatusTooManyRequests || e.RetryAfter != 30*time.Second || e.Attempts != 1 {
			t.Fatalf("status %d retry-after %v attempts %d; want 429, 30s, 1", e.Status, e.RetryAfter, e.Attempts)
		}
	})

	t.Run("SearchPagingAndTransaction", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, rec := newClient(t, base, ehr.Options{})
		patient := "Patient/" + unique("paging")
		const n = 45
		bundle := transactionBundle(t, patient, "page", n)
		resp, err := c.Transaction(ctx, bundle, true)
		if err != nil {
			t.Fatalf("transaction: %v", err)
		}
		var tr struct {
			Type  string `json:"type"`
			Entry []struct {
				Response struct {
					Status string `json:"status"`
				} `json:"response"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(resp.Body, &tr); err != nil || tr.Type != "transaction-response" || len(tr.Entry) != n {
			t.Fatalf("transaction response: type %q, %d entries, err %v", tr.Type, len(tr.Entry), err)
		}
		// All entries are conditional updates: sending it again changes
		// nothing, which is what Idempotent claims.
		if _, err := c.Transaction(ctx, bundle, true); err != nil {
			t.Fatalf("transaction again: %v", err)
		}

		before := len(rec.Ended())
		entries, err := c.Search(ctx, "Goal", url.Values{"subject": {patient}, "_count": {"10"}})
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		if pages := len(rec.Ended()) - before; pages != 5 {
			t.Fatalf("search made %d requests, want 5 pages of 10", pages)
		}
		ids := map[string]bool{}
		for _, e := range entries {
			var r struct{ ID, ResourceType string }
			if err := json.Unmarshal(e.Resource, &r); err != nil || r.ResourceType != "Goal" {
				t.Fatalf("entry resource: %s (%v)", e.Resource, err)
			}
			if e.Mode != "match" || !strings.HasSuffix(e.FullURL, "/Goal/"+r.ID) {
				t.Fatalf("entry mode %q fullUrl %q", e.Mode, e.FullURL)
			}
			ids[r.ID] = true
		}
		if len(entries) != n || len(ids) != n {
			t.Fatalf("%d entries, %d distinct; want %d", len(entries), len(ids), n)
		}

		capped, _ := newClient(t, base, ehr.Options{MaxPages: 2})
		_, err = capped.Search(ctx, "Goal", url.Values{"subject": {patient}, "_count": {"10"}})
		if !errors.Is(err, ehr.ErrPageLimit) {
			t.Fatalf("search over MaxPages: %v, want ErrPageLimit", err)
		}
	})

	t.Run("LongSearchGoesAsPost", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, rec := newClient(t, base, ehr.Options{})
		id := unique("long")
		if _, err := c.Create(ctx, "Goal", goalJSON(t, "Patient/p-long", id), ""); err != nil {
			t.Fatal(err)
		}
		values := []string{idSystem + "|" + id}
		for i := range 80 {
			values = append(values, fmt.Sprintf("%s|absent-%04d-%s", idSystem, i, id))
		}
		before := len(rec.Ended())
		entries, err := c.Search(ctx, "Goal", url.Values{"identifier": {strings.Join(values, ",")}})
		if err != nil {
			t.Fatalf("long search: %v", err)
		}
		if len(entries) != 1 {
			t.Fatalf("%d entries, want 1", len(entries))
		}
		spans := rec.Ended()[before:]
		if len(spans) != 1 {
			t.Fatalf("%d requests, want 1", len(spans))
		}
		for _, a := range spans[0].Attributes() {
			if a.Key == "http.request.method" && a.Value.AsString() != http.MethodPost {
				t.Fatalf("method %s, want POST _search", a.Value.AsString())
			}
		}
	})

	t.Run("MetadataAndSmartConfiguration", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c, _ := newClient(t, base, ehr.Options{})
		md, err := c.Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cs struct{ ResourceType string }
		if err := json.Unmarshal(md, &cs); err != nil || cs.ResourceType != "CapabilityStatement" {
			t.Fatalf("metadata: %.100s", md)
		}
		sc, err := c.SmartConfiguration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			TokenEndpoint string `json:"token_endpoint"`
		}
		if err := json.Unmarshal(sc, &conf); err != nil || conf.TokenEndpoint == "" {
			t.Fatalf("smart-configuration: %.200s", sc)
		}
	})

	t.Run("NothingLeaks", func(t *testing.T) {
		t.Parallel()
		testNothingLeaks(t, base)
	})

	t.Run("SMARTBackendEndToEnd", func(t *testing.T) {
		t.Parallel()
		key := ecKey(t)
		auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{
			ClientID: "ipsfhir-test", Key: ehr.SigningKey{Key: key},
			Scopes: []string{"system/Goal.rs", "system/Observation.cruds"},
		})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := newClient(t, base, ehr.Options{Auth: auth})
		id := unique("smart")
		created, err := c.Create(t.Context(), "Goal", goalJSON(t, "Patient/p-smart", id), "")
		if err != nil {
			t.Fatalf("create with a token from the peer's token endpoint: %v", err)
		}
		if _, err := c.Read(t.Context(), "Goal", created.ResourceID); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPeerActingAsEpic checks that an interaction the EHR does not offer is
// KindNotAllowed and is not retried.
func TestPeerActingAsEpic(t *testing.T) {
	srv := peer.StartForTest(t, peer.Options{Capability: epicCapability})
	c, rec := newClient(t, srv.BaseURL, ehr.Options{})
	ctx := t.Context()

	_, err := c.Create(ctx, "Goal", goalJSON(t, "Patient/p-epic", unique("epic")), "")
	e := wantKind(t, err, ehr.KindNotAllowed)
	if e.Status != http.StatusMethodNotAllowed || e.Attempts != 1 || !errors.Is(err, ehr.ErrNotAllowed) {
		t.Fatalf("create Goal on Epic: status %d attempts %d", e.Status, e.Attempts)
	}
	if len(e.IssueCodes) == 0 || e.IssueCodes[0] != "not-supported" {
		t.Fatalf("issue codes %v, want not-supported", e.IssueCodes)
	}
	if got := resends(rec); len(got) != 1 || got[0] != 0 {
		t.Fatalf("resend counts %v, want [0]", got)
	}

	// Epic declares no transaction.
	_, err = c.Transaction(ctx, transactionBundle(t, "Patient/p-epic", "epic-txn", 1), true)
	wantKind(t, err, ehr.KindNotAllowed)

	// What Epic does offer works.
	md, err := c.Metadata(ctx)
	if err != nil || !strings.Contains(string(md), "Epic") {
		t.Fatalf("metadata: %v", err)
	}
}

// transactionBundle is n conditional updates by identifier: safe to repeat.
func transactionBundle(t *testing.T, patient, prefix string, n int) []byte {
	t.Helper()
	var entries []any
	for i := range n {
		id := fmt.Sprintf("%s-%s-%d", prefix, strings.TrimPrefix(patient, "Patient/"), i)
		var goal map[string]any
		if err := json.Unmarshal(goalJSON(t, patient, id), &goal); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, map[string]any{
			"resource": goal,
			"request": map[string]any{
				"method": "PUT",
				"url":    "Goal?identifier=" + url.QueryEscape(idSystem+"|"+id),
			},
		})
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
