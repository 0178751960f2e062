package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// EHR is what the engine needs from an EHR client (adapter/ehr.Client).
type EHR interface {
	Read(ctx context.Context, resourceType, id string) (*ehr.Response, error)
	Search(ctx context.Context, resourceType string, query url.Values) ([]ehr.Entry, error)
	Create(ctx context.Context, resourceType string, body []byte, ifNoneExist string) (*ehr.Response, error)
	Update(ctx context.Context, resourceType, target string, body []byte, ifMatch string) (*ehr.Response, error)
	UpdateOnce(ctx context.Context, resourceType, target string, body []byte) (*ehr.Response, error)
	Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error)
	Batch(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error)
	History(ctx context.Context, resourceType, id string) ([]ehr.Entry, error)
}

// Connection is one EHR the engine syncs with.
type Connection struct {
	Name string
	Plan *plan.Plan
	EHR  EHR
	// Mapping carries the program, security labels and PRAPARE choice.
	Mapping mappings.Options
	// ConsentDefault applies to clients whose consent does not say whether
	// their records may go to the EHR.
	ConsentDefault bool
	// Winners decide fields both sides changed; zero means DefaultWinners.
	Winners Winners
	// Referrals say which ServiceRequests are referrals to the program;
	// the zero value takes the defaults (mappings.ReferralMatch).
	Referrals mappings.ReferralMatch
	// PatientSystem names the EHR's Patient id namespace, for referrals whose
	// subject is only Patient/{id}.
	PatientSystem string
	// Retry spaces the retries of this connection's failing outbox items;
	// zero means DefaultRetry.
	Retry RetrySchedule
	// TreatmentPlan says which of the patient's CarePlans is the mental
	// health treatment plan the IPS plan and the note link to (see
	// treatmentplan.go); the zero value takes the defaults.
	TreatmentPlan TreatmentPlanSearch
	// CreateSettle is how long a plain create whose answer was lost may
	// still land in the EHR (a request held by a slow EHR or a gateway
	// after the client gave up). Until it has passed, a search that finds
	// nothing does not let the same record be created again; zero means
	// DefaultCreateSettle. Set it well above the EHR request timeout.
	CreateSettle time.Duration

	// Workers, when more than the Runner's Schedule.Workers, is how many
	// workers push this connection's outbox: the EHR client's concurrency
	// limit, so that the limit can be used.
	Workers int

	// bundles is what the engine learned about this EHR's Bundles.
	bundles bundleMemory
	// orLists is set once a joint search (lookahead.go) was answered with
	// matches for two or more of its values: the EHR honours FHIR's OR
	// lists. Until then a joint search's "nothing found" for a value is
	// not taken as the answer (an EHR that read only the first value
	// would say it of all the others).
	orLists atomic.Bool
}

// Engine runs push (and pull) for a set of connections over one store.
type Engine struct {
	Store       store.Store
	Connections []*Connection
	// QueueFor names the connections a client saved by a pull (a
	// clinician's change, a referral) is queued for; nil means those of
	// Connections. A Runner queues for every connection it runs, connected
	// yet or not (see Runner.SetEnabled).
	QueueFor []string
	// queueFor, when set (by a Runner), is read instead of QueueFor: the
	// connections enabled now.
	queueFor func() []string
	// Owner names this worker in leases; unique per running worker.
	Owner       string
	Lease       time.Duration
	MaxAttempts int
	// Overlap re-reads this far behind each watermark; zero means DefaultOverlap.
	Overlap time.Duration
	Logger  *slog.Logger
	// Now is the clock (tests set it); nil means time.Now.
	Now func() time.Time
	// Progress, when set, is called after each outbox item with the pass's
	// running totals (the CLI draws a progress line on a terminal).
	Progress func(PushSummary)
	// Metrics, when set, count resources and runs per connection.
	Metrics *telemetry.SyncMetrics
	// Tracer, when set, makes a span per sync run and connection; the EHR
	// client's spans nest under it.
	Tracer trace.Tracer
	// leaseBatch is how many outbox items a worker leases at a time; zero
	// means maxLeaseBatch (see PushParallel).
	leaseBatch int
	// ahead is what the joint searches found for the clients of the lease
	// being pushed (see lookahead.go); nil for none.
	ahead *lookahead
	// joint, when set, sends the push's transaction Bundle, joined with
	// those of the other clients of the lease (see joint.go).
	joint *jointTurn
	// SharedText names the connections whose clinicians' goal notes are
	// written to every connection's EHR (config clinicalText: share). A
	// note from any other connection goes back to its own EHR only (see
	// clinicaltext.go).
	SharedText []string
}

// runSpan starts the span of one push or pull run on a connection. Its
// attributes are the connection name and direction, never record data.
func (e *Engine) runSpan(ctx context.Context, conn string, d telemetry.Direction) (context.Context, func(err error)) {
	if e.Tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := e.Tracer.Start(ctx, "sync "+string(d), trace.WithAttributes(
		telemetry.KeyConnection.String(telemetry.ConnectionLabel(conn)),
		attribute.String("ipsfhir.sync.direction", string(d))))
	return ctx, func(err error) {
		if err != nil {
			telemetry.RecordSpanError(span, err)
		}
		span.End()
	}
}

// record counts one resource's outcome; err decides the blame of a failure.
func (e *Engine) record(ctx context.Context, conn, typ string, o telemetry.Outcome, err error) {
	if e.Metrics != nil {
		e.Metrics.RecordResource(ctx, conn, typ, o, blameOf(err))
	}
}

func (e *Engine) recordRun(ctx context.Context, conn string, d telemetry.Direction, err error) {
	if e.Metrics == nil {
		return
	}
	r := telemetry.ResultOK
	if err != nil {
		r = telemetry.ResultError
	}
	e.Metrics.RecordRun(ctx, conn, d, r, blameOf(err))
}

