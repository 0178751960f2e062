package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// bundleKind says how a client's resources may go to the EHR together:
// "transaction" when the EHR declares transaction and every type written is
// updated conditionally by identifier (the Bundle is idempotent, safe to
// send again after a lost answer, and needs no ids from the ledger);
// "batch" when the EHR declares batch (and not transaction) and update on
// every type, for updates of resources the ledger knows (PUT Type/id is
// idempotent too; creates still go one by one, each searched for first);
// "" otherwise.
func (e *Engine) bundleKind(conn *Connection, entries []mappings.Entry) string {
	if len(entries) < 2 {
		return ""
	}
	conditional, updatable := true, true
	for _, en := range entries {
		rp := conn.Plan.Type(en.ResourceType)
		if rp == nil || !conn.Plan.Allows(en.ResourceType, "update") {
			updatable = false
		}
		if rp == nil || rp.Idempotency != plan.ConditionalUpdate {
			conditional = false
		}
	}
	switch {
	case conn.Plan.Bundles == "transaction" && conditional && updatable && conn.bundles.allowed("transaction", e.now()):
		return "transaction"
	case conn.Plan.Bundles == "batch" && updatable && conn.bundles.allowed("batch", e.now()):
		return "batch"
	}
	return ""
}

// bundleMemory remembers, per connection, that the EHR refuses the Bundles
// the adapter sends (a server's limit on entries, or on conditional
// entries in one transaction), so that later clients go one by one at once
// instead of each sending a Bundle first. A refusal counts once the
// one-by-one pass then wrote the same resources: it was the Bundle, not
// the content, that the EHR refused. Bundles are tried again after
// bundleRetryAfter, since a limit may be lifted.
type bundleMemory struct {
	mu        sync.Mutex
	suspected map[string]bool      // refused, not yet confirmed by the one-by-one pass
	until     map[string]time.Time // confirmed: no Bundles of this kind until then
}

const bundleRetryAfter = time.Hour

func (b *bundleMemory) allowed(kind string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.until[kind])
}

func (b *bundleMemory) suspect(kind string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.suspected == nil {
		b.suspected = map[string]bool{}
	}
	b.suspected[kind] = true
}

// settled is told how the one-by-one pass after a refused Bundle of kind
// went; it reports whether the refusal is now remembered.
func (b *bundleMemory) settled(kind string, singlesOK bool, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.suspected[kind] {
		return false
	}
	delete(b.suspected, kind)
	if !singlesOK {
		return false
	}
	if b.until == nil {
		b.until = map[string]time.Time{}
	}
	b.until[kind] = now.Add(bundleRetryAfter)
	return true
}

// refusesBundle: the EHR refused the Bundle as such (too large, not
// supported, invalid as a whole), not because it was stale, throttled or
// unreachable.
func refusesBundle(err error) bool {
	return errors.Is(err, ehr.ErrInvalid) || errors.Is(err, ehr.ErrNotAllowed) || errors.Is(err, ehr.ErrOther)
}

// txEntry is one changed resource of a transaction.
type txEntry struct {
	en    mappings.Entry
	base  []byte // the ledger's merge base (goalBase)
	hash  string
	le    store.LedgerEntry
	known bool
}

