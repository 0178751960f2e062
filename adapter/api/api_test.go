package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

func decodeClient(t *testing.T, b []byte) *ips.Client {
	t.Helper()
	var c ips.Client
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("not a client: %v\n%s", err, b)
	}
	return &c
}

func TestClientCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		body := clientJSON("c-0001", "MRN100001", "Work mornings at a bakery", "Sunrise Bakery")

		r := h.do("POST", "/api/v1/clients", body)
		want(t, r, http.StatusCreated, "create")
		if r.header.Get("ETag") != `"1"` || r.header.Get("Location") != "/api/v1/clients/c-0001" {
			t.Errorf("create: ETag %q, Location %q", r.header.Get("ETag"), r.header.Get("Location"))
		}
		created := decodeClient(t, r.body)
		stored, v, err := st.GetClient(t.Context(), "c-0001")
		if err != nil || v != 1 {
			t.Fatalf("stored: %v, version %d", err, v)
		}
		if d := cmp.Diff(stored, created); d != "" {
			t.Errorf("response differs from the stored client (-stored +response):\n%s", d)
		}

		r = h.do("GET", "/api/v1/clients/c-0001", "")
		want(t, r, http.StatusOK, "get")
		if r.header.Get("ETag") != `"1"` || !cmp.Equal(decodeClient(t, r.body), stored) {
			t.Errorf("get: ETag %q, body %s", r.header.Get("ETag"), r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Error("a response with patient data may be cached")
		}

		// Replace with If-Match at the current version.
		changed := strings.Replace(body, "Jordan Reyes", "Sam Ortiz", 1)
		r = h.do("PUT", "/api/v1/clients/c-0001", changed, "If-Match", `"1"`)
		want(t, r, http.StatusOK, "put")
		if r.header.Get("ETag") != `"2"` || decodeClient(t, r.body).Specialist != "Sam Ortiz" {
			t.Errorf("put: ETag %q, body %s", r.header.Get("ETag"), r.body)
		}
		// The same If-Match again is stale now: 412, nothing changes.
		r = h.do("PUT", "/api/v1/clients/c-0001", body, "If-Match", `"1"`)
		want(t, r, http.StatusPreconditionFailed, "stale If-Match")
		if c, v, _ := st.GetClient(t.Context(), "c-0001"); v != 2 || c.Specialist != "Sam Ortiz" {
			t.Errorf("a failed conditional write changed the client: version %d", v)
		}
		// Creating an id that exists is a conflict.
		want(t, h.do("POST", "/api/v1/clients", body), http.StatusConflict, "create an existing id")

		// PUT creates a missing client (201), unless it is conditional.
		other := clientJSON("c-0002", "MRN100002", "Drive a forklift", "Harbor Freight Co")
		want(t, h.do("PUT", "/api/v1/clients/c-0002", other, "If-Match", `"1"`), http.StatusPreconditionFailed, "If-Match on a missing client")
		r = h.do("PUT", "/api/v1/clients/c-0002", other)
		want(t, r, http.StatusCreated, "put a new client")
		if r.header.Get("Location") != "/api/v1/clients/c-0002" || r.header.Get("ETag") != `"1"` {
			t.Errorf("put-create: %v", r.header)
		}
		// The body's id must be the URL's.
		r = h.do("PUT", "/api/v1/clients/c-0001", other)
		want(t, r, http.StatusUnprocessableEntity, "id mismatch")
		if !slices.Contains(r.paths(t), "id") {
			t.Errorf("id mismatch: %s", r.body)
		}
		want(t, h.do("GET", "/api/v1/clients/c-9999", ""), http.StatusNotFound, "missing client")
	})
}

func TestListClientsPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		var ids []string
		for i := range 5 {
			id := fmt.Sprintf("c-%04d", i+1)
			ids = append(ids, id)
			want(t, h.do("POST", "/api/v1/clients", clientJSON(id, "MRN"+id, "goal", "employer")), http.StatusCreated, "create")
		}
		var got []string
		next := "/api/v1/clients?limit=2"
		for pages := 0; next != ""; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			r := h.do("GET", next, "")
			want(t, r, http.StatusOK, "list")
			// A page is a caseload document.
			cl, err := ips.Decode(strings.NewReader(string(r.body)))
			if err != nil {
				t.Fatalf("a page is not a valid caseload: %v", err)
			}
			for _, c := range cl.Clients {
				got = append(got, c.ID)
			}
			next = ""
			if link := r.header.Get("Link"); link != "" {
				next = strings.TrimPrefix(strings.Split(link, ">")[0], "<")
			}
		}
		if !cmp.Equal(got, ids) {
			t.Errorf("paged through %v, want %v", got, ids)
		}
		r := h.do("GET", "/api/v1/clients", "")
		want(t, r, http.StatusOK, "list without limit")
		if r.header.Get("Link") != "" || !strings.Contains(string(r.body), "c-0005") {
			t.Errorf("list: %v %s", r.header, r.body)
		}
		r = h.do("GET", "/api/v1/clients?after=c-0005", "")
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"clients":[]}` {
			t.Errorf("past the end: %d %s", r.status, r.body)
		}
		r = h.do("GET", "/api/v1/clients?limit=0&offset=3", "")
		want(t, r, http.StatusBadRequest, "bad query")
		if p := r.paths(t); !slices.Contains(p, "limit") || !slices.Contains(p, "offset") {
			t.Errorf("bad query issues: %s", r.body)
		}
	})
}

func TestRecordsCRUD(t *testing.T) {
	cases := []struct {
		kind, created, changed, field string
	}{
		{"goals", `{"id": "g2", "description": "Finish a GED", "status": "proposed", "start": "2026-02-01"}`,
			`{"id": "g2", "description": "Finish a GED", "status": "active", "start": "2026-02-01"}`, "status"},
		{"supports", `{"id": "s2", "type": "benefits-planning", "status": "planned", "date": "2026-02-03", "goal": "g1"}`,
			`{"id": "s2", "type": "benefits-planning", "status": "completed", "date": "2026-02-03", "goal": "g1"}`, "status"},
		{"jobs", `{"id": "j2", "employer": "City Library", "title": "Shelver", "start": "2026-04-01", "hoursPerWeek": 12, "hourlyWage": {"value": 16.5, "currency": "USD"}, "competitive": true}`,
			`{"id": "j2", "employer": "City Library", "title": "Shelver", "start": "2026-04-01", "end": "2026-05-01", "endReason": "temporary-job-ended", "hoursPerWeek": 12, "hourlyWage": {"value": 16.5, "currency": "USD"}, "competitive": true}`, "end"},
	}
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-1", "MRN1", "goal", "employer")), http.StatusCreated, "create client")
		version := 1
		for _, tc := range cases {
			base := "/api/v1/clients/c-1/" + tc.kind
			var rid struct{ ID string }
			json.Unmarshal([]byte(tc.created), &rid)

			r := h.do("POST", base, tc.created)
			want(t, r, http.StatusCreated, "create "+tc.kind)
			version++
			if r.header.Get("Location") != base+"/"+rid.ID || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) {
				t.Errorf("create %s: %v", tc.kind, r.header)
			}
			r = h.do("GET", base, "")
			want(t, r, http.StatusOK, "list "+tc.kind)
			var list map[string][]map[string]any
			if err := json.Unmarshal(r.body, &list); err != nil || len(list[tc.kind]) != 2 || list[tc.kind][1]["id"] != rid.ID {
				t.Errorf("list %s: %v %s", tc.kind, err, r.body)
			}
			r = h.do("PUT", base+"/"+rid.ID, tc.changed, "If-Match", fmt.Sprintf(`"%d"`, version))
			want(t, r, http.StatusOK, "replace "+tc.kind)
			version++
			r = h.do("GET", base+"/"+rid.ID, "")
			want(t, r, http.StatusOK, "get "+tc.kind)
			var got, wantRec map[string]any
			json.Unmarshal(r.body, &got)
			json.Unmarshal([]byte(tc.changed), &wantRec)
			if got[tc.field] != wantRec[tc.field] || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) {
				t.Errorf("get %s after replace: %s (ETag %s)", tc.kind, r.body, r.header.Get("ETag"))
			}
			want(t, h.do("GET", base+"/nope", ""), http.StatusNotFound, "missing "+tc.kind)
			want(t, h.do("GET", "/api/v1/clients/c-404/"+tc.kind, ""), http.StatusNotFound, "missing client's "+tc.kind)
			want(t, h.do("POST", "/api/v1/clients/c-404/"+tc.kind, tc.created), http.StatusNotFound, "add to a missing client")
		}
		// PUT of a record the client lacks adds it.
		r := h.do("PUT", "/api/v1/clients/c-1/goals/g9", `{"id": "g9", "description": "Get a bike", "status": "planned", "start": "2026-02-01"}`)
		want(t, r, http.StatusCreated, "put a new goal")
		c, _, err := st.GetClient(t.Context(), "c-1")
		if err != nil || len(c.Goals) != 3 || len(c.Supports) != 2 || len(c.Jobs) != 2 {
			t.Errorf("stored client: %v %+v", err, c)
		}
	})
}

func TestBadInputStoresNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		// Three problems in one client, all listed, paths relative to the body.
		bad := strings.Replace(clientJSON("c-1", "MRN1", "goal", "employer"), `"hoursPerWeek": 22.5`, `"hoursPerWeek": "twenty"`, 1)
		bad = strings.Replace(bad, `"enrolledOn": "2026-01-05",`, `"enrolledOn": "2026-02-30", "nickname": "Bo",`, 1)
		bad = strings.Replace(bad, `"goal": "g1"`, `"goal": "g7"`, 1)
		r := h.do("POST", "/api/v1/clients", bad)
		want(t, r, http.StatusUnprocessableEntity, "invalid client")
		for _, p := range []string{"jobs[0].hoursPerWeek", "enrolledOn", "nickname"} {
			if !slices.Contains(r.paths(t), p) {
				t.Errorf("no issue at %s: %s", p, r.body)
			}
		}
		for _, is := range r.issues(t) {
			if is.Severity != "error" || is.Code == "" || is.Message == "" {
				t.Errorf("incomplete issue %+v", is)
			}
		}
		if _, _, err := st.GetClient(t.Context(), "c-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("an invalid client was stored: %v", err)
		}
		if d := h.depth(); len(d) != 0 {
			t.Errorf("an invalid client enqueued outbox items: %v", d)
		}

		// Bodies that are not one JSON value are 400; a second value cannot
		// smuggle a second client into the caseload the body is checked in.
		for _, body := range []string{`{"id": `, `{"id":"a"} {"id":"b"}`, `{"id":"x"}]},{"id":"y"`, `nope`, ` `} {
			r := h.do("POST", "/api/v1/clients", body)
			want(t, r, http.StatusBadRequest, "not JSON: "+body)
			if r.issues(t)[0].Code != "structure" {
				t.Errorf("not JSON: %s", r.body)
			}
		}
		want(t, h.do("POST", "/api/v1/clients", `[1, 2]`), http.StatusUnprocessableEntity, "an array")
		want(t, h.do("POST", "/api/v1/clients", `{}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "text/plain")
		want(t, h.do("POST", "/api/v1/clients", `{"id":"`+strings.Repeat("x", 5<<20)+`"}`), http.StatusRequestEntityTooLarge, "too large")

		// An invalid record leaves its client as it was and enqueues nothing.
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-2", "MRN2", "goal", "employer")), http.StatusCreated, "create")
		h.drain()
		r = h.do("POST", "/api/v1/clients/c-2/goals", `{"id": "g2", "description": "x", "status": "done", "targetHoursPerWeek": "lots", "start": "2026-01-01", "color": "red"}`)
		want(t, r, http.StatusUnprocessableEntity, "invalid goal")
		if p := r.paths(t); !cmp.Equal(p, []string{"color", "status", "targetHoursPerWeek"}) {
			t.Errorf("invalid goal: paths %v\n%s", p, r.body)
		}
		r = h.do("POST", "/api/v1/clients/c-2/supports", `{"id": "s2", "type": "job-development", "status": "planned", "date": "2026-01-10", "goal": "g404"}`)
		want(t, r, http.StatusUnprocessableEntity, "support of a missing goal")
		if p := r.paths(t); !cmp.Equal(p, []string{"goal"}) {
			t.Errorf("support of a missing goal: %s", r.body)
		}
		r = h.do("POST", "/api/v1/clients/c-2/goals", `{"id": "g1", "description": "again", "status": "active", "start": "2026-01-01"}`)
		want(t, r, http.StatusUnprocessableEntity, "duplicate goal id")
		if p := r.paths(t); !cmp.Equal(p, []string{"id"}) {
			t.Errorf("duplicate goal id: %s", r.body)
		}
		r = h.do("PUT", "/api/v1/clients/c-2/jobs/j1", `{"id": "j2", "employer": "E", "title": "T", "start": "2026-04-01", "hoursPerWeek": 12, "hourlyWage": {"value": 16.5, "currency": "USD"}, "competitive": true}`)
		want(t, r, http.StatusUnprocessableEntity, "job id mismatch")
		if p := r.paths(t); !slices.Contains(p, "id") {
			t.Errorf("job id mismatch: %s", r.body)
		}
		if _, v, _ := st.GetClient(t.Context(), "c-2"); v != 1 {
			t.Errorf("invalid records changed the client: version %d", v)
		}
		if d := h.depth(); len(d) != 0 {
			t.Errorf("invalid records enqueued outbox items: %v", d)
		}
	})
}