// audit records a sync pass that read or wrote patient records, or failed,
// in the audit trail: the connection, the direction ("pull" reads, "push"
// writes), how many records, and whether it succeeded. A pass that found
// nothing to do is not recorded. The trail failing is logged, never the
// pass's failure.
func (e *Engine) audit(ctx context.Context, conn string, d telemetry.Direction, records int, err error) {
	if records == 0 && err == nil {
		return
	}
	entry := store.AuditEntry{Caller: "sync", Action: "U", Route: string(d), Connection: conn, Records: records, Status: 200}
	if d == telemetry.DirectionPull {
		entry.Action = "R"
	}
	if err != nil {
		entry.Status = 500
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if aerr := e.Store.AddAudit(actx, entry); aerr != nil {
		e.log().ErrorContext(ctx, "audit entry not recorded", "connection", conn, "direction", string(d), "error_kind", errorToken(aerr))
	}
}

// blameOf says whose side a failure is on: the EHR refusing what we sent is
// ours (client), the EHR failing or unreachable is external, anything else
// (the store, a bug) is the adapter's own (server).
func blameOf(err error) telemetry.Blame {
	var ee *ehr.Error
	switch {
	case err == nil:
		return telemetry.BlameNone
	case errors.As(err, &ee):
		switch ee.Kind {
		case ehr.KindTransient, ehr.KindOutcomeUnknown:
			return telemetry.BlameExternal
		case ehr.KindInvalid, ehr.KindNotAllowed, ehr.KindAuth, ehr.KindConflict, ehr.KindNotFound:
			return telemetry.BlameClient
		}
	}
	return telemetry.BlameServer
}

// PushSummary counts what a push pass did. Failures counts the failed items
// by their patient-free reason (the same text stored on the outbox item),
// so a pass can end with "60 failed: patient not found in the EHR by
// identifier".
type PushSummary struct {
	Items        int `json:"items"`
	Written      int `json:"written"`
	Unchanged    int `json:"unchanged"`
	Skipped      int `json:"skipped"`
	Failed       int `json:"failed"`
	DeadLettered int `json:"deadLettered"`
	Conflicts    int `json:"conflicts"`
	// Provenances counts the Provenances the EHR was found to hold after
	// this pass wrote them (or found them there): one per written content,
	// where the plan writes them.
	Provenances int            `json:"provenances"`
	Failures    map[string]int `json:"failures,omitempty"`
}

func (s *PushSummary) add(o PushSummary) {
	s.Items += o.Items
	s.Written += o.Written
	s.Unchanged += o.Unchanged
	s.Skipped += o.Skipped
	s.Failed += o.Failed
	s.DeadLettered += o.DeadLettered
	s.Conflicts += o.Conflicts
	s.Provenances += o.Provenances
	for r, n := range o.Failures {
		if s.Failures == nil {
			s.Failures = map[string]int{}
		}
		s.Failures[r] += n
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// PushOnce drains every connection's outbox once: it leases due items in
// batches until none are left and pushes each. It returns what it did; an
// error only for a store failure (EHR failures are recorded on the items).
// A connection whose push fails does not stop the others; the error joins
// each failed connection's *ConnectionError.
func (e *Engine) PushOnce(ctx context.Context) (PushSummary, error) {
	var (
		total PushSummary
		errs  []error
	)
	for _, conn := range e.Connections {
		if err := e.pushConnection(ctx, conn, &total); err != nil {
			if ctx.Err() != nil {
				return total, err
			}
			errs = append(errs, &ConnectionError{Connection: conn.Name, Direction: telemetry.DirectionPush, Err: err})
		}
	}
	return total, errors.Join(errs...)
}

// PushConnection drains one connection's outbox with n workers at once
// (see PushParallel).
func (e *Engine) PushConnection(ctx context.Context, conn *Connection, n int) (PushSummary, error) {
	one := *e
	one.Connections = []*Connection{conn}
	return one.PushParallel(ctx, n)
}

// ConnectionError is a push or pull failure of one connection. Its message
// names the connection and direction and the cause's patient-free text.
type ConnectionError struct {
	Connection string
	Direction  telemetry.Direction
	Err        error
}

func (e *ConnectionError) Error() string {
	return string(e.Direction) + " " + e.Connection + ": " + e.Err.Error()
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// pushConnection drains one connection's outbox, in one span.
func (e *Engine) pushConnection(ctx context.Context, conn *Connection, total *PushSummary) (err error) {
	ctx, end := e.runSpan(ctx, conn.Name, telemetry.DirectionPush)
	before := *total
	defer func() {
		end(err)
		e.audit(ctx, conn.Name, telemetry.DirectionPush, total.Written-before.Written, err)
	}()
	for {
		batch := e.leaseBatch
		if batch <= 0 {
			batch = maxLeaseBatch
		}
		leased := time.Now()
		items, err := e.Store.Lease(ctx, conn.Name, e.Owner, batch, e.Lease)
		if err != nil {
			e.recordRun(ctx, conn.Name, telemetry.DirectionPush, err)
			return fmt.Errorf("push %s: lease: %w", conn.Name, err)
		}
		if len(items) == 0 {
			break
		}
		ahead, err := e.lookAhead(ctx, conn, items)
		if err != nil {
			e.recordRun(ctx, conn.Name, telemetry.DirectionPush, err)
			return fmt.Errorf("push %s: %w", conn.Name, err)
		}
		// Item i of the lease, pushed by ie (e with the lease's joint
		// answers, and its joint turn if any).
		push := func(i int, it store.OutboxItem, ie Engine) error {
			if skip, err := e.renewIfDue(ctx, conn, i, it, leased); skip || err != nil {
				return err
			}
			s, err := ie.pushItem(ctx, conn, it)
			if err != nil {
				return err
			}
			total.add(s)
			if e.Progress != nil {
				e.Progress(*total)
			}
			return nil
		}
		le := *e
		le.ahead = ahead
		if j := e.newJoiner(conn, items); j != nil {
			err = j.pushAll(ctx, items, func(i int, it store.OutboxItem, turn *jointTurn) error {
				ie := le
				ie.joint = turn
				return push(i, it, ie)
			})
		} else {
			for i, it := range items {
				if err = push(i, it, le); err != nil {
					break
				}
			}
		}
		if err != nil {
			e.recordRun(ctx, conn.Name, telemetry.DirectionPush, err)
			return err
		}
	}
	e.recordRun(ctx, conn.Name, telemetry.DirectionPush, nil)
	return nil
}

// renewIfDue renews the lease of a batch's item i before its push starts.
// The items of a batch are pushed one after another, so the last ones wait
// for the others (minutes, when the EHR hangs). One whose lease has run
// half out is renewed before it is started, and left alone (skip) when
// another worker has taken it over meanwhile: two workers pushing one
// client race each other's writes (see settleStale). Only store errors are
// returned.
func (e *Engine) renewIfDue(ctx context.Context, conn *Connection, i int, it store.OutboxItem, leased time.Time) (skip bool, err error) {
	if i == 0 || time.Since(leased) <= e.Lease/2 {
		return false, nil
	}
	err = e.Store.Renew(ctx, it, e.Lease)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("push %s: renew lease: %w", conn.Name, err)
	}
	return false, nil
}

// pushItem pushes one client and settles its outbox item. Only store errors
// are returned; an EHR failure fails the item (retried later, dead-lettered
// after MaxAttempts) with a patient-free reason.
func (e *Engine) pushItem(ctx context.Context, conn *Connection, it store.OutboxItem) (PushSummary, error) {
	s := PushSummary{Items: 1}
	w, err := e.pushClient(ctx, conn, it.ClientID)
	if errors.Is(err, errHeld) {
		// Held before it wrote anything, for a record another push of
		// the lease was writing (see jointTurn.await): again, from the
		// ledger as that push left it.
		w, err = e.pushClient(ctx, conn, it.ClientID)
	}
	s.add(w)
	if err == nil || errors.Is(err, errClientChanged) {
		// A client saved during its push keeps its item pending (Complete
		// sees the new generation), due at once, for the new content.
		return s, e.settle(ctx, e.Store.Complete(ctx, it))
	}
	if errors.Is(err, errStore) {
		return s, err
	}
	s.Failed++
	if errors.Is(err, ehr.ErrConflict) {
		s.Conflicts++
	}
	reason := reasonOf(err)
	s.Failures = map[string]int{reason: 1}
	retry := e.now().Add(conn.Retry.Delay(it.Attempts+1, retryAfterOf(err)))
	dead, ferr := e.Store.Fail(ctx, it, reason, retry, e.MaxAttempts)
	if ferr != nil {
		return s, e.settle(ctx, ferr)
	}
	if dead {
		s.DeadLettered++
	}
	e.log().WarnContext(ctx, "push failed", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err), "attempt", it.Attempts+1, "dead", dead)
	return s, nil
}

// statusOf is the EHR's HTTP status in err, or 0.
func statusOf(err error) int {
	var ee *ehr.Error
	if errors.As(err, &ee) {
		return ee.Status
	}
	return 0
}

// retryAfterOf is how long the EHR asked us to wait, if it said.
func retryAfterOf(err error) time.Duration {
	var ee *ehr.Error
	var pe *pushError
	switch {
	case errors.As(err, &ee):
		return ee.RetryAfter
	case errors.As(err, &pe):
		return pe.wait
	}
	return 0
}

// settle tolerates losing a lease (another worker took the item over after it
// expired: that worker will settle it) and reports any other store error.
func (e *Engine) settle(_ context.Context, err error) error {
	if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%w: %w", errStore, err)
}

var errStore = errors.New("store")

// reasonOf is the patient-free reason recorded on a failed item and
// counted in PushSummary.Failures: the operation, a short kind, the HTTP
// status and the EHR's issue codes, never diagnostics or addresses, so
// that the same failure reads the same for every item and can be grouped.
func reasonOf(err error) string {
	var pv *provenanceError
	if errors.As(err, &pv) {
		return "provenance: " + reasonOf(pv.err)
	}
	var ee *ehr.Error
	if errors.As(err, &ee) {
		var b strings.Builder
		b.WriteString(ee.Op)
		b.WriteString(": ")
		b.WriteString(errorToken(ee))
		if ee.Status != 0 {
			fmt.Fprintf(&b, " (HTTP %d)", ee.Status)
		}
		if len(ee.IssueCodes) > 0 {
			b.WriteString(" issues ")
			b.WriteString(strings.Join(ee.IssueCodes, ","))
		}
		return b.String()
	}
	var pe *pushError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "push: interrupted"
	}
	return "push failed"
}

// errorToken is one short word for an error, for logs and grouping.
func errorToken(err error) string {
	var ee *ehr.Error
	var pe *pushError
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &ee):
		return ee.Token()
	case errors.Is(err, errStore):
		return "store"
	case errors.As(err, &pe):
		return "push"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "other"
}

