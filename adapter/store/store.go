package store

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Store is the contract both implementations fulfil and storetest checks.
// Consumers declare the smaller interfaces they need.
type Store interface {
	// GetClient returns a client and its version, or ErrNotFound.
	GetClient(ctx context.Context, id string) (*ips.Client, Version, error)
	// ListClients returns up to limit clients with ids greater than after,
	// in byte order of id (keyset paging).
	ListClients(ctx context.Context, after string, limit int) ([]Stored, error)
	// CountClients returns how many clients the store holds (what a
	// command that goes through them all counts its progress against).
	CountClients(ctx context.Context) (int, error)
	// SaveClients writes clients and enqueues an outbox item for each client
	// and each of connections, all in one transaction: all are saved or none.
	// A save makes the client's pending items due now with attempts reset.
	// A Stored with Version 0 must be new (ErrConflict if it exists); any
	// other Version must match the stored one (optimistic concurrency,
	// ErrConflict otherwise). It returns the new versions in input order.
	SaveClients(ctx context.Context, clients []Stored, connections []string) ([]Version, error)
	// ClientByPatient returns the client whose patient identifier is
	// system|value, or ErrNotFound. A patient is at most one client:
	// SaveClients refuses, with ErrConflict, a client whose patient
	// identifier another client already has.
	ClientByPatient(ctx context.Context, system, value string) (Stored, error)

	// Lease claims up to n due outbox items of a connection for owner until
	// now+lease, oldest due first. A lease is exclusive, over all owners and
	// replicas, until it expires; expired leases are claimable again. A
	// client has at most one item per connection, so at most one leased
	// there; its items on other connections are leased, completed and
	// failed independently, so that a slow or failing EHR does not hold up
	// the client's push to the others. The owner names one worker and must
	// be unique among live workers (Complete and Fail recognise the lease by
	// item and owner).
	Lease(ctx context.Context, connection, owner string, n int, lease time.Duration) ([]OutboxItem, error)
	// Complete removes a leased item, unless the client was saved again after
	// the lease was taken (then the item stays pending for the new change).
	// ErrConflict if the lease was lost to another owner, ErrNotFound if the
	// item is gone.
	Complete(ctx context.Context, item OutboxItem) error
	// Renew makes a leased item's lease last lease from now, for a worker
	// about to start on it after others of its batch: a lease that ran
	// out untaken is this owner's again. ErrConflict if another owner took
	// the item over, ErrNotFound if the item is gone.
	Renew(ctx context.Context, item OutboxItem, lease time.Duration) error
	// Fail records a failed attempt with a patient-free reason. The item is
	// retried at retryAt, or becomes a dead letter when it has now failed
	// maxAttempts times; dead reports which.
	Fail(ctx context.Context, item OutboxItem, reason string, retryAt time.Time, maxAttempts int) (dead bool, err error)
	// OutboxDepth counts pending items per connection (for metrics).
	OutboxDepth(ctx context.Context) (map[string]int, error)
	// OldestPending returns, per connection with pending items, when the
	// oldest of them was first enqueued: the sync lag's start. A client saved
	// again keeps its item's first enqueue time, so the lag never hides a
	// client that keeps changing.
	OldestPending(ctx context.Context) (map[string]time.Time, error)

	// DeadLetters lists a connection's dead letters ("" for all), oldest first.
	DeadLetters(ctx context.Context, connection string) ([]DeadLetter, error)
	// FailureReasons groups what is failing by connection and reason: the
	// pending items whose last attempt failed (attempts > 0; a save since
	// resets them, so its new content has not failed yet) and the dead
	// letters. Largest group (Pending+Dead) first, ties in byte order of
	// connection, then reason; connection "" means all.
	FailureReasons(ctx context.Context, connection string) ([]ReasonCount, error)
	// Replay turns a dead letter back into a pending outbox item, or ErrNotFound.
	Replay(ctx context.Context, id int64) error
	// SeedConnections is told, at start, which connections are enabled. A
	// connection enabled now but not the last time (new, or disabled in
	// between, when saves queued nothing for it) gets every client queued;
	// it returns how many per connection. A connection no longer enabled is
	// forgotten, so that enabling it again queues everything again. Replicas
	// starting together queue once.
	SeedConnections(ctx context.Context, enabled []string) (map[string]int, error)
	// LoadProgress reports how far the initial load of a connection has
	// come (the caseload SeedConnections queued when it was enabled), or
	// ErrNotFound for a connection not enabled, or seeded before the store
	// recorded loads.
	LoadProgress(ctx context.Context, connection string) (LoadProgress, error)
	// Enqueue queues one client for one connection again, as a save does
	// for that connection alone (a pending item is due now with attempts
	// reset and a new generation), without a new client version: a pull
	// that finds the EHR holding something other than what the adapter
	// wrote asks for the record to be pushed again. A missing client is
	// ignored.
	Enqueue(ctx context.Context, connection, clientID string) error
	// WatchOutbox returns a channel that is woken after a commit enqueued
	// or made due an outbox item of connection (SaveClients, Enqueue,
	// EnqueueAll, Replay, SeedConnections), so that a push worker need not
	// wait for its next poll. It is woken until ctx ends and never closed.
	// Wakes coalesce (the channel holds at most one) and may be spurious;
	// a wake may also be missed (the PostgreSQL listener is reconnecting;
	// another process wrote a SQLite file), so a worker still polls, less
	// often. SQLite wakes watchers of the same Store; PostgreSQL wakes
	// every Store on the same database and schema (replicas wake each
	// other) through NOTIFY.
	WatchOutbox(ctx context.Context, connection string) <-chan struct{}
	// EnqueueAll queues every client for a connection (a full reconcile),
	// leaving items already pending as they are; it returns how many it
	// queued.
	EnqueueAll(ctx context.Context, connection string) (int, error)

	// LedgerGet returns the ledger entry for a business identifier, or ErrNotFound.
	LedgerGet(ctx context.Context, connection, key string) (LedgerEntry, error)
	// LedgerGetMany returns the ledger entries of the given business
	// identifiers on a connection, by key, in one read: the same rows
	// LedgerGet would return one at a time. A key with no entry is absent
	// from the map (not an error); repeated keys are read once.
	LedgerGetMany(ctx context.Context, connection string, keys []string) (map[string]LedgerEntry, error)
	// LedgerByResource finds the entry for an EHR resource, or ErrNotFound.
	LedgerByResource(ctx context.Context, connection, resourceType, resourceID string) (LedgerEntry, error)
	// LedgerPut inserts or replaces the entry for (connection, key).
	LedgerPut(ctx context.Context, e LedgerEntry) error
	// LedgerPending lists a client's entries on a connection of one
	// resource type that have no EHR resource id yet (a write owed, or
	// sent and not confirmed), oldest UpdatedAt first, then by key. The
	// sync engine keeps the Provenances it owes an EHR so.
	LedgerPending(ctx context.Context, connection, clientID, resourceType string) ([]LedgerEntry, error)

	// Watermark returns how far polling of a resource type has read on a
	// connection; zero time if never.
	Watermark(ctx context.Context, connection, resourceType string) (time.Time, error)
	// SetWatermark moves it; it never moves backwards.
	SetWatermark(ctx context.Context, connection, resourceType string, at time.Time) error

	// AddConflict records both sides of a field changed on both sides.
	AddConflict(ctx context.Context, c Conflict) (int64, error)
	// Conflicts lists a connection's conflicts ("" for all connections),
	// open ones only unless all.
	Conflicts(ctx context.Context, connection string, all bool) ([]Conflict, error)
	// ResolveConflict closes a conflict with the resolution an administrator
	// chose; ErrConflict if it was already resolved.
	ResolveConflict(ctx context.Context, id int64, resolution string) error

	// ConnectionSettings lists the connections an administrator enabled
	// or disabled from the console, in byte order of name.
	ConnectionSettings(ctx context.Context) ([]ConnectionSetting, error)
	// SetConnectionSetting records that a connection was enabled or
	// disabled, replacing what was recorded for it before.
	SetConnectionSetting(ctx context.Context, s ConnectionSetting) error
	// ClearConnectionSetting forgets what was recorded for a connection
	// (the configuration file's enabled: applies to it again); clearing
	// one with nothing recorded is not an error.
	ClearConnectionSetting(ctx context.Context, name string) error

	// StartReadinessCheck records that a readiness check of a connection
	// began at at, run by by, in place of the connection's latest one;
	// ErrConflict if one began less than running before at and has not
	// finished (older unfinished runs are taken to have been abandoned by
	// a replica that stopped).
	StartReadinessCheck(ctx context.Context, connection, by string, at time.Time, running time.Duration) error
	// FinishReadinessCheck records the outcome of the run that began at
	// started: its report (JSON), or the problem that kept it from making
	// one. ErrNotFound if that run is no longer the latest.
	FinishReadinessCheck(ctx context.Context, connection string, started, at time.Time, report []byte, problem string) error
	// ReadinessCheck returns the latest readiness check of a connection,
	// or ErrNotFound when none was run.
	ReadinessCheck(ctx context.Context, connection string) (ReadinessCheck, error)

	Auditor

	// Close releases the database.
	Close() error
}