// pushBundle writes the client's changed resources in one Bundle of kind
// (see bundleKind). In a transaction, resources refer to each other by their
// urn:uuid fullUrls, which the EHR resolves inside the Bundle. done is false
// when the Bundle did not write everything (a stale If-Match, a resource the
// EHR rejects, an answer the adapter cannot read, or, for a batch, a
// resource new to the EHR): the caller then pushes one resource at a time,
// which settles conflicts and names the refused resource; written lists
// what the Bundle did write, for that pass to leave alone. Store errors are
// returned.
//
// Each written resource's Provenance (prov maps it) goes in a transaction
// as a conditional create by its identity tag where the EHR takes that
// (see transactionProvenances); otherwise it is owed once the entry's
// answer is read, and pushClient sends it after the Bundle.
func (e *Engine) pushBundle(ctx context.Context, conn *Connection, kind string, entries []mappings.Entry, canonical map[mappings.Key]*bpb.ContainedResource, clientID string, ver store.Version, prov provenanceMapper) (s PushSummary, written map[mappings.Key]bool, done bool, err error) {
	var changed []txEntry
	for _, en := range entries {
		can := canonical[en.Key]
		if can == nil {
			can = en.Resource
		}
		canonJSON, hash, err := canonicalJSON(can)
		if err != nil {
			return s, nil, false, nil
		}
		le, err := e.ledgerRow(ctx, conn.Name, ledgerKey(en.Key))
		known := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return s, nil, false, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		if known && le.ContentHash == hash {
			continue
		}
		changed = append(changed, txEntry{en: en, base: goalBase(en.ResourceType, canonJSON), hash: hash, le: le, known: known})
	}
	if len(changed) < 2 {
		// Nothing, or one resource: the single request says more.
		return s, nil, false, nil
	}
	// The records this transaction writes, for a joint lease (see joint.go).
	var keys []string
	if e.joint != nil {
		for _, ch := range changed {
			keys = append(keys, ledgerKey(ch.en.Key))
		}
	}
	if kind == "transaction" && e.joint != nil && e.joint.await(ctx, keys) {
		// Another client's transaction of the lease writes one of these
		// records: this push starts again once it is written (see
		// joint.go).
		return s, nil, false, errHeld
	}
	for _, ch := range changed {
		if ch.ifMatch(conn) == "" && sentOnce(conn, ch.en.ResourceType) {
			// A goal's first write, which must not be repeated (see
			// sentOnce), where a transaction is: one by one.
			return s, nil, false, nil
		}
		if ch.known && ch.ifMatch(conn) == "" && conn.Plan.Type(ch.en.ResourceType).Concurrency == plan.IfMatch {
			// A record the EHR may hold under a version the ledger does not
			// know (an answer without one, a lost answer): a conditional
			// PUT without If-Match would overwrite whatever is there. One
			// by one, it is read first.
			return s, nil, false, nil
		}
	}
	if kind == "batch" {
		for _, ch := range changed {
			if !ch.known || ch.le.ResourceID == "" {
				// A create: one by one, each searched for first.
				return s, nil, false, nil
			}
		}
	}
	provs, err := e.transactionProvenances(conn, kind, prov, changed)
	if err != nil {
		return s, nil, false, nil
	}
	body, err := bundleBody(conn, kind, changed, provs)
	if err != nil {
		return s, nil, false, nil
	}
	// What is about to be sent is remembered first (see writeResource).
	for i, ch := range changed {
		if !ch.known {
			// A record new to the ledger: a row without an id yet, so
			// that a Bundle applied late (after its answer was lost) is
			// still recognised as the adapter's.
			changed[i].le = store.LedgerEntry{Connection: conn.Name, Key: ledgerKey(ch.en.Key), ClientID: clientID, ResourceType: ch.en.ResourceType, UpdatedAt: e.now()}
		}
		attempted, err := e.freshAttempts(ctx, conn.Name, ledgerKey(ch.en.Key), changed[i].le.Attempted)
		if err != nil {
			return s, nil, false, err
		}
		changed[i].le.Attempted = store.WithAttempt(attempted, store.Attempt{Hash: ch.hash, At: e.now(), IfMatch: ch.ifMatch(conn)})
		if err := e.Store.LedgerPut(ctx, changed[i].le); err != nil {
			return s, nil, false, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
	}
	for _, ch := range changed {
		if ch.en.ResourceType == "Goal" {
			if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
				return s, nil, false, err
			}
			break
		}
	}
	send := conn.EHR.Transaction
	switch {
	case kind == "batch":
		send = conn.EHR.Batch
	case e.joint != nil:
		// Joined with the other clients of the lease (see joint.go).
		send = func(ctx context.Context, body []byte, _ bool) (*ehr.Response, error) {
			return e.joint.transaction(ctx, body, keys)
		}
	}
	sent := e.now()
	resp, err := send(ctx, body, true)
	if err != nil {
		if ctx.Err() != nil {
			return s, nil, false, ctx.Err()
		}
		e.log().InfoContext(ctx, "bundle refused; pushing resources one by one", "connection", conn.Name, "mode", kind, "error_kind", errorToken(err))
		if refusesBundle(err) {
			conn.bundles.suspect(kind)
		}
		return s, nil, false, nil
	}
	results, ok := bundleResults(resp.Body, len(changed)+len(provs))
	if !ok {
		e.log().InfoContext(ctx, kind+" answer unreadable; pushing resources one by one", "connection", conn.Name)
		return s, nil, false, nil
	}
	done = true
	for i, ch := range changed {
		if !strings.HasPrefix(results[i].Status, "2") {
			// Only a batch answers entry by entry; the one-by-one
			// pass writes this one and says why it is refused.
			done = false
			continue
		}
		if strings.HasPrefix(results[i].Status, "200") && ch.ifMatch(conn) == "" && createsFirst(conn, ch.en.ResourceType) {
			// A conditional create found the goal already there. Unless
			// it holds this content (an earlier write of it that landed
			// late), the one-by-one pass judges it before writing.
			if cur, err := e.currentOf(ctx, conn, ch.en.ResourceType, results[i].raw); errors.Is(err, errStore) {
				return s, nil, false, err
			} else if err != nil || cur.hash != ch.hash {
				done = false
				continue
			}
		}
		// The version: the entry's etag, else a versioned location, else
		// the returned resource's meta.versionId. An EHR may give none of
		// them (FHIR allows it); the ledger then has no version, and pull
		// recognises the content by its hash.
		id, vid := ehr.ParseLocation(results[i].Location)
		if v := ehr.VersionFromETag(results[i].Etag); v != "" {
			vid = v
		}
		if vid == "" {
			vid = results[i].resourceVersion
		}
		if id == "" {
			id = results[i].resourceID
		}
		if id == "" && ch.known {
			id = ch.le.ResourceID
		}
		if err := e.ledgerWritten(ctx, conn, ch.le, ch.en.Key, ch.en.ResourceType, clientID, id, vid, ch.hash, ch.base, resp.EarlierAttemptUnanswered, sent); err != nil {
			return s, nil, false, err
		}
		// Its Provenance: written with it, or owed now.
		recorded := false
		if i < len(provs) {
			if recorded, err = e.recordTransactionProvenance(ctx, conn, clientID, provs[i], results[len(changed)+i]); err != nil {
				return s, nil, false, err
			}
		}
		if recorded {
			s.Provenances++
			e.record(ctx, conn.Name, "Provenance", telemetry.OutcomeWritten, nil)
		} else if err := e.owe(ctx, conn, prov, clientID, ch.en.Key, ch.en.ResourceType, id, vid, ch.hash); err != nil {
			return s, nil, false, err
		}
		s.Written++
		e.record(ctx, conn.Name, ch.en.ResourceType, telemetry.OutcomeWritten, nil)
		if written == nil {
			written = map[mappings.Key]bool{}
		}
		written[ch.en.Key] = true
	}
	if !done {
		return s, written, false, nil
	}
	// The unchanged rest (the one-by-one path counts its own).
	s.Unchanged += len(entries) - len(changed)
	for _, en := range entries {
		if !containsKey(changed, en.Key) {
			e.record(ctx, conn.Name, en.ResourceType, telemetry.OutcomeUnchanged, nil)
		}
	}
	return s, written, true, nil
}