// pushError is a failure with a message safe to store and log.
type pushError struct {
	msg string
	// wait, when set, is how long the item must wait before its next
	// attempt can succeed.
	wait time.Duration
}

func (e *pushError) Error() string { return e.msg }

// pushClient writes every resource of one client that the plan allows and
// that changed since the ledger last saw it. The push reads the client's
// ledger rows at once (see pushLedger).
func (e *Engine) pushClient(ctx context.Context, conn *Connection, clientID string) (PushSummary, error) {
	pe := *e
	pe.Store = &pushLedger{Store: e.Store, conn: conn.Name}
	return pe.pushClientRows(ctx, conn, clientID)
}

func (e *Engine) pushClientRows(ctx context.Context, conn *Connection, clientID string) (s PushSummary, err error) {
	c, ver, err := e.Store.GetClient(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return s, nil // nothing left to push
	}
	if err != nil {
		return s, fmt.Errorf("%w: get client: %w", errStore, err)
	}
	if !consentsToEHR(c, conn.ConsentDefault) {
		s.Skipped++
		return s, nil
	}
	// Other clinics' notes this one may not see are left out of all it is
	// sent (the goals, the plan, the note).
	c = e.visibleTo(conn, c)
	patientRef, err := e.patientReference(ctx, conn, c.Patient)
	if err != nil {
		return s, err
	}

	treatmentPlan, err := e.treatmentPlanOf(ctx, conn, c.ID, patientRef)
	if err != nil {
		return s, err
	}
	p := conn.Plan
	native := func(cpt plan.Concept) bool { return p.Concept(cpt).Path == plan.Native }

	o := conn.Mapping
	o.Now = e.now()
	// The link and the team are content (the canonical form below has them
	// too): a link that changes is written.
	o.TreatmentPlan = func(*ips.Client) string { return treatmentPlan }
	o.SpecialistRecord, o.CareTeamRecord = native(plan.Specialist), native(plan.CareTeam)
	o.PatientReference = func(ips.Identifier) string { return patientRef }
	o.Reference = func(k mappings.Key) string {
		le, err := e.ledgerRow(ctx, conn.Name, ledgerKey(k))
		if err != nil || le.ResourceID == "" {
			return ""
		}
		return le.ResourceType + "/" + le.ResourceID
	}
	// A chart note the EHR confirmed holding is amended when written
	// again (docStatus amended), not silently rewritten as a final note.
	o.NoteReleased = func(k mappings.Key) bool {
		le, err := e.ledgerRow(ctx, conn.Name, ledgerKey(k))
		return err == nil && le.ContentHash != ""
	}
	// For hashing: no EHR ids, no write time (see canonicalEntries). The
	// write's clock still decides content: the note's overdue marks.
	canon := conn.Mapping
	canon.Now, canon.TreatmentPlan, canon.SpecialistRecord, canon.CareTeamRecord = o.Now, o.TreatmentPlan, o.SpecialistRecord, o.CareTeamRecord

	canonical := canonicalEntries(c, canon)
	// Where the EHR takes no notes but QuestionnaireResponse, the note's
	// content goes as the plan's QuestionnaireResponse: updated in place
	// where the EHR updates it. Where the EHR creates but does not update
	// the note (or the response), each content is a record of its own in
	// the client's sequence (see notes.go); a changed plan is a new one,
	// the newest, and a new note replaces the one before.
	respond := p.Concept(plan.ChartNote).ResourceType == "QuestionnaireResponse"
	var seq sequence
	var nv version
	switch {
	case !native(plan.ChartNote):
	case respond && !p.Allows("QuestionnaireResponse", "update"):
		seq = responseSequence(canon, c)
	case !respond && p.NotesCreatedOnly():
		seq = noteSequence(canon, c)
	}
	versioned := seq.pointer != ""
	switch {
	case versioned && respond:
		if nv, err = e.nextVersion(ctx, conn, seq, mappings.ResponseDigest(c, canon)); err != nil {
			return s, err
		}
	case versioned:
		cn := mappings.PlanNote(c, canon)
		cn.Date = nil // the write time is not content (withoutWriteTime)
		if nv, err = e.nextVersion(ctx, conn, seq, mappings.NoteDigest(cn)); err != nil {
			return s, err
		}
		delete(canonical, canon.PlanNoteKey(c))
		mappings.AsNoteVersion(cn, nv.key, "")
		canonical[nv.key] = wrap(cn)
	}
	if respond && native(plan.ChartNote) {
		k, qr := mappings.PlanResponse(c, canon, nv.record)
		cr := wrap(qr)
		withoutWriteTime(cr)
		canonical[k] = cr
	}
	// The referral this episode began with, if read from this EHR, is
	// answered there (received, accepted, rejected): on a Task of the
	// program's own, or, where the EHR takes no new Tasks, on the
	// referrer's (answerReferrerTask, after the writes).
	answer := native(plan.ReferralLoop) && !p.AnswersReferrerTasks() && c.Referral != nil && c.Referral.Connection == conn.Name
	if answer {
		if k, t := mappings.ReferralTask(c, canon); t != nil {
			canonical[k] = wrap(t)
		}
	}
	if native(plan.Episodes) {
		for _, ep := range mappings.EpisodesOfCare(c, canon, conn.Name) {
			canonical[ep.Key] = wrap(ep.Resource)
		}
	}
	// Goals first: the plan refers to them. The rest is mapped when it is
	// written, so that it refers to goals by the ids the EHR gave them.
	goals := func() []mappings.Entry {
		var out []mappings.Entry
		if native(plan.Goal) {
			for _, g := range c.Goals {
				out = append(out, mappings.Entry{Key: o.GoalKey(c, g), ResourceType: "Goal", Resource: wrap(mappings.Goal(c, g, o))})
			}
		}
		return out
	}
	// The specialist and the care team next: the plan and the note name them.
	team := func() []mappings.Entry { return mappings.TeamEntries(c, o) }
	rest := func() []mappings.Entry {
		var out []mappings.Entry
		if native(plan.IPSPlan) {
			out = append(out, mappings.Entry{Key: o.PlanKey(c), ResourceType: "CarePlan", Resource: wrap(mappings.CarePlan(c, o))})
		}
		if native(plan.JobOutcome) {
			for _, j := range c.Jobs {
				out = append(out, mappings.Entry{Key: o.JobKey(c, j), ResourceType: "Observation", Resource: wrap(mappings.JobObservation(c, j, o))})
			}
		}
		if native(plan.EmploymentStatus) {
			for _, st := range mappings.EmploymentStatusRecords(c) {
				out = append(out, mappings.Entry{Key: o.EmploymentStatusKey(c, st), ResourceType: "Observation", Resource: wrap(mappings.EmploymentStatusObservation(c, st, o))})
				if o.PRAPARE {
					out = append(out, mappings.Entry{Key: o.PRAPAREKey(c, st), ResourceType: "Observation", Resource: wrap(mappings.PRAPAREObservation(c, st, o))})
				}
			}
		}
		if native(plan.Episodes) {
			for _, ep := range mappings.EpisodesOfCare(c, o, conn.Name) {
				out = append(out, mappings.Entry{Key: ep.Key, ResourceType: "EpisodeOfCare", Resource: wrap(ep.Resource)})
			}
		}
		if answer {
			if k, t := mappings.ReferralTask(c, o); t != nil {
				out = append(out, mappings.Entry{Key: k, ResourceType: "Task", Resource: wrap(t)})
			}
		}
		if native(plan.ChartNote) {
			switch {
			case respond:
				k, qr := mappings.PlanResponse(c, o, nv.record)
				out = append(out, mappings.Entry{Key: k, ResourceType: "QuestionnaireResponse", Resource: wrap(qr)})
			case versioned:
				d := mappings.PlanNote(c, o)
				mappings.AsNoteVersion(d, nv.key, nv.replaces)
				out = append(out, mappings.Entry{Key: nv.key, ResourceType: "DocumentReference", Resource: wrap(d)})
			default:
				out = append(out, mappings.Entry{Key: o.PlanNoteKey(c), ResourceType: "DocumentReference", Resource: wrap(mappings.PlanNote(c, o))})
			}
		}
		return out
	}
	// Each write owes its Provenance where the EHR takes one (see
	// provenance.go). They are sent right after each write; the first
	// failure stops them for this push, without stopping the writes, and
	// fails the item once the writes are done.
	prov := provenanceOf(c, o)
	owedBy := func(k mappings.Key, typ string) owedFunc {
		return func(ctx context.Context, id, version, hash string) error {
			return e.owe(ctx, conn, prov, clientID, k, typ, id, version, hash)
		}
	}
	var provErr error
	sendProvenances := func() error {
		if provErr != nil || !conn.Plan.WritesProvenance() {
			return nil
		}
		n, err := e.sendOwedProvenances(ctx, conn, clientID)
		s.Provenances += n
		if errors.Is(err, errStore) {
			return err
		}
		provErr = err
		return nil
	}
	writeAll := func() error {
		var bundled map[mappings.Key]bool
		singlesDone := false // every resource the Bundle left was written one by one
		all := slices.Concat(goals(), team(), rest())
		if kind := e.bundleKind(conn, all); kind != "" {
			// In a transaction, references to new goals are their urn:uuid
			// fullUrls, which the EHR resolves inside the Bundle; a batch
			// carries only updates of resources the EHR already holds.
			w, written, done, err := e.pushBundle(ctx, conn, kind, all, canonical, clientID, ver, prov)
			s.add(w)
			if err != nil {
				return err
			}
			if done {
				w, err := e.linkGoals(ctx, conn, c, treatmentPlan)
				s.add(w)
				return err
			}
			// The Bundle did not write everything: push the rest one by
			// one, which finds what a refused transaction may have written
			// and says which resource is refused.
			bundled = written
			defer func() {
				if conn.bundles.settled(kind, singlesDone, e.now()) {
					e.log().InfoContext(ctx, "the EHR refuses these Bundles; writing one by one for a while", "connection", conn.Name, "mode", kind)
				}
			}()
		}
		for _, batch := range []func() []mappings.Entry{goals, team, rest} {
			for _, en := range batch() {
				if bundled[en.Key] {
					continue
				}
				w, err := e.write(ctx, conn, en.Key, en.ResourceType, en.Resource, canonical[en.Key], clientID, ver, owedBy(en.Key, en.ResourceType))
				s.add(w)
				if err != nil {
					return err
				}
				if w.Written > 0 {
					if err := sendProvenances(); err != nil {
						return err
					}
				}
			}
		}
		singlesDone = true
		// The goals are in the EHR now: the treatment plan can name them.
		w, err := e.linkGoals(ctx, conn, c, treatmentPlan)
		s.add(w)
		return err
	}
	// The rows of every record the push may write or refer to, in one
	// read; what the push writes is read again (see pushLedger).
	keys := make([]string, 0, len(canonical))
	for k := range canonical {
		keys = append(keys, ledgerKey(k))
	}
	slices.Sort(keys)
	if err := e.prefetchLedger(ctx, keys); err != nil {
		return s, err
	}
	// The rows just read may hold another worker's write of a newer copy
	// of the client (one that took the client's item over when this
	// push's lease ran out): this older copy would then pass as a change
	// on top of it and be written with its version as If-Match, which the
	// EHR takes. The client is read again after the rows, so a newer copy
	// written before them is seen here; one written after them meets 412
	// (see settleStale).
	if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
		return s, err
	}
	if err := writeAll(); err != nil {
		return s, err
	}
	if versioned {
		if err := e.versionWritten(ctx, conn, c.ID, seq, nv); err != nil {
			return s, err
		}
	}
	w, err := e.answerReferrerTask(ctx, conn, c)
	s.add(w)
	if err != nil {
		return s, err
	}
	// What the Bundle wrote, and what earlier pushes still owe.
	if err := sendProvenances(); err != nil {
		return s, err
	}
	return s, provErr
}

