package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// canTransact reports whether a client's resources may go to the EHR in one
// transaction Bundle: the EHR declares transaction, and every type written
// is updated conditionally by identifier, so the Bundle is idempotent (safe
// to send again after a lost answer) and needs no ids from the ledger.
func (e *Engine) canTransact(conn *Connection, entries []mappings.Entry) bool {
	if conn.Plan.Bundles != "transaction" || len(entries) < 2 {
		return false
	}
	for _, en := range entries {
		rp := conn.Plan.Type(en.ResourceType)
		if rp == nil || rp.Idempotency != plan.ConditionalUpdate || !conn.Plan.Allows(en.ResourceType, "update") {
			return false
		}
	}
	return true
}

// txEntry is one changed resource of a transaction.
type txEntry struct {
	en    mappings.Entry
	hash  string
	le    store.LedgerEntry
	known bool
}

// pushTransaction writes the client's changed resources in one transaction
// Bundle of conditional updates. Resources refer to each other by their
// urn:uuid fullUrls, which the EHR resolves inside the Bundle. done is false
// when the EHR refused the Bundle (a stale If-Match, a resource it rejects,
// an answer the adapter cannot read): the caller then pushes one resource at
// a time, which settles conflicts and names the refused resource. Store
// errors are returned.
func (e *Engine) pushTransaction(ctx context.Context, conn *Connection, entries []mappings.Entry, canonical map[mappings.Key]*bpb.ContainedResource, clientID string) (s PushSummary, done bool, err error) {
	var changed []txEntry
	for _, en := range entries {
		can := canonical[en.Key]
		if can == nil {
			can = en.Resource
		}
		hash, err := contentHash(can)
		if err != nil {
			return s, false, nil
		}
		le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(en.Key))
		known := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return s, false, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		if known && le.ContentHash == hash {
			continue
		}
		changed = append(changed, txEntry{en: en, hash: hash, le: le, known: known})
	}
	if len(changed) < 2 {
		// Nothing, or one resource: the single request says more.
		return s, false, nil
	}
	body, err := transactionBundle(conn, changed)
	if err != nil {
		return s, false, nil
	}
	resp, err := conn.EHR.Transaction(ctx, body, true)
	if err != nil {
		if ctx.Err() != nil {
			return s, false, ctx.Err()
		}
		e.log().InfoContext(ctx, "transaction refused; pushing resources one by one", "connection", conn.Name, "error_kind", reasonOf(err))
		return s, false, nil
	}
	results, ok := transactionResults(resp.Body, len(changed))
	if !ok {
		e.log().InfoContext(ctx, "transaction answer unreadable; pushing resources one by one", "connection", conn.Name)
		return s, false, nil
	}
	for i, ch := range changed {
		id, vid := ehr.ParseLocation(results[i].Location)
		if v := ehr.VersionFromETag(results[i].Etag); v != "" {
			vid = v
		}
		if id == "" && ch.known {
			id = ch.le.ResourceID
		}
		if err := e.Store.LedgerPut(ctx, store.LedgerEntry{
			Connection: conn.Name, Key: ledgerKey(ch.en.Key), ClientID: clientID, ResourceType: ch.en.ResourceType,
			ResourceID: id, VersionID: vid, ContentHash: ch.hash, UpdatedAt: e.now(),
		}); err != nil {
			return s, false, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		s.Written++
		e.record(ctx, conn.Name, ch.en.ResourceType, telemetry.OutcomeWritten, nil)
	}
	// The unchanged rest (the one-by-one path counts its own).
	s.Unchanged += len(entries) - len(changed)
	for _, en := range entries {
		if !containsKey(changed, en.Key) {
			e.record(ctx, conn.Name, en.ResourceType, telemetry.OutcomeUnchanged, nil)
		}
	}
	return s, true, nil
}

func containsKey(changed []txEntry, k mappings.Key) bool {
	for _, ch := range changed {
		if ch.en.Key == k {
			return true
		}
	}
	return false
}

// transactionBundle builds the Bundle: PUT Type?identifier=… per resource,
// If-Match with the ledger's version where the plan uses it.
func transactionBundle(conn *Connection, changed []txEntry) ([]byte, error) {
	type request struct {
		Method  string `json:"method"`
		URL     string `json:"url"`
		IfMatch string `json:"ifMatch,omitempty"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, ch := range changed {
		raw, err := mappings.MarshalCompact(ch.en.Resource)
		if err != nil {
			return nil, err
		}
		req := request{Method: "PUT", URL: ch.en.Key.ConditionalURL(ch.en.ResourceType)}
		if ch.known && ch.le.VersionID != "" && conn.Plan.Type(ch.en.ResourceType).Concurrency == plan.IfMatch {
			req.IfMatch = `W/"` + ch.le.VersionID + `"`
		}
		b.Entry = append(b.Entry, entry{FullURL: ch.en.Key.FullURL(), Resource: raw, Request: req})
	}
	return json.Marshal(b)
}

type entryResponse struct {
	Status   string `json:"status"`
	Location string `json:"location"`
	Etag     string `json:"etag"`
}

// transactionResults reads a transaction-response Bundle: one successful
// response per entry, in order.
func transactionResults(body []byte, n int) ([]entryResponse, bool) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Response *entryResponse `json:"response"`
		} `json:"entry"`
	}
	if json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" || len(b.Entry) != n {
		return nil, false
	}
	out := make([]entryResponse, n)
	for i, en := range b.Entry {
		if en.Response == nil || !strings.HasPrefix(en.Response.Status, "2") {
			return nil, false
		}
		out[i] = *en.Response
	}
	return out, true
}
