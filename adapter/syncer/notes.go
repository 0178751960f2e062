package syncer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// Records the EHR creates but does not update: the chart note where
// DocumentReference is created only (plan.NotesCreatedOnly), and the
// plan's QuestionnaireResponse where QuestionnaireResponse is. A final
// note is never rewritten anyway; here neither can be. Each content is a
// record of its own, numbered in the client's sequence: record
// "{n}-{digest}" (mappings.PlanNoteVersionKey with NoteDigest,
// PlanResponseKey with ResponseDigest). A note from the second on
// replaces the newest before it (relatesTo replaces, by the EHR id the
// ledger holds); a response is simply the newest by its authored time. A
// reader of the chart takes the newest as the plan.
//
// The ledger row named by the sequence's pointer ("plan-note-latest|{client}",
// "plan-response-latest|{client}") holds the newest record the EHR is known
// to hold; it moves only once a record's write is known to have landed
// (versionWritten), so a push whose answer was lost sends the same record
// again (found by its identifier, not made twice). The same content as the
// newest is no new record; a plan changed back to an earlier content is (a
// new number), so the newest is always the plan as it is. A digest alone
// would name the earlier record, already written, and leave an older plan
// the newest in the chart.

// sequence is one client's sequence of created-only records of a kind.
type sequence struct {
	pointer string                    // the ledger key naming the newest
	key     func(string) mappings.Key // the key of a record
	typ     string                    // the resource type
}

func noteSequence(o mappings.Options, c *ips.Client) sequence {
	return sequence{"plan-note-latest|" + c.ID, func(r string) mappings.Key { return o.PlanNoteVersionKey(c, r) }, "DocumentReference"}
}

func responseSequence(o mappings.Options, c *ips.Client) sequence {
	return sequence{"plan-response-latest|" + c.ID, func(r string) mappings.Key { return o.PlanResponseKey(c, r) }, "QuestionnaireResponse"}
}

// version is the record of a sequence one push writes.
type version struct {
	key mappings.Key
	// record is key.Record, "{n}-{digest}"; newest is the record the
	// ledger names as the newest ("" for none yet).
	record, newest string
	// replaces is the literal reference to the newest record, when this
	// one is new and the EHR id of the newest is known; else "".
	replaces string
}

// nextVersion works out the record of content digest a push writes: the
// newest when its content is the same, else the next in the sequence. Only
// store errors are returned.
func (e *Engine) nextVersion(ctx context.Context, conn *Connection, seq sequence, digest string) (version, error) {
	var v version
	ptr, err := e.Store.LedgerGet(ctx, conn.Name, seq.pointer)
	switch {
	case err == nil:
		v.newest = ptr.ContentHash
	case !errors.Is(err, store.ErrNotFound):
		return v, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	num, d, _ := strings.Cut(v.newest, "-")
	if v.newest != "" && d == digest {
		v.record, v.key = v.newest, seq.key(v.newest)
		return v, nil
	}
	n, _ := strconv.Atoi(num)
	v.record = strconv.Itoa(n+1) + "-" + digest
	v.key = seq.key(v.record)
	if v.newest != "" {
		le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(seq.key(v.newest)))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return v, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		if le.ResourceID != "" {
			v.replaces = seq.typ + "/" + le.ResourceID
		}
	}
	return v, nil
}

// versionWritten moves the sequence's pointer to the record just written,
// once the ledger knows the EHR holds it. Only store errors are returned.
func (e *Engine) versionWritten(ctx context.Context, conn *Connection, clientID string, seq sequence, v version) error {
	if v.record == v.newest {
		return nil
	}
	le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(v.key))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (le.ResourceID == "" || le.ContentHash == "")) {
		return nil // not known to have landed: the next push sends it again
	}
	if err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	// Not a resource of its own: no type or id, so that a look-up by
	// resource never finds it.
	ptr := store.LedgerEntry{Connection: conn.Name, Key: seq.pointer, ClientID: clientID, ContentHash: v.record, UpdatedAt: e.now()}
	if err := e.Store.LedgerPut(ctx, ptr); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}