// canonicalEntries maps every resource of the client with no EHR-specific
// parts (no literal references, a note that amends nothing) and without the
// write time (withoutWriteTime), for hashing: content that differs only in
// when it was written is the same content, and is not written again.
func canonicalEntries(c *ips.Client, canon mappings.Options) map[mappings.Key]*bpb.ContainedResource {
	out := map[mappings.Key]*bpb.ContainedResource{}
	for _, en := range mappings.ClientEntries(c, canon) {
		withoutWriteTime(en.Resource)
		out[en.Key] = en.Resource
	}
	return out
}

// withoutWriteTime clears what the mapping dates with the write time: the
// chart note's date and Observation.issued (canonicalForm drops the same
// from what the EHR holds).
func withoutWriteTime(cr *bpb.ContainedResource) {
	if d := cr.GetDocumentReference(); d != nil {
		d.Date = nil
	}
	if ob := cr.GetObservation(); ob != nil {
		ob.Issued = nil
	}
	if qr := cr.GetQuestionnaireResponse(); qr != nil {
		qr.Authored = nil
	}
}

func consentsToEHR(c *ips.Client, def bool) bool {
	if c.Consent != nil && c.Consent.EHR != nil {
		return *c.Consent.EHR
	}
	return def
}

// write sends one resource if its canonical content changed since the
// ledger's record of it.
func (e *Engine) write(ctx context.Context, conn *Connection, k mappings.Key, typ string, res, canonical *bpb.ContainedResource, clientID string, ver store.Version, owe owedFunc) (s PushSummary, err error) {
	defer func() {
		switch {
		case err != nil && errors.Is(err, ehr.ErrConflict):
			e.record(ctx, conn.Name, typ, telemetry.OutcomeConflict, err)
		case err != nil:
			e.record(ctx, conn.Name, typ, telemetry.OutcomeFailed, err)
		case s.Written > 0:
			e.record(ctx, conn.Name, typ, telemetry.OutcomeWritten, nil)
		}
	}()
	return e.writeResource(ctx, conn, k, typ, res, canonical, clientID, ver, owe)
}