func TestWritesEnqueuePerEnabledConnection(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-1", "MRN1", "goal", "employer")), http.StatusCreated, "create")
		if d := h.depth(); !cmp.Equal(d, map[string]int{"clinic-a": 1, "clinic-b": 1}) {
			t.Errorf("after create: outbox %v", d)
		}
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-2", "MRN2", "goal", "employer")), http.StatusCreated, "create")
		if d := h.depth(); !cmp.Equal(d, map[string]int{"clinic-a": 2, "clinic-b": 2}) {
			t.Errorf("after a second client: outbox %v", d)
		}
		h.drain()
		// clinic-b is disabled while the server runs: the next write skips it.
		h.setConnections("clinic-a")
		want(t, h.do("PUT", "/api/v1/clients/c-1/goals/g1", `{"id": "g1", "description": "goal", "status": "on-hold", "start": "2026-01-06"}`), http.StatusOK, "put goal")
		if d := h.depth(); !cmp.Equal(d, map[string]int{"clinic-a": 1}) {
			t.Errorf("after a goal write: outbox %v", d)
		}
		h.drain()
		for _, w := range []struct {
			method, path, body string
			status             int
		}{
			{"PUT", "/api/v1/clients/c-2", clientJSON("c-2", "MRN2", "other goal", "employer"), http.StatusOK},
			{"POST", "/api/v1/clients/c-2/supports", `{"id": "s2", "type": "transportation", "status": "planned", "date": "2026-02-01"}`, http.StatusCreated},
			{"PUT", "/api/v1/clients/c-2/jobs/j1", `{"id": "j1", "employer": "E", "title": "T", "start": "2026-04-01", "hoursPerWeek": 12, "hourlyWage": {"value": 16.5, "currency": "USD"}, "competitive": false}`, http.StatusOK},
		} {
			want(t, h.do(w.method, w.path, w.body), w.status, w.method+" "+w.path)
			if d := h.depth(); !cmp.Equal(d, map[string]int{"clinic-a": 1}) {
				t.Errorf("%s %s: outbox %v", w.method, w.path, d)
			}
			h.drain()
		}
		h.setConnections()
		want(t, h.do("PUT", "/api/v1/clients/c-2", clientJSON("c-2", "MRN2", "third goal", "employer")), http.StatusOK, "put")
		if d := h.depth(); len(d) != 0 {
			t.Errorf("with no connection enabled: outbox %v", d)
		}
	})
}

