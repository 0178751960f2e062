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

	drpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/document_reference_go_proto"
)

// Chart notes on an EHR that creates DocumentReferences but does not
// update them (plan.NotesCreatedOnly). A final note is never rewritten
// anyway; here it cannot be. Each content of the note is a note of its
// own, numbered in the client's sequence: identifier
// {client}/{n}-{digest} (mappings.PlanNoteVersionKey, NoteDigest), final,
// and from the second on replacing the newest before it (relatesTo
// replaces, by the EHR id the ledger holds). The newest is current; a
// reader of the chart follows the replaces links back.
//
// The ledger row "plan-note-latest|{client}" names the newest note the EHR
// is known to hold (its record, "{n}-{digest}"); it moves only once a
// note's write is known to have landed (noteWritten), so a push whose
// answer was lost sends the same note again (found by its identifier,
// not made twice). The same content as the newest is no new note; a plan
// changed back to an earlier content is (a new number), so the newest
// note is always the plan as it is.

// noteVersion is the note one push writes where notes are created only.
type noteVersion struct {
	key mappings.Key
	// record is key.Record, "{n}-{digest}"; newest is the record the
	// ledger names as the newest note ("" for none yet).
	record, newest string
	// replaces is the literal reference to the newest note, for
	// relatesTo; "" when key is the newest itself, or there is none.
	replaces  string
	canonical *drpb.DocumentReference
}

// notePointerKey is the ledger key naming a client's newest note.
func notePointerKey(clientID string) string { return "plan-note-latest|" + clientID }

// nextNote works out the note a push of c writes: the newest note when
// its content is the same, else the next in the sequence, replacing it.
// canon maps without EHR ids (see pushClient). Only store errors are
// returned.
func (e *Engine) nextNote(ctx context.Context, conn *Connection, c *ips.Client, canon mappings.Options) (noteVersion, error) {
	cn := mappings.PlanNote(c, canon)
	cn.Date = nil // the write time is not content (withoutWriteTime)
	digest := mappings.NoteDigest(cn)
	var nv noteVersion
	ptr, err := e.Store.LedgerGet(ctx, conn.Name, notePointerKey(c.ID))
	switch {
	case err == nil:
		nv.newest = ptr.ContentHash
	case !errors.Is(err, store.ErrNotFound):
		return nv, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	n := 0
	if nv.newest != "" {
		num, d, _ := strings.Cut(nv.newest, "-")
		n, _ = strconv.Atoi(num)
		if d == digest {
			nv.record = nv.newest
		}
	}
	if nv.record == "" {
		nv.record = strconv.Itoa(n+1) + "-" + digest
		if nv.newest != "" {
			le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(canon.PlanNoteVersionKey(c, nv.newest)))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nv, fmt.Errorf("%w: ledger: %w", errStore, err)
			}
			if le.ResourceID != "" {
				nv.replaces = "DocumentReference/" + le.ResourceID
			}
		}
	}
	nv.key = canon.PlanNoteVersionKey(c, nv.record)
	mappings.AsNoteVersion(cn, nv.key, "")
	nv.canonical = cn
	return nv, nil
}

// noteWritten moves the client's pointer to the note just written, once
// the ledger knows the EHR holds it. Only store errors are returned.
func (e *Engine) noteWritten(ctx context.Context, conn *Connection, clientID string, nv noteVersion) error {
	if nv.record == nv.newest {
		return nil
	}
	le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(nv.key))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (le.ResourceID == "" || le.ContentHash == "")) {
		return nil // not known to have landed: the next push sends it again
	}
	if err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	// Not a resource of its own: no type or id, so that a look-up by
	// resource never finds it.
	ptr := store.LedgerEntry{Connection: conn.Name, Key: notePointerKey(clientID), ClientID: clientID, ContentHash: nv.record, UpdatedAt: e.now()}
	if err := e.Store.LedgerPut(ctx, ptr); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}