// writeResource writes one resource (see write). owe is told of every
// write of it the EHR is known to hold: the answer to it was read, or one
// whose answer was lost is found there (its Provenance is owed).
func (e *Engine) writeResource(ctx context.Context, conn *Connection, k mappings.Key, typ string, res, canonical *bpb.ContainedResource, clientID string, ver store.Version, owe owedFunc) (PushSummary, error) {
	var s PushSummary
	if canonical == nil {
		canonical = res
	}
	canonJSON, hash, err := canonicalJSON(canonical)
	if err != nil {
		return s, &pushError{msg: "push: encode " + typ}
	}
	base := goalBase(typ, canonJSON)
	lk := ledgerKey(k)
	le, err := e.ledgerRow(ctx, conn.Name, lk)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	if known && le.ContentHash == hash {
		s.Unchanged++
		e.record(ctx, conn.Name, typ, telemetry.OutcomeUnchanged, nil)
		return s, nil
	}
	rp := conn.Plan.Type(typ)
	if rp == nil {
		return s, &pushError{msg: "push: plan has no " + typ}
	}
	ifMatch := ""
	if known && rp.Concurrency == plan.IfMatch {
		ifMatch = le.VersionID
	}
	canRead := conn.Plan.Allows(typ, "read") || conn.Plan.Allows(typ, "search-type")
	// Without versioned updates (read-compare-write), or when the ledger has
	// no version to send (a write answered without one, a lost answer; or
	// no id, when a first write's answer was lost: it is found by search),
	// read first: compare with what the adapter wrote, and only then write,
	// so a clinician's edit is never overwritten without a trace.
	if known && (le.ResourceID != "" || rp.Idempotency == plan.ConditionalUpdate) && canRead &&
		(rp.Concurrency == plan.ReadCompareWrite || (rp.Concurrency == plan.IfMatch && le.VersionID == "")) {
		cur, err := e.readCurrent(ctx, conn, typ, k, le.ResourceID, res)
		if err != nil {
			return s, err
		}
		if cur == nil && le.ResourceID != "" {
			// Deleted in the EHR: written again as new (found by search
			// first, should it come back).
			known, le = false, store.LedgerEntry{}
		} else if cur != nil {
			w, stop, err := e.beforeWrite(ctx, conn, k, typ, &le, cur, hash, base, clientID, ver, owe)
			s.add(w)
			if stop || err != nil {
				return s, err
			}
			if rp.Concurrency == plan.IfMatch {
				ifMatch = cur.version
			}
		}
	}
	if ifMatch == "" && known && sentOnce(conn, typ) {
		// A first write of the goal went without a version and its answer
		// was not read; the search above did not find it. It may still be
		// on its way: a second one now could create the goal, and the
		// first, landing later, undo what is written after (see sentOnce).
		if wait := e.unansweredWait(conn, le); wait > 0 {
			return s, &pushError{msg: "push: an earlier first write of " + typ + " may still land; waiting before writing again", wait: wait}
		}
	}
	if (known && le.ResourceID != "") || rp.Idempotency == plan.ConditionalUpdate {
		// Remember what is about to be sent before sending it: if the
		// answer is lost (or the process dies), the EHR may hold this
		// content under a version the ledger never learns, and it must
		// not pass for someone else's change later. A record new to the
		// ledger gets a row without an id (plain creates record theirs
		// below, where their wait is decided).
		if !known {
			le = store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: typ, UpdatedAt: e.now()}
			known = true
		}
		if err := e.noteAttempt(ctx, conn.Name, &le, hash, ifMatch); err != nil {
			return s, err
		}
	}
	if typ == "Goal" {
		if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
			return s, err
		}
	}
	criteria := "identifier=" + url.QueryEscape(k.System()+"|"+k.Value())
	sent := e.now()

	var resp *ehr.Response
	switch {
	case rp.Idempotency == plan.ConditionalUpdate && conn.Plan.Allows(typ, "update"):
		body, err := mappings.MarshalCompact(res)
		if err != nil {
			return s, &pushError{msg: "push: encode " + typ}
		}
		if ifMatch == "" && createsFirst(conn, typ) {
			// No version to carry: a conditional create, which cannot
			// overwrite the goal should it arrive after other writes.
			if resp, err = conn.EHR.Create(ctx, typ, body, criteria); err != nil {
				return s, err
			}
			if resp.Status != http.StatusOK {
				break // created
			}
			// The goal was there already (an earlier write of it that
			// landed late, or an EHR copy the ledger lost): it is judged
			// like one found before a write, and updated only with the
			// version it holds.
			cur, err := e.currentOf(ctx, conn, typ, resp.Body)
			if err != nil {
				if cur, err = e.readCurrent(ctx, conn, typ, k, resp.ResourceID, res); err != nil {
					return s, err
				}
				if cur == nil {
					return s, &pushError{msg: "push: " + typ + " matched but could not be read"}
				}
			}
			cur.seen = sent
			w, stop, err := e.beforeWrite(ctx, conn, k, typ, &le, cur, hash, base, clientID, ver, owe)
			s.add(w)
			if stop || err != nil {
				return s, err
			}
			ifMatch = cur.version
			if err := e.noteAttempt(ctx, conn.Name, &le, hash, ifMatch); err != nil {
				return s, err
			}
			if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
				return s, err
			}
			sent = e.now()
		}
		if ifMatch == "" && sentOnce(conn, typ) {
			resp, err = conn.EHR.UpdateOnce(ctx, typ, criteria, body)
		} else {
			resp, err = conn.EHR.Update(ctx, typ, criteria, body, ifMatch)
		}
		if errors.Is(err, ehr.ErrConflict) {
			var w PushSummary
			resp, w, err = e.settleStale(ctx, conn, k, typ, le, hash, clientID, ver, res, func(v string) (*ehr.Response, error) {
				return conn.EHR.Update(ctx, typ, criteria, body, v)
			})
			s.add(w)
		}
		if err != nil || resp == nil {
			return s, err
		}
	default:
		id := ""
		if known && le.ResourceID != "" {
			id = le.ResourceID
		} else {
			// A record the ledger has no id for: a first sync, or a create
			// whose answer was lost. What a search finds is judged like a
			// read before a write: a clinician may have edited it since.
			seen := e.now()
			raw, err := e.searchRecord(ctx, conn, typ, k, res)
			if err != nil {
				return s, err
			}
			if raw != nil {
				cur, err := e.currentOf(ctx, conn, typ, raw)
				if err != nil {
					return s, err
				}
				cur.seen = seen
				w, stop, err := e.beforeWrite(ctx, conn, k, typ, &le, cur, hash, base, clientID, ver, owe)
				s.add(w)
				if stop || err != nil {
					return s, err
				}
				id = cur.id
				if rp.Concurrency == plan.IfMatch {
					ifMatch = cur.version
				}
				if typ == "Goal" {
					// As after any read before a write: a pull may have
					// merged what was found into the client meanwhile.
					if err := e.clientUnchanged(ctx, clientID, ver); err != nil {
						return s, err
					}
				}
				if le.Key == "" {
					le = store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: typ, UpdatedAt: e.now()}
				}
				if err := e.noteAttempt(ctx, conn.Name, &le, hash, ifMatch); err != nil {
					return s, err
				}
			}
		}
		if id != "" {
			if !conn.Plan.Allows(typ, "update") {
				return s, &pushError{msg: "push: " + typ + " exists but the EHR does not allow update"}
			}
			setID(res, id)
			body, err := mappings.MarshalCompact(res)
			if err != nil {
				return s, &pushError{msg: "push: encode " + typ}
			}
			resp, err = conn.EHR.Update(ctx, typ, id, body, ifMatch)
			if errors.Is(err, ehr.ErrConflict) {
				var w PushSummary
				resp, w, err = e.settleStale(ctx, conn, k, typ, le, hash, clientID, ver, res, func(v string) (*ehr.Response, error) {
					if rp.Concurrency != plan.IfMatch {
						v = ""
					}
					return conn.EHR.Update(ctx, typ, id, body, v)
				})
				s.add(w)
			}
			if err != nil || resp == nil {
				return s, err
			}
		} else {
			if !conn.Plan.Allows(typ, "create") {
				return s, &pushError{msg: "push: " + typ + " is new but the EHR does not allow create"}
			}
			body, err := mappings.MarshalCompact(res)
			if err != nil {
				return s, &pushError{msg: "push: encode " + typ}
			}
			ifNoneExist := ""
			if rp.Idempotency == plan.ConditionalCreate {
				ifNoneExist = criteria
			} else {
				// A plain create cannot be repeated safely. An earlier one
				// whose answer was lost may still land: until it has had
				// time to, the search above finding nothing proves nothing.
				if known && le.ResourceID == "" {
					if wait := e.unansweredWait(conn, le); wait > 0 {
						return s, &pushError{msg: "push: an earlier create of " + typ + " may still land; waiting before creating again", wait: wait}
					}
				}
				// Remember the attempt before sending it, so a crash or
				// a lost answer leaves that mark behind.
				if err := e.Store.LedgerPut(ctx, store.LedgerEntry{
					Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: typ,
					Attempted: store.WithAttempt(le.Attempted, store.Attempt{Hash: hash, At: e.now()}), UpdatedAt: e.now(),
				}); err != nil {
					return s, fmt.Errorf("%w: ledger: %w", errStore, err)
				}
			}
			resp, err = conn.EHR.Create(ctx, typ, body, ifNoneExist)
			if err != nil {
				return s, err
			}
		}
	}
	id := resp.ResourceID
	if id == "" && known {
		id = le.ResourceID
	}
	version := resp.VersionID
	if version == "" && id != "" && rp.Concurrency == plan.IfMatch && conn.Plan.Allows(typ, "read") {
		// The EHR answered without a version (no ETag, no versioned
		// Location, no body): read it back, or the next update would go
		// without If-Match.
		if r, err := conn.EHR.Read(ctx, typ, id); err == nil {
			version = r.VersionID
		}
	}
	if err := e.ledgerWritten(ctx, conn, le, k, typ, clientID, id, version, hash, base, resp.EarlierAttemptUnanswered, sent); err != nil {
		return s, err
	}
	if err := owe(ctx, id, version, hash); err != nil {
		return s, err
	}
	s.Written++
	return s, nil
}

