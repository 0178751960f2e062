package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// This file is how the engine learns what an EHR holds of a record and
// whether that is the adapter's own content. Versions alone cannot tell: an
// EHR may answer a write without a version (no ETag, an unversioned
// Location), and a write whose answer was lost leaves the EHR on a version
// the ledger never saw. Content can tell: the canonical hash of what the
// EHR holds is compared with the hashes the ledger keeps of what the adapter
// wrote (ContentHash) and sent without reading the answer (Attempted).

// current is what the EHR holds of one record now.
type current struct {
	id, version string
	// seen is when the read or search that found it was sent: the EHR
	// held this version then or later.
	seen time.Time
	// hash is the canonical content hash (see canonicalHash); "" when the
	// resource cannot be read back into a canonical form, which then never
	// passes for the adapter's own content.
	hash string
	raw  []byte
	// updated is the version's meta.lastUpdated, when the EHR was written
	// (by the EHR's clock); zero when it has none.
	updated time.Time
}

// ours reports whether content with this canonical hash is something the
// adapter itself wrote or sent to the EHR: what the ledger says the EHR
// holds, or a write sent whose answer was not read and that may have landed.
// Content the adapter confirmed writing earlier does not count: a
// clinician may set a goal back to exactly what it was. A write whose
// answer was not read lands, if ever, within CreateSettle of being sent
// (the time a slow EHR may take to apply it late): it counts while that
// window is open, and afterwards for content the EHR holds in a version
// written within the window (landed, the version's meta.lastUpdated). The
// EHR's clock judges the landing, so a retry that comes back late, after
// its tries backed off, still knows its own write.
func (e *Engine) ours(conn *Connection, le store.LedgerEntry, hash string, landed time.Time) bool {
	if hash == "" {
		return false
	}
	if hash == le.ContentHash {
		return true
	}
	settle := e.createSettle(conn)
	for _, a := range le.Attempted {
		if a.Hash != hash {
			continue
		}
		if e.now().Sub(a.At) < settle || (!landed.IsZero() && landed.Sub(a.At) < settle) {
			return true
		}
	}
	return false
}

