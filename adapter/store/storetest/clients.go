package storetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

func testClientRoundTrip(t *testing.T, s *suite) {
	ctx := t.Context()
	c := richClient("c-rich")
	checkEveryFieldSet(t, reflect.ValueOf(c), "Client")
	st := s.openStore(t)

	vs := save(t, st, []string{"a"}, c)
	if diff := cmp.Diff([]store.Version{1}, vs); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(richClient("c-rich"), c); diff != "" {
		t.Errorf("SaveClients modified its input (-before +after):\n%s", diff)
	}
	got, v, err := st.GetClient(ctx, "c-rich")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if v != 1 {
		t.Errorf("GetClient version = %d, want 1", v)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("GetClient after save (-saved +got):\n%s", diff)
	}
	list, err := st.ListClients(ctx, "", 10)
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	if diff := cmp.Diff([]store.Stored{{Client: c, Version: 1}}, list, cmpopts.IgnoreFields(store.Stored{}, "UpdatedAt")); diff != "" {
		t.Errorf("ListClients (-want +got):\n%s", diff)
	}
	if len(list) == 1 && (list[0].UpdatedAt.IsZero() || time.Since(list[0].UpdatedAt) > time.Minute || list[0].UpdatedAt.Location() != time.UTC) {
		t.Errorf("ListClients UpdatedAt = %v, want a recent UTC time", list[0].UpdatedAt)
	}

	// What GetClient returns is the caller's to change.
	got.Goals[0].Notes[0].Text = "changed by the caller"
	again, _, err := st.GetClient(ctx, "c-rich")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if diff := cmp.Diff(c, again); diff != "" {
		t.Errorf("GetClient shares memory with an earlier result (-saved +got):\n%s", diff)
	}
}

func testClientVersions(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	if v := save(t, st, nil, c)[0]; v != 1 {
		t.Fatalf("first save: version %d, want 1", v)
	}
	c.Specialist = "second"
	if v := resave(t, st, nil, c, 1); v != 2 {
		t.Fatalf("second save: version %d, want 2", v)
	}

	stale := *c
	stale.Specialist = "lost update"
	_, err := st.SaveClients(ctx, []store.Stored{{Client: &stale, Version: 1}}, nil)
	wantErrIs(t, "save at a stale version", err, store.ErrConflict)
	_, err = st.SaveClients(ctx, []store.Stored{{Client: &stale, Version: 3}}, nil)
	wantErrIs(t, "save at a future version", err, store.ErrConflict)
	_, err = st.SaveClients(ctx, []store.Stored{{Client: &stale, Version: 0}}, nil)
	wantErrIs(t, "save of an existing client as new", err, store.ErrConflict)
	_, err = st.SaveClients(ctx, []store.Stored{{Client: minimalClient("ghost"), Version: 4}}, nil)
	wantErrIs(t, "save of a missing client at a version", err, store.ErrConflict)

	got, v, err := st.GetClient(ctx, "c1")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if v != 2 || got.Specialist != "second" {
		t.Errorf("after rejected saves: version %d, specialist %q; want 2, %q", v, got.Specialist, "second")
	}
	_, _, err = st.GetClient(ctx, "ghost")
	wantErrIs(t, "GetClient of a missing client", err, store.ErrNotFound)
	if v := resave(t, st, nil, c, 2); v != 3 {
		t.Errorf("third save: version %d, want 3", v)
	}
}

