package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// This file is the Provenance that accompanies each write, where the plan
// says the EHR takes one (plan.ResourcePlan.WrittenAlongside): one per
// content the adapter writes of a record, identified by the record's key
// and the content hash (mappings.ProvenanceKey), created once and never
// updated.
//
// In a transaction, each changed resource's Provenance rides in the same
// Bundle as a conditional create by its identity tag, so the Bundle stays
// safe to resend; the ledger records it with the resource. Otherwise a
// Provenance is owed from the moment the adapter knows its write is in the
// EHR: the answer to the write (or to a Bundle entry) was read, or a write
// whose answer was lost is found there later and matches what was sent.
// The owed Provenance is a ledger row under its identity without an EHR id
// (its JSON kept in the row, so every retry sends the same body), written
// right after the write and then marked with the id the EHR gave it.
//
// A failed Provenance never fails or repeats the resource's own write: the
// client's other resources are still written, the write stays recorded,
// and the outbox item fails afterwards with a "provenance" reason, so it is
// retried on the connection's schedule like any failed item; the retry
// finds the resources unchanged and sends only the Provenances still owed
// (store.LedgerPending). A resent Provenance makes no second one: a
// conditional create finds the first; without one, the search by tag or by
// target runs first, and a plain create whose answer was lost is not sent
// again until CreateSettle has passed (the same rule as other plain
// creates). Consent withdrawn stops them with everything else.

// owedFunc records that the EHR holds the adapter's write of content hash
// as id (and version, when known): the write's Provenance is owed.
type owedFunc func(ctx context.Context, id, version, hash string) error

// provenanceError is a Provenance that could not be written. Its reason is
// the cause's, marked as the Provenance's.
type provenanceError struct{ err error }

func (e *provenanceError) Error() string { return "provenance: " + e.err.Error() }
func (e *provenanceError) Unwrap() error { return e.err }

// provenanceMapper maps the Provenance of one write of a client's record.
type provenanceMapper func(w mappings.Written) ([]byte, error)

func provenanceOf(c *ips.Client, o mappings.Options) provenanceMapper {
	return func(w mappings.Written) ([]byte, error) {
		return mappings.MarshalCompact(wrap(mappings.Provenance(c, w, o)))
	}
}

// targetReference is what a Provenance written after its resource points
// at: the version the write made when the EHR said, else the resource.
func targetReference(typ, id, version string) string {
	if version == "" {
		return typ + "/" + id
	}
	return typ + "/" + id + "/_history/" + version
}

