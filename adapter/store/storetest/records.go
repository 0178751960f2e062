package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// Stores keep times to the microsecond (PostgreSQL's precision), truncated.
var atMicros = cmp.Comparer(func(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
})

func testLedger(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	e := store.LedgerEntry{
		Connection:   "a",
		Key:          "https://ipsfhir.org/id/goal|riverside-ips/c1/g1",
		ClientID:     "c1",
		ResourceType: "Goal",
		ResourceID:   "123",
		VersionID:    "0b7e7c4e-4cf4-4c1b-9e0f-3b8f1d1f6a11",
		ContentHash:  "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		UpdatedAt:    time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.FixedZone("EST", -5*3600)),
		// Writes whose answers were lost are kept, in order.
		Attempted: []store.Attempt{{Hash: "aa11", At: time.Date(2026, 3, 1, 12, 29, 0, 0, time.UTC)}, {Hash: "bb22", At: time.Date(2026, 3, 1, 12, 29, 30, 0, time.UTC), IfMatch: "v@7 x"}},
		Base:      []byte(`{"resourceType":"Goal","lifecycleStatus":"active"}`),
	}
	if err := st.LedgerPut(ctx, e); err != nil {
		t.Fatalf("LedgerPut: %v", err)
	}
	// The same key on another connection is another entry.
	other := e
	other.Connection, other.ResourceID = "b", "b-77"
	if err := st.LedgerPut(ctx, other); err != nil {
		t.Fatalf("LedgerPut: %v", err)
	}

	got, err := st.LedgerGet(ctx, "a", e.Key)
	if err != nil {
		t.Fatalf("LedgerGet: %v", err)
	}
	if diff := cmp.Diff(e, got, atMicros); diff != "" {
		t.Errorf("LedgerGet (-put +got):\n%s", diff)
	}
	got, err = st.LedgerByResource(ctx, "a", "Goal", "123")
	if err != nil {
		t.Fatalf("LedgerByResource: %v", err)
	}
	if diff := cmp.Diff(e, got, atMicros); diff != "" {
		t.Errorf("LedgerByResource (-put +got):\n%s", diff)
	}
	got, err = st.LedgerGet(ctx, "b", e.Key)
	if err != nil || got.ResourceID != "b-77" {
		t.Errorf("LedgerGet on b = %+v, %v; want the entry of b", got, err)
	}

	_, err = st.LedgerGet(ctx, "a", "https://ipsfhir.org/id/goal|riverside-ips/c1/g2")
	wantErrIs(t, "LedgerGet of a missing key", err, store.ErrNotFound)
	_, err = st.LedgerGet(ctx, "c", e.Key)
	wantErrIs(t, "LedgerGet on another connection", err, store.ErrNotFound)
	for _, q := range [][3]string{{"a", "Goal", "999"}, {"a", "CarePlan", "123"}, {"b", "Goal", "123"}} {
		_, err := st.LedgerByResource(ctx, q[0], q[1], q[2])
		wantErrIs(t, fmt.Sprintf("LedgerByResource%q", q), err, store.ErrNotFound)
	}

	// Put replaces; the old resource no longer resolves.
	e2 := e
	e2.ResourceID, e2.VersionID, e2.ContentHash = "456", "2", "sha256:00"
	e2.UpdatedAt = time.Time{} // means now
	before := time.Now()
	if err := st.LedgerPut(ctx, e2); err != nil {
		t.Fatalf("LedgerPut: %v", err)
	}
	got, err = st.LedgerGet(ctx, "a", e.Key)
	if err != nil {
		t.Fatalf("LedgerGet: %v", err)
	}
	if diff := cmp.Diff(e2, got, cmpopts.IgnoreFields(store.LedgerEntry{}, "UpdatedAt")); diff != "" {
		t.Errorf("LedgerGet after replace (-put +got):\n%s", diff)
	}
	if got.UpdatedAt.Before(before.Add(-time.Second)) || got.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("zero UpdatedAt stored as %v, want now", got.UpdatedAt)
	}
	_, err = st.LedgerByResource(ctx, "a", "Goal", "123")
	wantErrIs(t, "LedgerByResource of a replaced resource", err, store.ErrNotFound)
	if got, err := st.LedgerByResource(ctx, "a", "Goal", "456"); err != nil || got.Key != e.Key {
		t.Errorf("LedgerByResource of the new resource = %+v, %v", got, err)
	}
	if err := st.LedgerPut(ctx, store.LedgerEntry{Connection: "a"}); err == nil {
		t.Error("LedgerPut without a key: no error")
	}

	// Pending: a client's entries of one type without a resource id,
	// oldest first; not another client's, type's or connection's, and
	// not once they have an id.
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	pending := func(key, client, typ, id string, at time.Time) store.LedgerEntry {
		return store.LedgerEntry{Connection: "a", Key: key, ClientID: client, ResourceType: typ, ResourceID: id, ContentHash: "h-" + key,
			UpdatedAt: at, Base: []byte(`{"resourceType":"Provenance"}`), Attempted: []store.Attempt{{Hash: "h-" + key, At: at}}}
	}
	rows := []store.LedgerEntry{
		pending("p2", "c1", "Provenance", "", t0.Add(2*time.Second)),
		pending("p1", "c1", "Provenance", "", t0.Add(time.Second)),
		pending("p3", "c1", "Provenance", "77", t0),
		pending("p4", "c2", "Provenance", "", t0),
		pending("p5", "c1", "Goal", "", t0),
	}
	other = pending("p6", "c1", "Provenance", "", t0)
	other.Connection = "b"
	for _, e := range append(rows, other) {
		if err := st.LedgerPut(ctx, e); err != nil {
			t.Fatalf("LedgerPut: %v", err)
		}
	}
	list, err := st.LedgerPending(ctx, "a", "c1", "Provenance")
	if err != nil {
		t.Fatalf("LedgerPending: %v", err)
	}
	if diff := cmp.Diff([]store.LedgerEntry{rows[1], rows[0]}, list, atMicros); diff != "" {
		t.Errorf("LedgerPending (-want +got):\n%s", diff)
	}
	done := rows[1]
	done.ResourceID = "78"
	if err := st.LedgerPut(ctx, done); err != nil {
		t.Fatalf("LedgerPut: %v", err)
	}
	if list, err := st.LedgerPending(ctx, "a", "c1", "Provenance"); err != nil || len(list) != 1 || list[0].Key != "p2" {
		t.Errorf("LedgerPending after one got an id = %+v, %v; want only p2", list, err)
	}
	if list, err := st.LedgerPending(ctx, "a", "c9", "Provenance"); err != nil || len(list) != 0 {
		t.Errorf("LedgerPending of a client with none = %+v, %v", list, err)
	}

	// Many keys at once: each row as LedgerGet reads it, whatever client
	// wrote it; missing keys and other connections' rows absent; a key
	// asked twice read once.
	keys := []string{e.Key, "p1", "p2", "p4", "p6", "missing", "p1"}
	many, err := st.LedgerGetMany(ctx, "a", keys)
	if err != nil {
		t.Fatalf("LedgerGetMany: %v", err)
	}
	want := map[string]store.LedgerEntry{}
	for _, k := range keys {
		if one, err := st.LedgerGet(ctx, "a", k); err == nil {
			want[k] = one
		}
	}
	if len(want) != 4 {
		t.Fatalf("setup: %d rows on a, want 4", len(want))
	}
	if diff := cmp.Diff(want, many, atMicros); diff != "" {
		t.Errorf("LedgerGetMany (-LedgerGet +got):\n%s", diff)
	}
	if many, err := st.LedgerGetMany(ctx, "b", []string{e.Key, "p6", "p1"}); err != nil || len(many) != 2 || many["p6"].Connection != "b" || many[e.Key].ResourceID != "b-77" {
		t.Errorf("LedgerGetMany on b = %+v, %v; want b's two rows", many, err)
	}
	if many, err := st.LedgerGetMany(ctx, "a", nil); err != nil || len(many) != 0 {
		t.Errorf("LedgerGetMany of no keys = %+v, %v", many, err)
	}
	// More keys than one statement takes (SQLite's variable limit, read
	// in parts).
	var lots []string
	for i := range 1200 {
		lots = append(lots, fmt.Sprintf("k%04d", i))
	}
	for _, k := range []string{"k0003", "k0700", "k1199"} {
		if err := st.LedgerPut(ctx, store.LedgerEntry{Connection: "a", Key: k, ClientID: "c7", ResourceType: "Goal", ResourceID: k}); err != nil {
			t.Fatalf("LedgerPut: %v", err)
		}
	}
	many, err = st.LedgerGetMany(ctx, "a", lots)
	if err != nil || len(many) != 3 || many["k0700"].ResourceID != "k0700" || many["k1199"].ResourceID != "k1199" {
		t.Errorf("LedgerGetMany of 1,200 keys = %d rows, %v; want the 3 stored", len(many), err)
	}
}