// createsFirst reports whether a Goal's first write (no version to send as
// If-Match) goes as a conditional create (see plan.ResourcePlan
// ConditionalCreate). Only goals: they are the records both sides edit; a
// late first write of any other type is found by pull and written again
// (see pullWritten).
func createsFirst(conn *Connection, typ string) bool {
	rp := conn.Plan.Type(typ)
	return typ == "Goal" && rp != nil && rp.Concurrency == plan.IfMatch && rp.ConditionalCreate && conn.Plan.Allows(typ, "create")
}

// sentOnce reports whether a Goal's first write (no version to send as
// If-Match) is a conditional update sent once: the EHR updates goals with
// If-Match and conditionally by identifier but cannot create them
// conditionally, so the first write is a PUT Goal?identifier=… without
// If-Match. Repeated after a lost answer, it could create the goal while
// the first copy is still held by a slow EHR; a clinician edits the goal,
// and the held copy then lands over the edit. So it is sent once
// (ehr.Client.UpdateOnce) and, while it may still land (CreateSettle),
// not sent again: the next attempt searches for the goal first and, if
// it is there, writes with its version.
func sentOnce(conn *Connection, typ string) bool {
	rp := conn.Plan.Type(typ)
	return typ == "Goal" && rp != nil && rp.Concurrency == plan.IfMatch && rp.Idempotency == plan.ConditionalUpdate && !createsFirst(conn, typ)
}