// raceStore lets another write land between the API's read and its save,
// once, as a concurrent request would.
type raceStore struct {
	store.Store
	mu    sync.Mutex
	raced bool
}

func (s *raceStore) SaveClients(ctx context.Context, cs []store.Stored, conns []string) ([]store.Version, error) {
	s.mu.Lock()
	if !s.raced {
		s.raced = true
		c, v, err := s.Store.GetClient(ctx, cs[0].Client.ID)
		if err == nil {
			other := *c
			other.Specialist = "someone else"
			if _, err := s.Store.SaveClients(ctx, []store.Stored{{Client: &other, Version: v}}, conns); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		}
	}
	s.mu.Unlock()
	return s.Store.SaveClients(ctx, cs, conns)
}

func TestIfMatchAndRaces(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		body := clientJSON("c-1", "MRN1", "goal", "employer")
		want(t, h.do("POST", "/api/v1/clients", body), http.StatusCreated, "create")
		goal := `{"id": "g2", "description": "x", "status": "active", "start": "2026-01-06"}`
		want(t, h.do("PUT", "/api/v1/clients/c-1", body, "If-Match", `*`), http.StatusOK, "If-Match *")
		want(t, h.do("POST", "/api/v1/clients/c-1/goals", goal, "If-Match", `"7"`), http.StatusPreconditionFailed, "stale If-Match on a record")
		want(t, h.do("POST", "/api/v1/clients/c-1/goals", goal, "If-Match", `W/"2"`), http.StatusPreconditionFailed, "weak If-Match")
		want(t, h.do("POST", "/api/v1/clients/c-1/goals", goal, "If-Match", `"5", "2"`), http.StatusCreated, "If-Match list")

		// A race lost under If-Match is 412; without, the write is redone.
		rs := &raceStore{Store: st}
		hr := newHarnessOver(t, st, rs)
		_, v, _ := st.GetClient(t.Context(), "c-1")
		r := hr.do("PUT", "/api/v1/clients/c-1/goals/g2", goal, "If-Match", fmt.Sprintf(`"%d"`, v))
		want(t, r, http.StatusPreconditionFailed, "race lost under If-Match")
		rs.raced = false
		r = hr.do("PUT", "/api/v1/clients/c-1/goals/g2", strings.Replace(goal, "active", "on-hold", 1))
		want(t, r, http.StatusOK, "race lost without If-Match")
		c, _, _ := st.GetClient(t.Context(), "c-1")
		if c.Specialist != "someone else" || c.Goal("g2").Status != ips.GoalOnHold {
			t.Errorf("the redone write lost one of the two changes: %+v", c)
		}
		rs.raced = false
		want(t, hr.do("POST", "/api/v1/clients", clientJSON("c-2", "MRN2", "g", "e")), http.StatusCreated, "create (no race: the client did not exist)")

		// Concurrent unconditional writes to one client all land.
		var wg sync.WaitGroup
		codes := make([]int, 3)
		for i := range codes {
			wg.Go(func() {
				codes[i] = h.do("POST", "/api/v1/clients/c-1/goals", fmt.Sprintf(`{"id": "cg%d", "description": "x", "status": "active", "start": "2026-01-06"}`, i)).status
			})
		}
		wg.Wait()
		c, _, _ = st.GetClient(t.Context(), "c-1")
		for i, code := range codes {
			if code != http.StatusCreated || c.Goal(fmt.Sprintf("cg%d", i)) == nil {
				t.Errorf("concurrent goal %d: status %d, stored %v", i, code, c.Goal(fmt.Sprintf("cg%d", i)) != nil)
			}
		}
	})
}

func TestRolesAndKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		body := clientJSON("c-1", "MRN1", "goal", "employer")
		want(t, h.do("POST", "/api/v1/clients", body), http.StatusCreated, "specialist creates")

		for _, tc := range []struct {
			name, auth string
		}{{"no header", ""}, {"basic", "Basic dXNlcjpwYXNz"}, {"empty bearer", "Bearer "}, {"unknown key", "Bearer not-a-key"}, {"a key's hash", "Bearer " + fmt.Sprintf("%x", sum(specialistKey))}} {
			for _, path := range []string{"/api/v1/clients", "/api/v1/clients/c-1", "/api/v1/nowhere"} {
				r := h.do("GET", path, "", "Authorization", tc.auth)
				want(t, r, http.StatusUnauthorized, tc.name+" "+path)
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") || r.issues(t)[0].Code != "login" {
					t.Errorf("%s: 401 without a Bearer challenge: %v %s", tc.name, r.header, r.body)
				}
			}
		}
		lower := h.do("GET", "/api/v1/clients/c-1", "", "Authorization", "bearer "+clinicianKey)
		want(t, lower, http.StatusOK, "lower-case scheme")

		for _, tc := range []struct {
			key         string
			read, write int
		}{
			{specialistKey, http.StatusOK, http.StatusOK},
			{clinicianKey, http.StatusOK, http.StatusForbidden},
			{adminKey, http.StatusOK, http.StatusForbidden},
			{hieKey, http.StatusForbidden, http.StatusForbidden},
		} {
			auth := "Bearer " + tc.key
			for _, path := range []string{"/api/v1/clients", "/api/v1/clients/c-1", "/api/v1/clients/c-1/goals", "/api/v1/clients/c-1/jobs/j1"} {
				want(t, h.do("GET", path, "", "Authorization", auth), tc.read, tc.key+" GET "+path)
			}
			want(t, h.do("PUT", "/api/v1/clients/c-1", body, "Authorization", auth), tc.write, tc.key+" PUT client")
			wantWrite := tc.write
			if wantWrite == http.StatusOK {
				wantWrite = http.StatusCreated
			}
			want(t, h.do("POST", "/api/v1/clients/c-1/supports", fmt.Sprintf(`{"id": "s-%s", "type": "transportation", "status": "planned", "date": "2026-02-01"}`, tc.key[9:12]), "Authorization", auth), wantWrite, tc.key+" POST support")
			if tc.write == http.StatusForbidden {
				r := h.do("POST", "/api/v1/clients", clientJSON("c-x", "MRNx", "g", "e"), "Authorization", auth)
				want(t, r, http.StatusForbidden, tc.key+" POST client")
				if r.issues(t)[0].Code != "forbidden" {
					t.Errorf("403 body: %s", r.body)
				}
			}
		}
		if _, _, err := st.GetClient(t.Context(), "c-x"); !errors.Is(err, store.ErrNotFound) {
			t.Error("a forbidden write was stored")
		}
		want(t, h.do("GET", "/api/v1/nowhere", ""), http.StatusNotFound, "unknown route with a key")
		want(t, h.do("DELETE", "/api/v1/clients/c-1", ""), http.StatusMethodNotAllowed, "DELETE")
	})
}