func testWatermarks(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	get := func(conn, rt string) time.Time {
		t.Helper()
		w, err := st.Watermark(ctx, conn, rt)
		if err != nil {
			t.Fatalf("Watermark(%s, %s): %v", conn, rt, err)
		}
		return w
	}
	set := func(conn, rt string, at time.Time) {
		t.Helper()
		if err := st.SetWatermark(ctx, conn, rt, at); err != nil {
			t.Fatalf("SetWatermark(%s, %s): %v", conn, rt, err)
		}
	}
	if w := get("a", "Goal"); !w.IsZero() {
		t.Errorf("new watermark = %v, want zero", w)
	}
	t1 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	set("a", "Goal", t1)
	if w := get("a", "Goal"); !w.Equal(t1.Truncate(time.Microsecond)) {
		t.Errorf("watermark = %v, want %v", w, t1)
	}
	set("a", "Goal", t1.Add(-time.Hour))
	set("a", "Goal", time.Time{})
	if w := get("a", "Goal"); !w.Equal(t1.Truncate(time.Microsecond)) {
		t.Errorf("watermark moved backwards to %v", w)
	}
	t2 := t1.Add(90 * time.Minute).In(time.FixedZone("PST", -8*3600))
	set("a", "Goal", t2)
	if w := get("a", "Goal"); !w.Equal(t2.Truncate(time.Microsecond)) {
		t.Errorf("watermark = %v, want %v", w, t2)
	}
	for _, q := range [][2]string{{"a", "Observation"}, {"b", "Goal"}} {
		if w := get(q[0], q[1]); !w.IsZero() {
			t.Errorf("watermark of %v = %v, want zero (not shared)", q, w)
		}
	}
}