func containsKey(changed []txEntry, k mappings.Key) bool {
	for _, ch := range changed {
		if ch.en.Key == k {
			return true
		}
	}
	return false
}

// bundleBody builds the Bundle: in a transaction PUT Type?identifier=…, in
// a batch PUT Type/id; If-Match with the ledger's version where the plan
// uses it. A goal without a version to send goes in a transaction as a
// conditional create, POST Goal with If-None-Exist, where the EHR takes
// one (see createsFirst). The Provenances (transactions only) follow the
// resources, each a conditional create by its identity tag.
func bundleBody(conn *Connection, kind string, changed []txEntry, provs []txProvenance) ([]byte, error) {
	type request struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfMatch     string `json:"ifMatch,omitempty"`
		IfNoneExist string `json:"ifNoneExist,omitempty"`
	}
	// Written out here rather than by json.Marshal of the whole Bundle,
	// which would check and compact every resource's JSON once more.
	b := make([]byte, 0, 2048*(len(changed)+len(provs)))
	b = append(b, `{"resourceType":"Bundle","type":`...)
	b = appendJSONString(b, kind)
	b = append(b, `,"entry":[`...)
	entry := func(fullURL string, resource []byte, req request) error {
		if b[len(b)-1] != '[' {
			b = append(b, ',')
		}
		b = append(b, '{')
		if fullURL != "" {
			b = append(b, `"fullUrl":`...)
			b = appendJSONString(b, fullURL)
			b = append(b, ',')
		}
		b = append(b, `"resource":`...)
		b = append(b, resource...)
		r, err := json.Marshal(req)
		if err != nil {
			return err
		}
		b = append(b, `,"request":`...)
		b = append(b, r...)
		b = append(b, '}')
		return nil
	}
	for _, ch := range changed {
		fullURL, url := ch.en.Key.FullURL(), ch.en.Key.ConditionalURL(ch.en.ResourceType)
		if kind == "batch" {
			setID(ch.en.Resource, ch.le.ResourceID)
			fullURL, url = "", ch.en.ResourceType+"/"+ch.le.ResourceID
		}
		raw, err := mappings.MarshalCompact(ch.en.Resource)
		if err != nil {
			return nil, err
		}
		req := request{Method: "PUT", URL: url}
		if v := ch.ifMatch(conn); v != "" {
			req.IfMatch = `W/"` + v + `"`
		} else if kind == "transaction" && createsFirst(conn, ch.en.ResourceType) {
			// A first write: a conditional create (see createsFirst).
			req = request{Method: "POST", URL: ch.en.ResourceType, IfNoneExist: "identifier=" + neturl.QueryEscape(ch.en.Key.System()+"|"+ch.en.Key.Value())}
		}
		if err := entry(fullURL, raw, req); err != nil {
			return nil, err
		}
	}
	for _, p := range provs {
		if err := entry(p.key.FullURL(), p.body, request{Method: "POST", URL: "Provenance", IfNoneExist: mappings.ProvenanceCriteria(ledgerKey(p.key))}); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// ifMatch is the version the entry's write is conditioned on, "" for none.
func (ch txEntry) ifMatch(conn *Connection) string {
	if ch.known && ch.le.VersionID != "" && conn.Plan.Type(ch.en.ResourceType).Concurrency == plan.IfMatch {
		return ch.le.VersionID
	}
	return ""
}

type entryResponse struct {
	Status   string `json:"status"`
	Location string `json:"location"`
	Etag     string `json:"etag"`
	// From the entry's resource, when the EHR returns it.
	resourceID, resourceVersion string
	raw                         json.RawMessage
}

// bundleResults reads a transaction- or batch-response Bundle: one response
// per entry, in order (a transaction's are all successes).
func bundleResults(body []byte, n int) ([]entryResponse, bool) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Response *entryResponse  `json:"response"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" || len(b.Entry) != n {
		return nil, false
	}
	out := make([]entryResponse, n)
	for i, en := range b.Entry {
		if en.Response == nil {
			return nil, false
		}
		out[i] = *en.Response
		var r struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if len(en.Resource) > 0 && json.Unmarshal(en.Resource, &r) == nil {
			out[i].resourceID, out[i].resourceVersion, out[i].raw = r.ID, r.Meta.VersionID, en.Resource
		}
	}
	return out, true
}