// unansweredWait is how long to wait before writing again without If-Match
// (a plain create, or a goal's first write that is sent once) a record
// whose last such write, per the ledger row le, went unanswered: until
// CreateSettle has passed since it was sent; zero when none is pending.
func (e *Engine) unansweredWait(conn *Connection, le store.LedgerEntry) time.Duration {
	var last time.Time
	for _, a := range le.Attempted {
		if a.IfMatch == "" && a.At.After(last) {
			last = a.At
		}
	}
	if last.IsZero() {
		return 0
	}
	return max(0, e.createSettle(conn)-e.now().Sub(last))
}

// DefaultCreateSettle is Connection.CreateSettle when unset: four times the
// EHR client's default request timeout.
const DefaultCreateSettle = 2 * time.Minute

func (e *Engine) createSettle(conn *Connection) time.Duration {
	if conn.CreateSettle > 0 {
		return conn.CreateSettle
	}
	return DefaultCreateSettle
}

// clientUnchanged fails a goal's push when the client was saved since the
// push read it: a pull may have merged a clinician's change into the goal
// meanwhile, and writing what was read would undo it in the EHR. The
// client's pending item pushes the new content (a failure of an item whose
// client was saved again does not count as an attempt).
func (e *Engine) clientUnchanged(ctx context.Context, clientID string, ver store.Version) error {
	_, now, err := e.Store.GetClient(ctx, clientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &pushError{msg: "push: the client was removed while it was pushed"}
	case err != nil:
		return fmt.Errorf("%w: get client: %w", errStore, err)
	case now != ver:
		return errClientChanged
	}
	return nil
}

// errClientChanged stops a push whose client was saved since it was read.
var errClientChanged = &pushError{msg: "push: the client changed while it was pushed; pushing the new content next"}

// ledgerWritten records that the EHR holds content hash under id and
// version, as seen in an answer to a write sent (or a read made) at seen.
// Other attempts stay, unless the EHR can no longer apply them (see
// store.WithoutSuperseded): an older one may still show up in a stale read.
//
// For a Goal the ledger also keeps the canonical content (base, the bytes
// hashed: see goalBase) as the base of the next three-way merge (see
// applyGoalChange).
func (e *Engine) ledgerWritten(ctx context.Context, conn *Connection, le store.LedgerEntry, k mappings.Key, typ, clientID, id, version, hash string, base []byte, unanswered bool, seen time.Time) error {
	// The write's answer was read: it is no longer an open attempt, unless
	// an earlier attempt of the same call went unanswered and may still
	// be applied late.
	attempted, err := e.freshAttempts(ctx, conn.Name, ledgerKey(k), le.Attempted)
	if err != nil {
		return err
	}
	attempted = store.WithoutSuperseded(store.WithoutAttempt(attempted, hash), version, seen)
	if unanswered {
		// Taken as unconditional: it may still be applied late.
		attempted = store.WithAttempt(attempted, store.Attempt{Hash: hash, At: e.now()})
	}
	if err := e.Store.LedgerPut(ctx, store.LedgerEntry{
		Connection: conn.Name, Key: ledgerKey(k), ClientID: clientID, ResourceType: typ,
		ResourceID: id, VersionID: version, ContentHash: hash, UpdatedAt: e.now(),
		Attempted: attempted, Base: base,
	}); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}

// noteAttempt records in the ledger row le, before the write is sent, that
// content hash is being written conditioned on ifMatch ("" for none): if
// the answer is lost (or the process dies), the EHR may hold this content
// under a version the ledger never learns, and it must not pass for
// someone else's change later. UpdatedAt stays when the last answer was
// recorded (see inFlight).
func (e *Engine) noteAttempt(ctx context.Context, conn string, le *store.LedgerEntry, hash, ifMatch string) error {
	attempted, err := e.freshAttempts(ctx, conn, le.Key, le.Attempted)
	if err != nil {
		return err
	}
	le.Attempted = store.WithAttempt(attempted, store.Attempt{Hash: hash, At: e.now(), IfMatch: ifMatch})
	if err := e.Store.LedgerPut(ctx, *le); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return nil
}