func testConflicts(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	created := time.Date(2026, 4, 2, 9, 15, 0, 500, time.UTC)
	cs := []store.Conflict{
		{Connection: "a", ClientID: "c1", Key: "https://ipsfhir.org/id/goal|p/c1/g1", Field: "status", IPSValue: "active", EHRValue: "on-hold", Winner: "ehr", CreatedAt: created},
		{Connection: "b", ClientID: "c2", Key: "https://ipsfhir.org/id/goal|p/c2/g1", Field: "note", IPSValue: "x", EHRValue: "y", Winner: "ips", CreatedAt: created},
		{Connection: "a", ClientID: "c3", Key: "https://ipsfhir.org/id/goal|p/c3/g1", Field: "status", IPSValue: "completed", EHRValue: "cancelled", Winner: "ehr"},
	}
	start := time.Now()
	for i := range cs {
		id, err := st.AddConflict(ctx, cs[i])
		if err != nil {
			t.Fatalf("AddConflict: %v", err)
		}
		cs[i].ID = id
	}
	if cs[0].ID == cs[1].ID || cs[1].ID == cs[2].ID {
		t.Fatalf("AddConflict ids not distinct: %d %d %d", cs[0].ID, cs[1].ID, cs[2].ID)
	}
	list := func(conn string, all bool) []store.Conflict {
		t.Helper()
		got, err := st.Conflicts(ctx, conn, all)
		if err != nil {
			t.Fatalf("Conflicts(%q, %v): %v", conn, all, err)
		}
		return got
	}
	got := list("a", false)
	if len(got) != 2 {
		t.Fatalf("open conflicts on a: %+v, want 2", got)
	}
	if got[1].CreatedAt.Before(start.Add(-time.Second)) || got[1].CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("zero CreatedAt stored as %v, want now", got[1].CreatedAt)
	}
	cs[2].CreatedAt = got[1].CreatedAt
	if diff := cmp.Diff([]store.Conflict{cs[0], cs[2]}, got, atMicros); diff != "" {
		t.Errorf("open conflicts on a (-added +listed):\n%s", diff)
	}
	if diff := cmp.Diff(cs, list("", false), atMicros); diff != "" {
		t.Errorf("open conflicts everywhere (-added +listed):\n%s", diff)
	}

	if err := st.ResolveConflict(ctx, cs[0].ID, "kept the EHR's status"); err != nil {
		t.Fatalf("ResolveConflict: %v", err)
	}
	if diff := cmp.Diff([]store.Conflict{cs[2]}, list("a", false), atMicros); diff != "" {
		t.Errorf("open conflicts on a after resolving one (-want +got):\n%s", diff)
	}
	all := list("a", true)
	if len(all) != 2 || all[0].ID != cs[0].ID || all[0].Resolution != "kept the EHR's status" ||
		all[0].ResolvedAt.Before(start.Add(-time.Second)) || all[0].ResolvedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("all conflicts on a = %+v; want the resolved one first, with its resolution and time", all)
	}
	if len(all) > 1 && !all[1].ResolvedAt.IsZero() {
		t.Errorf("open conflict has ResolvedAt %v", all[1].ResolvedAt)
	}
	wantErrIs(t, "resolving a resolved conflict", st.ResolveConflict(ctx, cs[0].ID, "again"), store.ErrConflict)
	wantErrIs(t, "resolving a missing conflict", st.ResolveConflict(ctx, 987654, "x"), store.ErrNotFound)
	if err := st.ResolveConflict(ctx, cs[2].ID, ""); err == nil {
		t.Error("ResolveConflict with an empty resolution: no error")
	}
	if _, err := st.AddConflict(ctx, store.Conflict{Connection: "a", ClientID: "c1", Key: "k", Field: "f", Winner: "nobody"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AddConflict with winner \"nobody\": %v, want store.ErrInvalid", err)
	}
}