// Version is a client's optimistic-concurrency version: 1 on first save,
// incremented on every save.
type Version int64

// Stored is a client with the version it was read at (0 for a new client).
type Stored struct {
	Client  *ips.Client
	Version Version
	// UpdatedAt is when the store last saved the client (set on reads,
	// ignored by SaveClients).
	UpdatedAt time.Time
}

// OutboxItem is a leased unit of push work: bring one client's resources on
// one connection up to date.
type OutboxItem struct {
	ID         int64
	Connection string
	ClientID   string
	Attempts   int
	Owner      string
	// Generation lets Complete tell whether the client changed during the lease.
	Generation int64
}

// DeadLetter is an outbox item that kept failing.
type DeadLetter struct {
	ID         int64     `json:"id"`
	Connection string    `json:"connection"`
	ClientID   string    `json:"clientId"`
	Attempts   int       `json:"attempts"`
	Reason     string    `json:"reason"` // patient-free by contract
	FailedAt   time.Time `json:"failedAt"`
}

// ReasonCount is how many items of one connection failed for one reason:
// Pending are still retried, Dead are dead letters.
type ReasonCount struct {
	Connection string `json:"connection"`
	Reason     string `json:"reason"` // patient-free by contract, as Fail's reason
	Pending    int    `json:"pending"`
	Dead       int    `json:"dead"`
}

