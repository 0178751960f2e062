package api_test

import (
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// TestAdminConnectionsShowTheInitialLoad: /admin/connections says how far
// each connection's initial load has come, with the estimate of the time
// left once something is done, and leaves load out for a connection the
// store has no load of.
func TestAdminConnectionsShowTheInitialLoad(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		var batch []store.Stored
		for _, id := range []string{"c1", "c2", "c3", "c4"} {
			batch = append(batch, store.Stored{Client: &ips.Client{ID: id, Patient: ips.Identifier{System: "s", Value: id}, EnrolledOn: ips.MustDate("2026-01-05")}})
		}
		if _, err := st.SaveClients(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SeedConnections(ctx, []string{"epic"}); err != nil {
			t.Fatal(err)
		}
		key := sha256.Sum256([]byte("admin-key"))
		p := &plan.Plan{Bundles: "none"}
		h := api.New(api.Options{Store: st, Keys: []api.Key{{Name: "root", Role: api.RoleAdmin, SHA256: key[:]}},
			Admin: &api.Admin{Store: st, Plans: func() map[string]*plan.Plan { return map[string]*plan.Plan{"epic": p, "unseeded": p} }}})
		type conn struct {
			Name string
			Load *struct {
				Total, Done      int
				Started          time.Time
				Finished         *time.Time
				RatePerSecond    float64
				RemainingSeconds *float64
			}
		}
		get := func() map[string]conn {
			t.Helper()
			req := httptest.NewRequest("GET", "/admin/connections", nil)
			req.Header.Set("Authorization", "Bearer admin-key")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			api.CheckOpenAPI(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
			var body struct{ Connections []conn }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 {
				t.Fatalf("/admin/connections: %d %s", rec.Code, rec.Body)
			}
			out := map[string]conn{}
			for _, c := range body.Connections {
				out[c.Name] = c
			}
			return out
		}

		got := get()
		if l := got["epic"].Load; l == nil || l.Total != 4 || l.Done != 0 || l.Started.IsZero() || l.Finished != nil || l.RemainingSeconds != nil {
			t.Errorf("just seeded: load %+v; want 0 of 4 and no estimate", l)
		}
		if got["unseeded"].Load != nil {
			t.Errorf("a connection without a load shows %+v", got["unseeded"].Load)
		}

		items, err := st.Lease(ctx, "epic", "w", 4, time.Minute)
		if err != nil || len(items) != 4 {
			t.Fatalf("Lease: %d, %v", len(items), err)
		}
		if err := st.Complete(ctx, items[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Fail(ctx, items[1], "HTTP 400", time.Now(), 1); err != nil {
			t.Fatal(err)
		}
		if l := get()["epic"].Load; l == nil || l.Done != 2 || l.RatePerSecond <= 0 || l.RemainingSeconds == nil || *l.RemainingSeconds <= 0 {
			t.Errorf("half done: load %+v; want 2 of 4 with a rate and the time left", l)
		}
		for _, it := range items[2:] {
			if err := st.Complete(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		if l := get()["epic"].Load; l == nil || l.Done != 4 || l.Finished == nil || l.RemainingSeconds == nil || *l.RemainingSeconds != 0 {
			t.Errorf("all done: load %+v; want 4 of 4, finished, 0 s left", l)
		}
	})
}