// oursNow is ownContent, asked again of the ledger row as it is now when
// the copy in hand says no: another worker (a pull, or a push that took
// over an expired lease) may have recorded the attempt since the copy was
// read. cur is what the EHR holds.
func (e *Engine) oursNow(ctx context.Context, conn *Connection, typ string, le store.LedgerEntry, cur *current) (bool, error) {
	if e.ours(conn, le, cur.hash, cur.updated) || le.Key == "" {
		return e.ownContent(ctx, conn, typ, &le, cur)
	}
	now, err := e.Store.LedgerGet(ctx, conn.Name, le.Key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return e.ownContent(ctx, conn, typ, &now, cur)
}

// ownContent is ours, with a match on a write whose answer was not read
// checked against the EHR's history where the EHR keeps one. A request is
// applied at most once: if the EHR held that content in a version older
// than the current one, the write landed then, and what the EHR holds now
// was written by someone else (a clinician setting the record back to it).
// The attempt is then dropped from the ledger row (and from le) and the
// content is not the adapter's. Without a history, the attempt counts for
// CreateSettle (see ours).
func (e *Engine) ownContent(ctx context.Context, conn *Connection, typ string, le *store.LedgerEntry, cur *current) (bool, error) {
	id, version, hash := cur.id, cur.version, cur.hash
	if !e.ours(conn, *le, hash, cur.updated) {
		return false, nil
	}
	if hash == le.ContentHash || id == "" || version == "" || le.Key == "" || !conn.Plan.Allows(typ, "history-instance") {
		return true, nil
	}
	landed, err := e.landedBefore(ctx, conn, typ, id, version, hash)
	if err != nil || !landed {
		return !landed, err
	}
	row, err := e.Store.LedgerGet(ctx, conn.Name, le.Key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	row.Attempted = store.WithoutAttempt(row.Attempted, hash)
	if err := e.Store.LedgerPut(ctx, row); err != nil {
		return false, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	le.Attempted = store.WithoutAttempt(le.Attempted, hash)
	return false, nil
}

// landedBefore reports whether the EHR's history of typ/id shows content
// with this canonical hash landing before the current version, with other
// content between then and now: the record was changed and then set back
// to it. The same content in the versions just before the current one, with
// nothing else between, is one write landing more than once (a retried
// request: many EHRs keep a new version even when nothing changed), not
// someone setting it back.
//
// History is newest first (FHIR's order); meta.lastUpdated orders it where
// every version has one.
func (e *Engine) landedBefore(ctx context.Context, conn *Connection, typ, id, version, hash string) (bool, error) {
	entries, err := conn.EHR.History(ctx, typ, id)
	if err != nil {
		return false, err
	}
	type past struct {
		version, hash string
		at            time.Time
	}
	var versions []past
	dated := true
	for _, v := range entries {
		cur, err := e.currentOf(ctx, conn, typ, v.Resource)
		if errors.Is(err, errStore) {
			return false, err
		}
		if err != nil {
			continue
		}
		at := lastUpdated(v.Resource)
		dated = dated && !at.IsZero()
		versions = append(versions, past{cur.version, cur.hash, at})
	}
	if dated {
		slices.SortStableFunc(versions, func(a, b past) int { return b.at.Compare(a.at) })
	}
	// Past the current version and the run of the same content before it.
	i := slices.IndexFunc(versions, func(p past) bool { return p.version == version })
	for i++; i < len(versions) && versions[i].hash == hash; i++ {
	}
	return slices.ContainsFunc(versions[min(i, len(versions)):], func(p past) bool { return p.hash == hash }), nil
}

// lastUpdated is a resource's meta.lastUpdated; the zero time when it has
// none or it cannot be read.
func lastUpdated(raw []byte) time.Time {
	var r struct {
		Meta struct {
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, r.Meta.LastUpdated)
	if err != nil {
		return time.Time{}
	}
	return t
}

// readCurrent reads what the EHR holds for record k: by the EHR id where the
// EHR allows read, else by the search that finds records the ledger does not
// know. It returns nil when the EHR has no such resource.
func (e *Engine) readCurrent(ctx context.Context, conn *Connection, typ string, k mappings.Key, id string, res *bpb.ContainedResource) (*current, error) {
	var raw []byte
	seen := e.now()
	if id != "" && conn.Plan.Allows(typ, "read") {
		resp, err := conn.EHR.Read(ctx, typ, id)
		if errors.Is(err, ehr.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		raw = resp.Body
	} else {
		found, err := e.searchRecord(ctx, conn, typ, k, res)
		if err != nil || found == nil {
			return nil, err
		}
		raw = found
	}
	cur, err := e.currentOf(ctx, conn, typ, raw)
	if cur != nil {
		cur.seen = seen
	}
	return cur, err
}

// currentOf reads id, version and canonical hash out of a resource the
// EHR returned.
func (e *Engine) currentOf(ctx context.Context, conn *Connection, typ string, raw []byte) (*current, error) {
	var r struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
		return nil, &pushError{msg: "push: the EHR's copy of " + typ + " is unreadable"}
	}
	cur := &current{id: r.ID, version: r.Meta.VersionID, raw: raw, updated: lastUpdated(raw)}
	h, err := e.canonicalHash(ctx, conn, typ, raw)
	if errors.Is(err, errStore) {
		return nil, err
	}
	if err == nil {
		cur.hash = h
	}
	return cur, nil
}

// searchRecord finds record k among the EHR's resources of typ: by its
// business identifier where the EHR can search it, else by patient with the
// identifier matched here. It returns the resource JSON, or nil.
func (e *Engine) searchRecord(ctx context.Context, conn *Connection, typ string, k mappings.Key, res *bpb.ContainedResource) ([]byte, error) {
	rp := conn.Plan.Type(typ)
	if rp == nil || !conn.Plan.Allows(typ, "search-type") {
		return nil, nil
	}
	q := url.Values{}
	if name, ok := rp.Searches("identifier"); ok {
		q.Set(name, k.System()+"|"+k.Value())
	} else if name, ok := rp.Searches("patient"); ok && res != nil {
		pat := subjectOf(res)
		if pat == "" {
			return nil, nil
		}
		q.Set(name, pat)
	} else {
		return nil, nil
	}
	entries, err := conn.EHR.Search(ctx, typ, q)
	if err != nil {
		return nil, err
	}
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r struct {
			Identifier []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		}
		if json.Unmarshal(en.Resource, &r) != nil {
			continue
		}
		for _, id := range r.Identifier {
			if id.System == k.System() && id.Value == k.Value() {
				return en.Resource, nil
			}
		}
	}
	return nil, nil
}

// canonicalHash is the content hash of a resource as the EHR holds it, in
// the form push hashes what it writes: without what the EHR adds or assigns
// (id, meta.versionId, lastUpdated and source), without the literal references that only this EHR
// understands (a reference that also carries an identifier keeps the
// identifier; one to a record the ledger knows becomes that record's
// urn:uuid), without the write time (the chart note's date,
// Observation.issued), and with an amended note counted as final (amending is
// how the adapter writes a note again, not content). Content the adapter
// wrote therefore hashes to the ledger's hash whatever version the EHR gave
// it.
func (e *Engine) canonicalHash(ctx context.Context, conn *Connection, typ string, raw []byte) (string, error) {
	b, err := e.canonicalForm(ctx, conn, typ, raw)
	if err != nil {
		return "", err
	}
	return hashBytes(b), nil
}

// hashBytes is contentHash over bytes already in canonical form.
func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonicalForm is the canonical FHIR JSON canonicalHash hashes.
func (e *Engine) canonicalForm(ctx context.Context, conn *Connection, typ string, raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m["resourceType"] != typ {
		return nil, errors.New("unexpected resource type")
	}
	delete(m, "id")
	if meta, ok := m["meta"].(map[string]any); ok {
		// What the server keeps about its copy; profiles, security labels
		// and tags are the adapter's content.
		for _, f := range []string{"versionId", "lastUpdated", "source"} {
			delete(meta, f)
		}
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	switch typ {
	case "DocumentReference":
		delete(m, "date")
		// Which note a note replaces (where notes are only created, see
		// notes.go) is not content either.
		delete(m, "relatesTo")
		if m["docStatus"] == "amended" {
			m["docStatus"] = "final"
		}
	case "Observation":
		delete(m, "issued")
	case "QuestionnaireResponse":
		delete(m, "authored")
	}
	if err := e.canonicalReferences(ctx, conn, m); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	cr, err := mappings.ParseResource(b)
	if err != nil {
		return nil, err
	}
	return mappings.MarshalCompact(cr)
}

// canonicalReferences rewrites the references inside v in place (see
// canonicalHash). Only store errors are returned.
func (e *Engine) canonicalReferences(ctx context.Context, conn *Connection, v any) error {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			if _, byIdentifier := x["identifier"]; byIdentifier {
				delete(x, "reference")
			} else if typ, id := splitReference(ref); typ != "" {
				le, err := e.Store.LedgerByResource(ctx, conn.Name, typ, id)
				switch {
				case err == nil:
					if sys, val, ok := strings.Cut(le.Key, "|"); ok {
						if k, ok := mappings.ParseKey(sys, val); ok {
							x["reference"] = k.FullURL()
						}
					}
				case errors.Is(err, store.ErrNotFound) && typ == "Goal":
					// One of the adapter's goals whose id the ledger has
					// not learned yet (its write's answer was lost): the
					// content cannot be judged until it has.
					return errUnresolved
				case !errors.Is(err, store.ErrNotFound):
					return fmt.Errorf("%w: ledger: %w", errStore, err)
				}
			}
		}
		for _, child := range x {
			if err := e.canonicalReferences(ctx, conn, child); err != nil {
				return err
			}
		}
	case []any:
		for _, child := range x {
			if err := e.canonicalReferences(ctx, conn, child); err != nil {
				return err
			}
		}
	}
	return nil
}

// errUnresolved: the canonical form of a resource cannot be made yet,
// because it refers to a goal the ledger has no id for. Such content is
// neither the adapter's nor someone else's as far as the engine can tell:
// it is written over without a conflict record.
var errUnresolved = errors.New("reference to a goal the ledger has no id for")

// splitReference reads a literal reference, relative (Goal/1) or absolute
// ([base]/Goal/1, with or without _history/v).
func splitReference(ref string) (typ, id string) {
	if strings.HasPrefix(ref, "urn:") || strings.HasPrefix(ref, "#") {
		return "", ""
	}
	segs := strings.Split(strings.Trim(ref, "/"), "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" {
		segs = segs[:n-2]
	}
	n := len(segs)
	if n < 2 || segs[n-2] == "" || segs[n-1] == "" {
		return "", ""
	}
	if c := segs[n-2][0]; c < 'A' || c > 'Z' {
		return "", ""
	}
	return segs[n-2], segs[n-1]
}

// settleStale handles a write the EHR refused as stale (409/412: the
// version the adapter sent is not the EHR's). It reads what the EHR holds:
//   - the adapter's own content (a retried write whose first answer was
//     lost, or a write acknowledged without a version): the ledger learns the
//     EHR's version and nothing is written again;
//   - content the adapter sent earlier: nobody else changed it; the write
//     is sent again with the version just read;
//   - anything else is a change made in the EHR: a Goal's change is merged
//     into the IPS record first, as a pull would (clinicians own its
//     status), and any other type keeps the IPS content (the program owns
//     jobs, the plan and its note) with a conflict recorded. The write then
//     goes again, with the version just read, so a clinician who changes it
//     once more meanwhile is not overwritten blindly either.
//
// A record is sent again only while the client is as the push read it:
// what the EHR holds may be a change that a pull merged into the client
// while this push waited, or another worker's write of a newer copy (see
// clientUnchanged); the client's pending item then writes the newer
// content.
//
// retry sends the write again with the given If-Match. settled reports the
// record is now up to date in the EHR as far as this push is concerned
// (written, or handed to the merged client's next push).
func (e *Engine) settleStale(ctx context.Context, conn *Connection, k mappings.Key, typ string, le store.LedgerEntry, hash, clientID string, ver store.Version, res *bpb.ContainedResource, retry func(ifMatch string) (*ehr.Response, error)) (resp *ehr.Response, s PushSummary, err error) {
	cur, err := e.readCurrent(ctx, conn, typ, k, le.ResourceID, res)
	if err != nil {
		return nil, s, err
	}
	if cur == nil {
		return nil, s, &pushError{msg: "push: " + typ + " was deleted in the EHR"}
	}
	mine, err := e.oursNow(ctx, conn, typ, le, cur)
	if err != nil {
		return nil, s, err
	}
	switch {
	case cur.hash == hash:
		// Already there: the adapter's own write.
		return &ehr.Response{ResourceID: cur.id, VersionID: cur.version}, s, nil
	case mine, cur.hash == "":
		// The adapter's own, or content that cannot be judged yet.
	default:
		if typ == "Goal" {
			merged, err := e.mergeEHRGoal(ctx, conn, k, le, cur, clientID, ver)
			if err != nil || merged {
				// The merged client is saved, and its pending item pushes
				// the merged goal next.
				s.Conflicts++
				return nil, s, err
			}
		} else if err := e.recordResourceConflict(ctx, conn, k, le, cur, hash, clientID); err != nil {
			return nil, s, err
		} else {
			s.Conflicts++
		}
	}
	// The write goes again with the version just read, so it must still
	// be the client's content, whatever the type. What the EHR holds may
	// be newer than this push's copy of the client and still pass as
	// known (mine above): a clinician's Goal change that a pull merged
	// into the client while this push waited for its 412 and its read
	// (the pull recorded that version and content in the ledger), or,
	// for any type, the adapter's own write of a newer copy by another
	// worker that took over the client's item after this push's lease ran
	// out. Writing this copy would put the older content back, and
	// nothing queued would correct it. The client's pending item, if the
	// other worker has not already done it, writes the newer content.
	if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
		return nil, s, err
	}
	ifMatch := ""
	if rp := conn.Plan.Type(typ); rp != nil && rp.Concurrency == plan.IfMatch {
		ifMatch = cur.version
	}
	if le.Key == "" {
		le = store.LedgerEntry{Connection: conn.Name, Key: ledgerKey(k), ClientID: clientID, ResourceType: typ, UpdatedAt: e.now()}
	}
	if err := e.noteAttempt(ctx, conn.Name, &le, hash, ifMatch); err != nil {
		return nil, s, err
	}
	resp, err = retry(cur.version)
	return resp, s, err
}

// recordResourceConflict records that a resource the IPS side owns was
// changed in the EHR, and that the IPS content is applied.
func (e *Engine) recordResourceConflict(ctx context.Context, conn *Connection, k mappings.Key, le store.LedgerEntry, cur *current, hash, clientID string) error {
	ehrValue := "changed in the EHR"
	if cur.version != "" {
		ehrValue += " (version " + cur.version + ")"
	}
	ipsValue := "ipsfhir content"
	if len(hash) >= 12 {
		ipsValue += " " + hash[:12]
	}
	if _, err := e.Store.AddConflict(ctx, store.Conflict{
		Connection: conn.Name, ClientID: clientID, Key: ledgerKey(k), Field: "resource",
		IPSValue: ipsValue, EHRValue: ehrValue, Winner: "ips", CreatedAt: e.now(),
	}); err != nil {
		return fmt.Errorf("%w: conflict: %w", errStore, err)
	}
	return nil
}

// mergeEHRGoal merges a Goal as the EHR holds it into the IPS client, as a
// pull does, for a push holding the client at version ver. merged reports
// that the client was saved with the EHR's changes (its outbox item then
// carries them back). When there was nothing to merge, the client already
// holds what the EHR holds; if it was saved since the push read it (a pull
// merged the same change a moment ago), the push's copy is older than both,
// and errClientChanged stops a write that would undo the change.
func (e *Engine) mergeEHRGoal(ctx context.Context, conn *Connection, k mappings.Key, le store.LedgerEntry, cur *current, clientID string, ver store.Version) (bool, error) {
	cr, err := mappings.ParseResource(cur.raw)
	if err != nil || cr.GetGoal() == nil {
		return false, &pushError{msg: "push: the EHR's copy of Goal is unreadable"}
	}
	key, ehrGoal, err := mappings.GoalFromFHIR(cr.GetGoal())
	if err != nil || key != k {
		return false, &pushError{msg: "push: the EHR's copy of Goal is unreadable"}
	}
	r, err := e.applyGoalChange(ctx, conn, key, ehrGoal, le, cur.version, cur.id, cur.seen)
	if err != nil {
		return false, err
	}
	if r.moved {
		// A pull merged a newer copy meanwhile: what this push holds is
		// out of date, and writing it would undo the clinician's change.
		return false, &pushError{msg: "push: the goal changed in the EHR while it was being written; trying again"}
	}
	if !r.saved {
		return false, e.clientUnchanged(ctx, clientID, ver)
	}
	return true, nil
}
