package fhirapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// resourceID is a record's id on the facade: the UUID of its business
// identifier, the same UUID as its urn:uuid fullUrl in ipsfhir's Bundles.
func resourceID(k mappings.Key) string { return strings.TrimPrefix(k.FullURL(), "urn:uuid:") }

// typeOfKind is the resource type a kind of record becomes.
func typeOfKind(k mappings.Kind) string {
	switch k {
	case mappings.KindGoal:
		return "Goal"
	case mappings.KindPlan:
		return "CarePlan"
	case mappings.KindJob, mappings.KindEmploymentStatus, mappings.KindPRAPARE:
		return "Observation"
	case mappings.KindPlanNote:
		return "DocumentReference"
	}
	return ""
}

// reference is the facade's literal reference to a record, so references
// between mapped resources resolve here.
func reference(k mappings.Key) string {
	if t := typeOfKind(k.Kind); t != "" {
		return t + "/" + resourceID(k)
	}
	return ""
}

// typedKey is the identity and type of one resource of a client.
type typedKey struct {
	key mappings.Key
	typ string
}

// keysOf lists what mappings.ClientEntries maps for c, in the same order,
// without mapping it: counting and indexing need only the keys, and mapping
// every client on every search would be slow. A test holds the two equal.
func (s *Server) keysOf(c *ips.Client) []typedKey {
	o := s.mapping
	statuses := mappings.EmploymentStatusRecords(c)
	out := make([]typedKey, 0, len(c.Goals)+len(c.Jobs)+2*len(statuses)+2)
	for _, g := range c.Goals {
		out = append(out, typedKey{o.GoalKey(c, g), "Goal"})
	}
	out = append(out, typedKey{o.PlanKey(c), "CarePlan"})
	for _, j := range c.Jobs {
		out = append(out, typedKey{o.JobKey(c, j), "Observation"})
	}
	for _, e := range statuses {
		out = append(out, typedKey{o.EmploymentStatusKey(c, e), "Observation"})
		if o.PRAPARE {
			out = append(out, typedKey{o.PRAPAREKey(c, e), "Observation"})
		}
	}
	return append(out, typedKey{o.PlanNoteKey(c), "DocumentReference"})
}

// entries maps a stored client to its resources as the facade serves them:
// with ids, versionId and lastUpdated, references literal, and the chart
// note dated when the client was saved.
func (s *Server) entries(st store.Stored) ([]mappings.Entry, error) {
	o := s.mapping
	o.Now = st.UpdatedAt
	es := mappings.ClientEntries(st.Client, o)
	for _, e := range es {
		if err := stamp(e.Resource, resourceID(e.Key), st.Version, st.UpdatedAt); err != nil {
			return nil, err
		}
	}
	return es, nil
}

// stamp sets id, meta.versionId and meta.lastUpdated on a mapped resource,
// whatever its type.
func stamp(cr *bpb.ContainedResource, id string, v store.Version, at time.Time) error {
	m := cr.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("oneof_resource")
	fd := m.WhichOneof(od)
	if fd == nil {
		return errors.New("stamp: empty resource")
	}
	res := m.Get(fd).Message()
	idf := res.Descriptor().Fields().ByName("id")
	metaf := res.Descriptor().Fields().ByName("meta")
	if idf == nil || metaf == nil {
		return fmt.Errorf("stamp: %s has no id or meta", fd.Name())
	}
	res.Set(idf, protoreflect.ValueOfMessage((&dtpb.Id{Value: id}).ProtoReflect()))
	meta, ok := res.Mutable(metaf).Message().Interface().(*dtpb.Meta)
	if !ok {
		return fmt.Errorf("stamp: %s meta is not a Meta", fd.Name())
	}
	meta.VersionId = &dtpb.Id{Value: fmt.Sprint(int64(v))}
	meta.LastUpdated = &dtpb.Instant{ValueUs: at.UnixMicro(), Timezone: "Z", Precision: dtpb.Instant_MICROSECOND}
	return nil
}

// loadClient reads a client by id with its version and when it was saved.
// GetClient does not say when; the patient identifier, unique per client,
// finds the same client with it.
func (s *Server) loadClient(ctx context.Context, id string) (store.Stored, bool, error) {
	c, _, err := s.store.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Stored{}, false, nil
	}
	if err != nil {
		return store.Stored{}, false, fmt.Errorf("read client: %w", err)
	}
	return s.clientByPatient(ctx, c.Patient.System, c.Patient.Value, id)
}

