package syncer

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ledgerReads counts the ledger reads a push makes: single reads of a
// record's row (keys of the client's records, not the patient's or the
// treatment plan's lookups) and reads of many records' rows at once.
type ledgerReads struct {
	store.Store
	records map[string]bool // the ledger keys of the caseload's records
	mu      sync.Mutex
	single  int
	many    int
}

func (l *ledgerReads) LedgerGet(ctx context.Context, conn, key string) (store.LedgerEntry, error) {
	l.mu.Lock()
	if l.records[key] {
		l.single++
	}
	l.mu.Unlock()
	return l.Store.LedgerGet(ctx, conn, key)
}

func (l *ledgerReads) LedgerGetMany(ctx context.Context, conn string, keys []string) (map[string]store.LedgerEntry, error) {
	l.mu.Lock()
	for _, k := range keys {
		if l.records[k] {
			// A read of records' rows (not the joint lookups' reads of
			// the patients' and treatment plans' rows, see lookahead.go).
			l.many++
			break
		}
	}
	l.mu.Unlock()
	return l.Store.LedgerGetMany(ctx, conn, keys)
}

// TestPushReadsAClientsLedgerRowsAtOnce: a push reads the ledger rows of a
// client's records in one query, not one by one (issue 13: a query per
// resource was a third of the adapter's CPU). A pass over unchanged
// clients reads no record's row singly; a pass that writes reads singly
// only the rows it wrote (the attempt recorded before each write is joined
// with the ledger's, freshAttempts), and what it wrote is what the next
// pass finds: nothing to write.
func TestPushReadsAClientsLedgerRowsAtOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	// One client at a time: a push held for a record another client of
	// its lease writes reads its rows again (see joint.go).
	r.engine.leaseBatch = 1
	reads := &ledgerReads{Store: r.store, records: map[string]bool{}}
	o := r.conn.Mapping
	for _, c := range consenting(r.cl) {
		for _, en := range mappings.ClientEntries(c, o) {
			reads.records[ledgerKey(en.Key)] = true
		}
	}
	r.engine.Store = reads
	r.enqueueAll(t)
	first, err := r.engine.PushOnce(ctx)
	if err != nil || first.Failed != 0 || first.Written == 0 {
		t.Fatalf("first push: %+v %v", first, err)
	}
	n := len(consenting(r.cl))
	// Each written resource: its attempt, then its answer, each joined
	// with the row as it is now (freshAttempts); nothing else singly.
	if reads.many != n || reads.single > 2*first.Written {
		t.Errorf("first push: %d reads at once (want %d, one per client), %d single reads of records' rows for %d written (want at most 2 each)", reads.many, n, reads.single, first.Written)
	}

	reads.many, reads.single = 0, 0
	r.enqueueAll(t)
	second, err := r.engine.PushOnce(ctx)
	if err != nil || second.Written != 0 || second.Failed != 0 {
		t.Fatalf("second push: %+v %v; want nothing written", second, err)
	}
	if reads.many != n || reads.single != 0 {
		t.Errorf("push of unchanged clients: %d reads at once (want %d), %d single reads of records' rows (want 0)", reads.many, n, reads.single)
	}
}

// TestPushLedgerForgetsWhatThePushWrites: a row the push writes is read
// from the store afterwards, never from the rows read before; another
// connection's rows and keys not read at once go to the store.
func TestPushLedgerForgetsWhatThePushWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openTestStore(t)
	put := func(s store.Store, conn, key, id string) {
		t.Helper()
		if err := s.LedgerPut(ctx, store.LedgerEntry{Connection: conn, Key: key, ClientID: "c1", ResourceType: "Goal", ResourceID: id,
			Attempted: []store.Attempt{{Hash: "h1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	put(st, "a", "k1", "1")
	put(st, "b", "k1", "b1")
	l := &pushLedger{Store: st, conn: "a"}
	e := &Engine{Store: l}
	if err := e.prefetchLedger(ctx, []string{"k1", "k2"}); err != nil {
		t.Fatal(err)
	}
	get := func(conn, key string) string {
		t.Helper()
		row, err := e.ledgerRow(ctx, conn, key)
		if err != nil {
			return err.Error()
		}
		return row.ResourceID
	}
	// Another process writes both rows after the push read them: the
	// push's first reads see the rows as read; other reads see the store.
	put(st, "a", "k1", "2")
	put(st, "a", "k2", "3")
	put(st, "a", "k3", "4")
	if got := get("a", "k1"); got != "1" {
		t.Errorf("k1 = %q, want the row read at once", got)
	}
	if got := get("a", "k2"); !strings.Contains(got, store.ErrNotFound.Error()) {
		t.Errorf("k2 = %q, want not found as read at once", got)
	}
	if got := get("a", "k3"); got != "4" {
		t.Errorf("k3 (not read at once) = %q, want the store's", got)
	}
	if got := get("b", "k1"); got != "b1" {
		t.Errorf("k1 on b = %q, want b's row from the store", got)
	}
	if got, err := l.LedgerGet(ctx, "a", "k1"); err != nil || got.ResourceID != "2" {
		t.Errorf("LedgerGet through the push's store = %+v, %v; want the store's row", got, err)
	}
	// A copy: changing it changes nothing read later.
	row, _ := e.ledgerRow(ctx, "a", "k1")
	row.Attempted[0].Hash = "changed"
	if again, _ := e.ledgerRow(ctx, "a", "k1"); again.Attempted[0].Hash != "h1" {
		t.Errorf("a caller's change reached the rows read: %+v", again.Attempted)
	}
	// The push writes k1 and k2: both are read from the store from now on.
	put(l, "a", "k1", "5")
	put(l, "a", "k2", "6")
	if got := get("a", "k1"); got != "5" {
		t.Errorf("k1 after the push wrote it = %q, want 5", got)
	}
	if got := get("a", "k2"); got != "6" {
		t.Errorf("k2 after the push wrote it = %q, want 6", got)
	}
}