// LedgerEntry is what the adapter knows of one record's resource in one EHR.
type LedgerEntry struct {
	Connection   string
	Key          string // business identifier, "system|value"
	ClientID     string
	ResourceType string
	ResourceID   string
	VersionID    string // opaque: EHRs use integers, UUIDs or anything
	ContentHash  string // of what the adapter last wrote
	UpdatedAt    time.Time
	// Attempted holds the content hashes of writes sent whose answers were
	// not read (a lost reply, a timeout, a crash mid-request), with when
	// they were sent, oldest first, at most MaxAttempted. The EHR may hold
	// any of them, or apply one late: content that shows up under an
	// unknown version soon after is the adapter's own write.
	Attempted []Attempt
	// Base is what the EHR held as of the last sync, as canonical FHIR
	// JSON, for records both sides edit (goals): the common base of a
	// three-way merge. Empty when unknown.
	Base []byte
}

// Attempt is one write sent to an EHR whose answer was not read.
type Attempt struct {
	Hash string
	At   time.Time
	// IfMatch is the version the write was conditioned on (its If-Match),
	// "" for a write without one. A conditional write can only be applied
	// while the EHR holds that version; once the EHR is seen on another,
	// it can no longer land (see WithoutSuperseded).
	IfMatch string
}

// MaxAttempted bounds LedgerEntry.Attempted; older attempts are dropped.
const MaxAttempted = 4

// WithAttempt returns the attempts with a added last, keeping at most
// MaxAttempted and one entry per hash.
func WithAttempt(attempted []Attempt, a Attempt) []Attempt {
	out := WithoutAttempt(attempted, a.Hash)
	out = append(out, a)
	if len(out) > MaxAttempted {
		out = out[len(out)-MaxAttempted:]
	}
	return out
}