// testConcurrentSavesOfOneClient has goroutines read-modify-write one
// client: every save either wins or gets ErrConflict (never another error,
// such as a busy database), and no win is lost.
func testConcurrentSavesOfOneClient(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, []string{"a"}, minimalClient("c1"))
	const workers, savesEach = 6, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for done := 0; done < savesEach; {
				c, v, err := st.GetClient(ctx, "c1")
				if err != nil {
					t.Errorf("worker %d: GetClient: %v", w, err)
					return
				}
				c.Specialist = fmt.Sprintf("worker %d save %d", w, done)
				_, err = st.SaveClients(ctx, []store.Stored{{Client: c, Version: v}}, []string{"a"})
				switch {
				case err == nil:
					done++
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("worker %d: SaveClients: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	_, v, err := st.GetClient(ctx, "c1")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if want := store.Version(1 + workers*savesEach); v != want {
		t.Errorf("version after concurrent saves = %d, want %d", v, want)
	}
	wantDepth(t, st, map[string]int{"a": 1})
}

// testSaveIsAtomic fails a five-client save on its third client and checks
// that nothing of it was written: no client, no version, no outbox item, no
// generation bump.
func testSaveIsAtomic(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, nil, minimalClient("c3"))
	save(t, st, []string{"a"}, minimalClient("p5"))
	// Hold p5's item: if a failed save bumped its generation, Complete
	// would leave it pending.
	held := leaseOne(t, st, "a", "w1")

	for _, bad := range []store.Stored{
		{Client: richClient("c3"), Version: 0}, // exists
		{Client: richClient("c3"), Version: 7}, // stale
	} {
		batch := []store.Stored{
			{Client: minimalClient("c1")},
			{Client: minimalClient("c2")},
			bad,
			{Client: minimalClient("c4")},
			{Client: minimalClient("p5"), Version: 1},
		}
		_, err := st.SaveClients(ctx, batch, []string{"a", "b"})
		wantErrIs(t, fmt.Sprintf("save with c3 at version %d", bad.Version), err, store.ErrConflict)
		noPatientData(t, "conflicting save", err)
		for _, id := range []string{"c1", "c2", "c4"} {
			_, _, err := st.GetClient(ctx, id)
			wantErrIs(t, "GetClient("+id+") after a failed save", err, store.ErrNotFound)
		}
		for _, id := range []string{"c3", "p5"} {
			c, v, err := st.GetClient(ctx, id)
			if err != nil {
				t.Fatalf("GetClient(%s): %v", id, err)
			}
			if v != 1 || c.Specialist != "" {
				t.Errorf("%s after a failed save: version %d, specialist %q; want 1, unchanged", id, v, c.Specialist)
			}
		}
		wantDepth(t, st, map[string]int{"a": 1})
	}
	if err := st.Complete(ctx, held); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{})
}

func testSaveRejectsBadInput(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	noID := minimalClient("")
	for name, tc := range map[string]struct {
		clients     []store.Stored
		connections []string
	}{
		"nil client":       {clients: []store.Stored{{Client: minimalClient("ok")}, {}}},
		"empty id":         {clients: []store.Stored{{Client: noID}}},
		"duplicate id":     {clients: []store.Stored{{Client: minimalClient("d")}, {Client: minimalClient("d")}}},
		"negative version": {clients: []store.Stored{{Client: minimalClient("n"), Version: -1}}},
		"empty connection": {clients: []store.Stored{{Client: minimalClient("e")}}, connections: []string{"a", ""}},
		"NaN hours": {clients: []store.Stored{{Client: func() *ips.Client {
			c := richClient("nan")
			c.Jobs[0].HoursPerWeek = math.NaN()
			return c
		}()}}},
	} {
		_, err := st.SaveClients(ctx, tc.clients, tc.connections)
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: SaveClients error %v, want an input error", name, err)
		}
		// Argument mistakes are ErrInvalid, so the API answers 400; a value
		// JSON cannot hold (NaN) is caught earlier, by caseload validation.
		if name != "NaN hours" && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: SaveClients error %v, want store.ErrInvalid", name, err)
		}
		noPatientData(t, name, err)
	}
	list, err := st.ListClients(ctx, "", 100)
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("rejected saves wrote %d clients", len(list))
	}
	wantDepth(t, st, map[string]int{})

	vs, err := st.SaveClients(ctx, nil, []string{"a"})
	if err != nil || len(vs) != 0 {
		t.Errorf("SaveClients(nothing) = %v, %v; want no versions, no error", vs, err)
	}
	wantDepth(t, st, map[string]int{})
}

// testListClientsPages pages through generated clients and through ids
// that sort differently under byte order and under a natural-language
// collation: both implementations page in byte order.
func testListClientsPages(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	clients := synth.Generate(rand.New(rand.NewPCG(7, 11)), 23).Clients
	for _, id := range []string{"A", "B", "a", "a-b", "a_b", "a b", "Z9", "z", "é"} {
		clients = append(clients, minimalClient(id))
	}
	if n, err := st.CountClients(ctx); err != nil || n != 0 {
		t.Errorf("CountClients of an empty store = %d, %v; want 0", n, err)
	}
	vs := save(t, st, nil, clients...)
	if n, err := st.CountClients(ctx); err != nil || n != len(clients) {
		t.Errorf("CountClients = %d, %v; want %d", n, err, len(clients))
	}
	want := map[string]*ips.Client{}
	var ids []string
	for i, c := range clients {
		if vs[i] != 1 {
			t.Errorf("version of %s = %d, want 1", c.ID, vs[i])
		}
		want[c.ID] = c
		ids = append(ids, c.ID)
	}
	slices.Sort(ids) // Go compares strings bytewise

	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > len(clients) {
			t.Fatalf("ListClients does not stop: ids so far %q", got)
		}
		page, err := st.ListClients(ctx, after, 6)
		if err != nil {
			t.Fatalf("ListClients(%q): %v", after, err)
		}
		if len(page) > 6 {
			t.Fatalf("ListClients(%q, 6) returned %d clients", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			got = append(got, p.Client.ID)
			if p.Version != 1 {
				t.Errorf("%s: version %d, want 1", p.Client.ID, p.Version)
			}
			if diff := cmp.Diff(want[p.Client.ID], p.Client, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s (-saved +listed):\n%s", p.Client.ID, diff)
			}
		}
		after = page[len(page)-1].Client.ID
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("ids in paging order (-want +got):\n%s", diff)
	}
	if _, err := st.ListClients(ctx, "", 0); err == nil {
		t.Error("ListClients with limit 0: no error")
	}
}