// owe records the Provenance of the adapter's write of record k (type typ)
// as owed, unless the ledger knows it already (written, or owed with its
// earlier attempts). Content written again after something else (A, B,
// then A) finds the Provenance of its first write and owes none.
func (e *Engine) owe(ctx context.Context, conn *Connection, prov provenanceMapper, clientID string, k mappings.Key, typ, id, version, hash string) error {
	if !conn.Plan.WritesProvenance() || id == "" || hash == "" {
		return nil
	}
	w := mappings.Written{Key: k, ResourceType: typ, Reference: targetReference(typ, id, version), ContentHash: hash, Recorded: e.now()}
	lk := ledgerKey(mappings.ProvenanceKey(w))
	switch _, err := e.Store.LedgerGet(ctx, conn.Name, lk); {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	body, err := prov(w)
	if err != nil {
		return &pushError{msg: "push: encode Provenance"}
	}
	if err := e.Store.LedgerPut(ctx, store.LedgerEntry{
		Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: "Provenance",
		VersionID: version, ContentHash: hash, UpdatedAt: e.now(), Base: body,
	}); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}

// sendOwedProvenances writes the client's owed Provenances, oldest first,
// and reports how many the EHR now holds. It stops at the first failure,
// returned as a *provenanceError (store errors stay store errors).
func (e *Engine) sendOwedProvenances(ctx context.Context, conn *Connection, clientID string) (int, error) {
	owed, err := e.Store.LedgerPending(ctx, conn.Name, clientID, "Provenance")
	if err != nil {
		return 0, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	n := 0
	for _, row := range owed {
		if len(row.Base) == 0 {
			continue // not one this engine owes (no body to send)
		}
		err := e.sendProvenance(ctx, conn, row)
		if errors.Is(err, errStore) {
			return n, err
		}
		if err != nil {
			e.record(ctx, conn.Name, "Provenance", telemetry.OutcomeFailed, err)
			e.log().WarnContext(ctx, "provenance failed", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err))
			return n, &provenanceError{err: err}
		}
		e.record(ctx, conn.Name, "Provenance", telemetry.OutcomeWritten, nil)
		n++
	}
	return n, nil
}

// sendProvenance writes one owed Provenance the way the plan says and
// records the id the EHR gave it.
func (e *Engine) sendProvenance(ctx context.Context, conn *Connection, row store.LedgerEntry) error {
	rp := conn.Plan.Type("Provenance")
	if rp == nil || !conn.Plan.WritesProvenance() {
		return nil
	}
	var id string
	switch rp.Idempotency {
	case plan.ConditionalCreate:
		resp, err := conn.EHR.Create(ctx, "Provenance", row.Base, mappings.ProvenanceCriteria(row.Key))
		if err != nil {
			return err
		}
		id = resp.ResourceID
	case plan.SearchByTag, plan.SearchByTarget:
		found, err := e.searchProvenance(ctx, conn, rp, row)
		if err != nil {
			return err
		}
		id = found
		if id == "" {
			// A plain create cannot be repeated safely: an earlier one
			// whose answer was lost may still land (see CreateSettle).
			var last store.Attempt
			for _, a := range row.Attempted {
				if a.At.After(last.At) {
					last = a
				}
			}
			if wait := e.createSettle(conn) - e.now().Sub(last.At); !last.At.IsZero() && wait > 0 {
				return &pushError{msg: "push: an earlier create of Provenance may still land; waiting before creating again", wait: wait}
			}
			row.Attempted = store.WithAttempt(row.Attempted, store.Attempt{Hash: row.ContentHash, At: e.now()})
			if err := e.Store.LedgerPut(ctx, row); err != nil {
				return fmt.Errorf("%w: ledger: %w", errStore, err)
			}
			resp, err := conn.EHR.Create(ctx, "Provenance", row.Base, "")
			if err != nil {
				return err
			}
			id = resp.ResourceID
		}
	default:
		return nil
	}
	if id == "" {
		// The EHR did not say which resource it is: the row stays owed,
		// and the next attempt finds it (conditionally or by search).
		return &pushError{msg: "push: the EHR answered a Provenance create without its id"}
	}
	row.ResourceID, row.Base, row.Attempted, row.UpdatedAt = id, nil, nil, e.now()
	if err := e.Store.LedgerPut(ctx, row); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}

// searchProvenance looks for an owed Provenance in the EHR, by its
// identity tag or by the resource it targets, and matches the tag here
// either way; it returns the EHR's id, or "" when it is not there.
func (e *Engine) searchProvenance(ctx context.Context, conn *Connection, rp *plan.ResourcePlan, row store.LedgerEntry) (string, error) {
	q := url.Values{}
	if name, ok := rp.Searches("_tag"); ok && rp.Idempotency == plan.SearchByTag {
		q.Set(name, row.Key)
	} else if name, ok := rp.Searches("target"); ok {
		var body struct {
			Target []struct {
				Reference string `json:"reference"`
			} `json:"target"`
		}
		if json.Unmarshal(row.Base, &body) != nil || len(body.Target) == 0 || body.Target[0].Reference == "" {
			return "", &pushError{msg: "push: an owed Provenance has no target"}
		}
		q.Set(name, body.Target[0].Reference)
	} else {
		return "", &pushError{msg: "push: Provenance cannot be searched"}
	}
	entries, err := conn.EHR.Search(ctx, "Provenance", q)
	if err != nil {
		return "", err
	}
	system, code, _ := strings.Cut(row.Key, "|")
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r struct {
			ID   string `json:"id"`
			Meta struct {
				Tag []struct {
					System string `json:"system"`
					Code   string `json:"code"`
				} `json:"tag"`
			} `json:"meta"`
		}
		if json.Unmarshal(en.Resource, &r) != nil || r.ID == "" {
			continue
		}
		for _, t := range r.Meta.Tag {
			if t.System == system && t.Code == code {
				return r.ID, nil
			}
		}
	}
	return "", nil
}

// txProvenance is the Provenance of one changed resource of a transaction.
type txProvenance struct {
	key  mappings.Key // the Provenance's identity
	body []byte
	of   mappings.Key // the resource's record
	hash string       // the resource's content hash
}

// transactionProvenances maps the Provenance of each changed resource of a
// transaction, pointing at the resource's urn:uuid fullUrl, where the EHR
// takes Provenance by conditional create (which keeps the Bundle safe to
// resend); nil otherwise: the Provenances are then owed once the Bundle's
// answer is read.
func (e *Engine) transactionProvenances(conn *Connection, kind string, prov provenanceMapper, changed []txEntry) ([]txProvenance, error) {
	rp := conn.Plan.Type("Provenance")
	if kind != "transaction" || prov == nil || !conn.Plan.WritesProvenance() || rp.Idempotency != plan.ConditionalCreate {
		return nil, nil
	}
	out := make([]txProvenance, 0, len(changed))
	for _, ch := range changed {
		w := mappings.Written{Key: ch.en.Key, ResourceType: ch.en.ResourceType, Reference: ch.en.Key.FullURL(), ContentHash: ch.hash, Recorded: e.now()}
		body, err := prov(w)
		if err != nil {
			return nil, err
		}
		out = append(out, txProvenance{key: mappings.ProvenanceKey(w), body: body, of: ch.en.Key, hash: ch.hash})
	}
	return out, nil
}

// recordTransactionProvenance records a Provenance a transaction wrote
// (created, or found by its conditional create) with the EHR's id.
func (e *Engine) recordTransactionProvenance(ctx context.Context, conn *Connection, clientID string, p txProvenance, result entryResponse) (bool, error) {
	id, _ := ehr.ParseLocation(result.Location)
	if id == "" {
		id = result.resourceID
	}
	if id == "" {
		return false, nil // owed instead: see owe
	}
	if err := e.Store.LedgerPut(ctx, store.LedgerEntry{
		Connection: conn.Name, Key: ledgerKey(p.key), ClientID: clientID, ResourceType: "Provenance",
		ResourceID: id, ContentHash: p.hash, UpdatedAt: e.now(),
	}); err != nil {
		return false, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return true, nil
}