// testReopen writes one of everything, closes the store, opens the same
// database again and finds it all there.
func testReopen(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.open(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			st.Close()
		}
	})
	c := richClient("c1")
	save(t, st, []string{"a"}, c)
	save(t, st, []string{"b"}, minimalClient("c2"))
	if dead, err := st.Fail(ctx, leaseOne(t, st, "b", "w1"), "HTTP 400", time.Now(), 1); err != nil || !dead {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	e := store.LedgerEntry{Connection: "a", Key: "k1", ClientID: "c1", ResourceType: "Goal", ResourceID: "1", VersionID: "1", ContentHash: "h", UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := st.LedgerPut(ctx, e); err != nil {
		t.Fatal(err)
	}
	w := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := st.SetWatermark(ctx, "a", "Goal", w); err != nil {
		t.Fatal(err)
	}
	cid, err := st.AddConflict(ctx, store.Conflict{Connection: "a", ClientID: "c1", Key: "k1", Field: "status", IPSValue: "active", EHRValue: "on-hold", Winner: "ehr"})
	if err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = s.openStore(t)
	got, v, err := st.GetClient(ctx, "c1")
	if err != nil {
		t.Fatalf("GetClient after reopen: %v", err)
	}
	if diff := cmp.Diff(c, got); v != 1 || diff != "" {
		t.Errorf("client after reopen: version %d, diff (-saved +got):\n%s", v, diff)
	}
	wantDepth(t, st, map[string]int{"a": 1})
	if it := leaseOne(t, st, "a", "w1"); it.ClientID != "c1" {
		t.Errorf("leased %+v after reopen, want c1's item", it)
	}
	if dls, err := st.DeadLetters(ctx, "b"); err != nil || len(dls) != 1 || dls[0].ClientID != "c2" {
		t.Errorf("dead letters after reopen = %+v, %v", dls, err)
	}
	if got, err := st.LedgerGet(ctx, "a", "k1"); err != nil || !cmp.Equal(e, got, atMicros) {
		t.Errorf("ledger after reopen = %+v, %v", got, err)
	}
	if got, err := st.Watermark(ctx, "a", "Goal"); err != nil || !got.Equal(w) {
		t.Errorf("watermark after reopen = %v, %v; want %v", got, err, w)
	}
	if cs, err := st.Conflicts(ctx, "a", false); err != nil || len(cs) != 1 || cs[0].ID != cid {
		t.Errorf("conflicts after reopen = %+v, %v", cs, err)
	}
	if v := resave(t, st, nil, c, 1); v != 2 {
		t.Errorf("version after reopen and save = %d, want 2", v)
	}
}