// failStore fails every save with an error that names the client, as store
// errors do.
type failStore struct{ store.Store }

func (s failStore) SaveClients(_ context.Context, cs []store.Stored, _ []string) ([]store.Version, error) {
	return nil, fmt.Errorf("store: save clients: client %s: disk on fire", cs[0].Client.ID)
}

// TestLogsHoldNoPatientData sends requests carrying distinctive values in
// every place a request can carry them (body, path, query, headers) through
// successes and every kind of failure, and checks that the log holds none.
func TestLogsHoldNoPatientData(t *testing.T) {
	const (
		clientID = "c-PLANTED-ID-4242"
		mrn      = "MRN-PLANTED-7731"
		goal     = "PLANTED goal: work nights at the Zanzibar quokka observatory"
		employer = "PLANTED Quokka Diner of Zanzibar"
	)
	planted := []string{clientID, mrn, "Zanzibar", "Quokka", "quokka", specialistKey, clinicianKey, hieKey, "sunflower"}
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		body := clientJSON(clientID, mrn, goal, employer)
		want(t, h.do("POST", "/api/v1/clients", body), http.StatusCreated, "create")
		want(t, h.do("GET", "/api/v1/clients/"+clientID, ""), http.StatusOK, "get")
		want(t, h.do("GET", "/api/v1/clients/"+clientID+"/jobs/j1", ""), http.StatusOK, "get job")
		want(t, h.do("GET", "/api/v1/clients?after="+clientID+"&limit=1", ""), http.StatusOK, "list")
		want(t, h.do("GET", "/api/v1/clients?sunflower="+mrn, ""), http.StatusBadRequest, "bad query")
		want(t, h.do("PUT", "/api/v1/clients/"+clientID, strings.Replace(body, `"enrolledOn": "2026-01-05"`, `"enrolledOn": "`+mrn+`"`, 1)), http.StatusUnprocessableEntity, "invalid")
		want(t, h.do("POST", "/api/v1/clients/"+clientID+"/goals", `{"id": "g2", "description": "`+goal+`", "status": "`+mrn+`", "start": "2026-01-06"}`), http.StatusUnprocessableEntity, "invalid goal")
		want(t, h.do("POST", "/api/v1/clients", `{"id": "`+mrn), http.StatusBadRequest, "not JSON")
		want(t, h.do("GET", "/api/v1/clients/"+mrn, ""), http.StatusNotFound, "missing")
		want(t, h.do("GET", "/api/v1/"+mrn, ""), http.StatusNotFound, "no route")
		want(t, h.do("GET", "/api/v1/clients/"+clientID, "", "Authorization", "Bearer "+mrn), http.StatusUnauthorized, "bad key")
		want(t, h.do("GET", "/api/v1/clients/"+clientID, "", "Authorization", "Bearer "+hieKey), http.StatusForbidden, "forbidden")
		want(t, h.do("PUT", "/api/v1/clients/"+clientID, body, "If-Match", `"99"`), http.StatusPreconditionFailed, "stale")

		// A 500 whose cause names the client.
		hf := newHarnessOver(t, st, failStore{st})
		r := hf.do("PUT", "/api/v1/clients/"+clientID, body)
		want(t, r, http.StatusInternalServerError, "failing store")
		for _, s := range planted {
			if strings.Contains(string(r.body), s) {
				t.Errorf("the 500 body holds %q: %s", s, r.body)
			}
		}
		logs := h.logs.String() + hf.logs.String()
		for _, s := range planted {
			if strings.Contains(logs, s) {
				t.Errorf("the log holds the planted value %q:\n%s", s, logs)
			}
		}
		for _, s := range []string{`"route":"/api/v1/clients/{id}"`, `"route":"/api/v1/clients/{id}/jobs/{rid}"`, `"route":"/api/v1/clients"`, `"route":"unmatched"`,
			`"status":422`, `"status":401`, `"status":403`, `"status":412`, `"status":500`, `"caller":"jordan"`, "disk on fire", `"method":"PUT"`, `"duration"`} {
			if !strings.Contains(logs, s) {
				t.Errorf("the log lacks %s:\n%s", s, logs)
			}
		}
		if n := strings.Count(h.logs.String(), `"msg":"http request"`); n != 13 {
			t.Errorf("%d access-log lines for 13 requests", n)
		}
	})
}