// WithoutAttempt returns the attempts without hash (its answer was read).
func WithoutAttempt(attempted []Attempt, hash string) []Attempt {
	var out []Attempt
	for _, a := range attempted {
		if a.Hash != hash && a.Hash != "" {
			out = append(out, a)
		}
	}
	return out
}

// WithoutSuperseded returns the attempts without the conditional ones the
// EHR can no longer apply: sent before seen, when the EHR was seen holding
// version, with an If-Match other than version. Such a write either was
// applied before then and has been written over since, or meets 412
// whenever it arrives (versions never come back), so content it sent that
// shows up later is someone else's. A version of "" (an EHR that did not
// say) supersedes nothing, and neither is a write without If-Match ever
// superseded this way: it may still land late.
func WithoutSuperseded(attempted []Attempt, version string, seen time.Time) []Attempt {
	if version == "" {
		return attempted
	}
	var out []Attempt
	for _, a := range attempted {
		if a.IfMatch != "" && a.IfMatch != version && a.At.Before(seen) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// JoinAttempted and SplitAttempted are the stores' column encoding of
// LedgerEntry.Attempted: hash@unix-microseconds, or
// hash@unix-microseconds@if-match (query-escaped) for a conditional write,
// separated by spaces.
func JoinAttempted(attempted []Attempt) string {
	parts := make([]string, 0, len(attempted))
	for _, a := range attempted {
		p := a.Hash + "@" + strconv.FormatInt(a.At.UnixMicro(), 10)
		if a.IfMatch != "" {
			p += "@" + url.QueryEscape(a.IfMatch)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// SplitAttempted reads what JoinAttempted wrote; "" is none. An entry
// without a time is kept with the zero time.
func SplitAttempted(s string) []Attempt {
	var out []Attempt
	for _, f := range strings.Fields(s) {
		parts := strings.SplitN(f, "@", 3)
		a := Attempt{Hash: parts[0]}
		if len(parts) > 1 {
			if us, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
				a.At = time.UnixMicro(us).UTC()
			}
		}
		if len(parts) > 2 {
			if v, err := url.QueryUnescape(parts[2]); err == nil {
				a.IfMatch = v
			}
		}
		out = append(out, a)
	}
	return out
}

// Conflict is a field both sides changed since the last sync.
type Conflict struct {
	ID         int64     `json:"id"`
	Connection string    `json:"connection"`
	ClientID   string    `json:"clientId"`
	Key        string    `json:"key"`   // business identifier of the record
	Field      string    `json:"field"` // e.g. "status"
	IPSValue   string    `json:"ipsValue"`
	EHRValue   string    `json:"ehrValue"`
	Winner     string    `json:"winner"`               // "ips" or "ehr": the configured winner that was applied
	Resolution string    `json:"resolution,omitempty"` // empty while open
	CreatedAt  time.Time `json:"createdAt"`
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
}

// ConnectionSetting is a connection an administrator enabled or disabled
// from the console: it wins over the configuration file's enabled: until it
// is cleared.
type ConnectionSetting struct {
	Name    string    `json:"name"`
	Enabled bool      `json:"enabled"`
	By      string    `json:"changedBy"` // an API key's name
	At      time.Time `json:"changedAt"`
}

// ReadinessCheck is the latest readiness check of a connection run from the
// console: running while Finished is zero.
type ReadinessCheck struct {
	Connection string
	Started    time.Time
	By         string // an API key's name
	Finished   time.Time
	// Report is the check's report as JSON (conformance/check.Report:
	// results and sync plan, no patient data); nil when Problem says why
	// none was made, or while it runs.
	Report  []byte
	Problem string
}

// Running reports whether the check has not finished.
func (c ReadinessCheck) Running() bool { return c.Finished.IsZero() }

// Errors with stable kinds, mapped once to HTTP status by the API.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("version conflict")
	// ErrUnavailable is wrapped by every error that says the database
	// cannot be reached right now (connection refused or reset, server
	// shutting down, file locked by another process past the busy wait,
	// file no longer openable): nothing is wrong with the request, and it
	// may succeed later. The API answers 503. Such errors carry a short
	// reason in place of the driver's message, which may name the server's
	// address, user, database or file.
	ErrUnavailable = errors.New("store unavailable")
)