func testErrorsArePatientFree(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := richClient("c1")
	save(t, st, []string{"a"}, c)
	_, err := st.SaveClients(ctx, []store.Stored{{Client: c}}, []string{"a"})
	noPatientData(t, "save of an existing client", err)
	_, err = st.SaveClients(ctx, []store.Stored{{Client: c, Version: 9}}, nil)
	noPatientData(t, "stale save", err)
	_, _, err = st.GetClient(ctx, richMRN)
	noPatientData(t, "get by a patient identifier", err)
	_, err = st.LedgerGet(ctx, "a", "urn:oid:2.16.840.1.113883.3.9999.1|"+richMRN)
	noPatientData(t, "ledger get", err)
	_, err = st.LedgerByResource(ctx, "a", "Patient", richMRN)
	noPatientData(t, "ledger by resource", err)
	twin := richClient("c2")
	_, err = st.SaveClients(ctx, []store.Stored{{Client: twin}}, nil)
	noPatientData(t, "save of a second client for the same patient", err)
	_, err = st.ClientByPatient(ctx, "urn:oid:2.16.840.1.113883.3.9999.1", richMRN+"0")
	noPatientData(t, "client by an unknown patient", err)
}

// testOnePatientOneClient: a patient is at most one client, whatever path
// the second client takes (a new save, an update, one batch), and the
// refused save stores nothing.
func testOnePatientOneClient(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	a := minimalClient("a")
	b := minimalClient("b")
	save(t, st, []string{"x"}, a, b)

	got, err := st.ClientByPatient(ctx, a.Patient.System, a.Patient.Value)
	if err != nil {
		t.Fatalf("ClientByPatient: %v", err)
	}
	if got.Client.ID != "a" || got.Version != 1 || got.UpdatedAt.IsZero() {
		t.Errorf("ClientByPatient = %s at %d (updated %v), want a at 1 with a time", got.Client.ID, got.Version, got.UpdatedAt)
	}
	if _, err := st.ClientByPatient(ctx, "urn:other", a.Patient.Value); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByPatient with another system: %v, want ErrNotFound", err)
	}

	// A new client for a's patient.
	dup := minimalClient("c")
	dup.Patient = a.Patient
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: dup}}, []string{"x"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second client for one patient: %v, want ErrConflict", err)
	}
	if _, _, err := st.GetClient(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused client was stored: %v", err)
	}
	// b changed to a's patient.
	b2 := minimalClient("b")
	b2.Patient = a.Patient
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: b2, Version: 1}}, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("update taking another client's patient: %v, want ErrConflict", err)
	}
	if _, v, err := st.GetClient(ctx, "b"); err != nil || v != 1 {
		t.Errorf("b after the refused update: version %d, %v; want 1", v, err)
	}
	// Two new clients for one patient in one batch: neither is stored.
	d, e := minimalClient("d"), minimalClient("e")
	e.Patient = d.Patient
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: d}, {Client: e}}, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("one batch, one patient twice: %v, want ErrConflict", err)
	}
	if _, err := st.ClientByPatient(ctx, d.Patient.System, d.Patient.Value); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a client of the refused batch was stored: %v", err)
	}
	// A client may be re-saved with its own identifier, and an identifier
	// given up (corrected) may be taken by another client.
	a.Patient.Value = "MRN-corrected"
	if v := resave(t, st, nil, a, 1); v != 2 {
		t.Errorf("a re-saved at version %d, want 2", v)
	}
	b2.Patient = minimalClient("a").Patient
	if v := resave(t, st, nil, b2, 1); v != 2 {
		t.Errorf("b took the freed identifier at version %d, want 2", v)
	}
	got, err = st.ClientByPatient(ctx, b2.Patient.System, b2.Patient.Value)
	if err != nil || got.Client.ID != "b" {
		t.Errorf("ClientByPatient after the move: %v, %v; want b", got.Client, err)
	}
}