// clientByPatient finds the client of a patient identifier; want, when set,
// is the client id expected (a client saved between two reads may no longer
// match, and is then not found).
func (s *Server) clientByPatient(ctx context.Context, system, value, want string) (store.Stored, bool, error) {
	st, err := s.store.ClientByPatient(ctx, system, value)
	if errors.Is(err, store.ErrNotFound) {
		return store.Stored{}, false, nil
	}
	if err != nil {
		return store.Stored{}, false, fmt.Errorf("find client by patient: %w", err)
	}
	if want != "" && st.Client.ID != want {
		return store.Stored{}, false, nil
	}
	return st, true, nil
}

// scanBatch is how many clients one ListClients call reads.
const scanBatch = 500

// eachClient calls f with every stored client in id order, after the given
// id, until f returns false or an error.
func (s *Server) eachClient(ctx context.Context, after string, f func(store.Stored) (bool, error)) error {
	for {
		page, err := s.store.ListClients(ctx, after, scanBatch)
		if err != nil {
			return fmt.Errorf("list clients: %w", err)
		}
		for _, st := range page {
			more, err := f(st)
			if err != nil || !more {
				return err
			}
		}
		if len(page) < scanBatch {
			return nil
		}
		after = page[len(page)-1].Client.ID
	}
}

// ---------------------------------------------------------------- locator

// locator maps resource ids to client ids. A resource id is a hash of the
// business identifier and cannot be reversed, so a read looks here; a hit is
// checked against the client itself, and a miss rebuilds the whole map from
// the store (a record may be new). Concurrent misses share one rebuild: a
// request reuses any rebuild that started after it did.
type locator struct {
	mu      sync.Mutex // guards ids and builtAt
	ids     map[string]string
	builtAt time.Time // when the scan behind ids started

	scanMu sync.Mutex // one rebuild at a time
}

func (l *locator) lookup(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.ids[id]
	return c, ok
}

// rebuild scans the store unless a scan that started after since has
// already finished.
func (l *locator) rebuild(ctx context.Context, since time.Time, scan func(ctx context.Context) (map[string]string, error)) error {
	l.scanMu.Lock()
	defer l.scanMu.Unlock()
	l.mu.Lock()
	fresh := l.ids != nil && l.builtAt.After(since)
	l.mu.Unlock()
	if fresh {
		return nil
	}
	started := time.Now()
	ids, err := scan(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ids, l.builtAt = ids, started
	l.mu.Unlock()
	return nil
}

// scanIDs maps every resource id in the store to its client.
func (s *Server) scanIDs(ctx context.Context) (map[string]string, error) {
	ids := map[string]string{}
	err := s.eachClient(ctx, "", func(st store.Stored) (bool, error) {
		for _, tk := range s.keysOf(st.Client) {
			ids[resourceID(tk.key)] = st.Client.ID
		}
		return true, nil
	})
	return ids, err
}

// locate finds the resource of type typ with id, and its client. Consent is
// the caller's to check.
func (s *Server) locate(ctx context.Context, typ, id string) (store.Stored, mappings.Key, bool, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return store.Stored{}, mappings.Key{}, false, nil // not an id the facade issues
	}
	started := time.Now()
	find := func() (store.Stored, mappings.Key, bool, error) {
		cid, ok := s.index.lookup(id)
		if !ok {
			return store.Stored{}, mappings.Key{}, false, nil
		}
		st, ok, err := s.loadClient(ctx, cid)
		if err != nil || !ok {
			return store.Stored{}, mappings.Key{}, false, err
		}
		for _, tk := range s.keysOf(st.Client) {
			if tk.typ == typ && resourceID(tk.key) == id {
				return st, tk.key, true, nil
			}
		}
		return store.Stored{}, mappings.Key{}, false, nil
	}
	if st, k, ok, err := find(); ok || err != nil {
		return st, k, ok, err
	}
	if err := s.index.rebuild(ctx, started, s.scanIDs); err != nil {
		return store.Stored{}, mappings.Key{}, false, err
	}
	return find()
}