// freshAttempts joins the attempts in hand with those the ledger row holds
// now. Another worker may have recorded one since this one read the row
// (a lease that expired under a slow write, a pull); an attempt lost from
// the row would let that write, landing later, pass for someone else's
// change.
func (e *Engine) freshAttempts(ctx context.Context, conn, key string, mine []store.Attempt) ([]store.Attempt, error) {
	now, err := e.Store.LedgerGet(ctx, conn, key)
	if errors.Is(err, store.ErrNotFound) {
		return mine, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	out := slices.Clone(mine)
	for _, a := range now.Attempted {
		i := slices.IndexFunc(out, func(m store.Attempt) bool { return m.Hash == a.Hash })
		switch {
		case i < 0:
			out = store.WithAttempt(out, a)
		case a.At.After(out[i].At):
			out[i] = a // the same content sent again since: its If-Match counts
		}
	}
	slices.SortStableFunc(out, func(a, b store.Attempt) int { return a.At.Compare(b.At) })
	return out, nil
}

// beforeWrite judges what the EHR holds of a record just before the
// adapter writes it: already the content to write (the ledger learns it;
// stop), the adapter's own earlier content (go on), or a change made in the
// EHR: a Goal's is merged into the IPS record (stop when that saved the
// client: its pending item pushes the merged goal), any other type's is
// recorded as a conflict the IPS side wins (go on). le is updated to what
// the ledger holds afterwards.
//
// Content the adapter sent whose answer was lost, found in the EHR, is its
// own write landed: owe hears of it (the write's Provenance is owed).
func (e *Engine) beforeWrite(ctx context.Context, conn *Connection, k mappings.Key, typ string, le *store.LedgerEntry, cur *current, hash string, base []byte, clientID string, ver store.Version, owe owedFunc) (s PushSummary, stop bool, err error) {
	mine := false
	if le.Key != "" {
		if mine, err = e.oursNow(ctx, conn, typ, *le, cur); err != nil {
			return s, true, err
		}
	}
	switch {
	case cur.hash == hash:
		if err := e.ledgerWritten(ctx, conn, *le, k, typ, clientID, cur.id, cur.version, hash, base, false, cur.seen); err != nil {
			return s, true, err
		}
		if mine {
			if err := owe(ctx, cur.id, cur.version, hash); err != nil {
				return s, true, err
			}
		}
		s.Unchanged++
		return s, true, nil
	case mine, le.ContentHash == "" && len(le.Attempted) == 0, cur.hash == "":
		// The adapter's own earlier content; a record under the adapter's
		// identifier the ledger knows nothing of (written before a crash
		// lost the ledger's row, or by an earlier installation), which is
		// the adapter's to overwrite; or content that cannot be judged yet
		// (see errUnresolved).
		return s, false, nil
	case typ == "Goal":
		merged, err := e.mergeEHRGoal(ctx, conn, k, *le, cur, clientID, ver)
		s.Conflicts++
		if err != nil || merged {
			return s, true, err
		}
		// Merged without a change on the IPS side: the ledger now holds
		// the EHR's version of the goal.
		if *le, err = e.Store.LedgerGet(ctx, conn.Name, ledgerKey(k)); err != nil {
			return s, true, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		return s, false, nil
	}
	if err := e.recordResourceConflict(ctx, conn, k, *le, cur, hash, clientID); err != nil {
		return s, true, err
	}
	s.Conflicts++
	return s, false, nil
}

// patientReference finds the client's Patient in the EHR by identifier and
// remembers it in the ledger. Without Patient search the resources refer to
// the patient by identifier alone.
func (e *Engine) patientReference(ctx context.Context, conn *Connection, pid ips.Identifier) (string, error) {
	lk := patientKey(pid)
	if le, err := e.Store.LedgerGet(ctx, conn.Name, lk); err == nil && le.ResourceID != "" {
		return "Patient/" + le.ResourceID, nil
	}
	if conn.PatientSystem != "" && pid.System == conn.PatientSystem && ehr.IsID(pid.Value) {
		// The EHR's own Patient id (a client taken in from a referral
		// whose subject was Patient/{id}): the reference is the id.
		return "Patient/" + pid.Value, nil
	}
	rp := conn.Plan.Type("Patient")
	name, ok := rp.Searches("identifier")
	if !ok || !conn.Plan.Allows("Patient", "search-type") {
		return "", nil
	}
	// A joint search of the lease's clients may have found it already
	// (see lookahead.go).
	ids := e.ahead.patientIDs(pid)
	if ids == nil {
		entries, err := conn.EHR.Search(ctx, "Patient", url.Values{name: {pid.System + "|" + pid.Value}})
		if err != nil {
			return "", err
		}
		ids = patientMatches(entries)
	}
	switch len(ids) {
	case 0:
		return "", &pushError{msg: "push: patient not found in the EHR by identifier"}
	case 1:
	default:
		return "", &pushError{msg: "push: patient identifier matches several EHR patients"}
	}
	if err := e.Store.LedgerPut(ctx, store.LedgerEntry{Connection: conn.Name, Key: lk, ResourceType: "Patient", ResourceID: ids[0], UpdatedAt: e.now()}); err != nil {
		return "", fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return "Patient/" + ids[0], nil
}

// patientMatches are the ids of the Patients a search by identifier found.
func patientMatches(entries []ehr.Entry) []string {
	var ids []string
	for _, en := range entries {
		var r struct {
			ID string `json:"id"`
		}
		if (en.Mode == "" || en.Mode == "match") && json.Unmarshal(en.Resource, &r) == nil && r.ID != "" {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// ledgerKey is the ledger's key for a record: its business identifier.
func ledgerKey(k mappings.Key) string { return k.System() + "|" + k.Value() }

func wrap[T interface{ ProtoReflect() protoreflect.Message }](r T) *bpb.ContainedResource {
	cr := &bpb.ContainedResource{}
	m := cr.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("oneof_resource")
	name := r.ProtoReflect().Descriptor().FullName()
	for i := range od.Fields().Len() {
		f := od.Fields().Get(i)
		if f.Message().FullName() == name {
			m.Set(f, protoreflect.ValueOfMessage(r.ProtoReflect()))
			return cr
		}
	}
	panic("syncer: not a resource type") // only reached for a programming error
}

// resource returns the resource message inside a ContainedResource.
func resource(cr *bpb.ContainedResource) protoreflect.Message {
	m := cr.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("oneof_resource"))
	return m.Get(fd).Message()
}

// setID gives the resource its EHR id, needed in the body of PUT Type/id.
func setID(cr *bpb.ContainedResource, id string) {
	r := resource(cr)
	fd := r.Descriptor().Fields().ByName("id")
	r.Set(fd, protoreflect.ValueOfMessage((&dtpb.Id{Value: id}).ProtoReflect()))
}

// subjectOf returns the literal subject reference of a resource, if any.
func subjectOf(cr *bpb.ContainedResource) string {
	r := resource(cr)
	fd := r.Descriptor().Fields().ByName("subject")
	if fd == nil || !r.Has(fd) {
		return ""
	}
	ref, ok := r.Get(fd).Message().Interface().(*dtpb.Reference)
	if !ok || ref.GetPatientId() == nil {
		return ""
	}
	return "Patient/" + ref.GetPatientId().GetValue()
}

// contentHash is the SHA-256 of the resource's canonical FHIR JSON.
func contentHash(cr *bpb.ContainedResource) (string, error) {
	_, h, err := canonicalJSON(cr)
	return h, err
}

// canonicalJSON is the resource's canonical FHIR JSON and its hash
// (contentHash), marshalled once: a push keeps the bytes of a Goal as the
// ledger's merge base (goalBase) rather than marshalling it again.
func canonicalJSON(cr *bpb.ContainedResource) ([]byte, string, error) {
	b, err := mappings.MarshalCompact(cr)
	if err != nil {
		return nil, "", err
	}
	return b, hashBytes(b), nil
}

// goalBase is what the ledger keeps as the base of a record's next
// three-way merge: a Goal's canonical JSON, nothing for other types.
func goalBase(typ string, canonJSON []byte) []byte {
	if typ != "Goal" {
		return nil
	}
	return canonJSON
}

// maxLeaseBatch is how many outbox items one worker leases at a time.
const maxLeaseBatch = 16

// parallelLeaseItems is how many outbox items the workers of PushParallel
// lease at a time between them: 8 each for the default two workers, so
// that one joint search covers 8 clients (see lookahead.go).
const parallelLeaseItems = 16

// PushParallel runs PushOnce in n workers at once, each leasing under its own
// owner name, and adds up what they did. Leases keep them off each other's
// clients; several workers help when the EHR answers slowly. Each worker
// leases parallelLeaseItems/n items at a time (at least one), not
// maxLeaseBatch: the last items of a pass are then spread over the workers
// instead of queued behind one of them, which matters most when each item
// takes a slow EHR seconds, and a worker holds no leases on items it will
// not reach for long. The items a worker leases together share their
// Patient and treatment plan searches (see lookahead.go). Progress, if
// set, sees the running totals of all workers together, one call at a time.
func (e *Engine) PushParallel(ctx context.Context, n int) (PushSummary, error) {
	if n <= 1 {
		return e.PushOnce(ctx)
	}
	var (
		mu     sync.Mutex
		total  PushSummary
		first  error
		wg     sync.WaitGroup
		latest = make([]PushSummary, n)
	)
	for i := range n {
		w := *e
		w.Owner = fmt.Sprintf("%s-%d", e.Owner, i)
		w.leaseBatch = max(1, parallelLeaseItems/n)
		w.Progress = nil
		if e.Progress != nil {
			w.Progress = func(s PushSummary) {
				mu.Lock()
				defer mu.Unlock()
				latest[i] = s
				var all PushSummary
				for _, l := range latest {
					all.add(l)
				}
				e.Progress(all)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := w.PushOnce(ctx)
			mu.Lock()
			defer mu.Unlock()
			total.add(s)
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	return total, first
}
