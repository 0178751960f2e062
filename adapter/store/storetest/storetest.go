package storetest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Run runs the suite against the implementation open makes.
//
// open must return a Store on the database that belongs to t: an empty one on
// t's first call, and the same database again on later calls with the same t
// (the suite closes the previous Store first), so that the suite can check
// that data survives Close and re-Open. Databases of different t must not
// share data: subtests run in parallel. Run closes every Store it opens;
// open may register the cleanup of the database itself with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	s := &suite{open: open}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"ClientRoundTrip", testClientRoundTrip},
		{"ClientVersions", testClientVersions},
		{"ConcurrentSavesOfOneClient", testConcurrentSavesOfOneClient},
		{"SaveIsAtomic", testSaveIsAtomic},
		{"SaveRejectsBadInput", testSaveRejectsBadInput},
		{"ListClientsPages", testListClientsPages},
		{"ErrorsArePatientFree", testErrorsArePatientFree},
		{"OnePatientOneClient", testOnePatientOneClient},
		{"OutboxCoalesces", testOutboxCoalesces},
		{"CompleteKeepsItemSavedDuringLease", testCompleteKeepsItemSavedDuringLease},
		{"LeasePerConnection", testLeasePerConnection},
		{"LeaseOrderAndLimit", testLeaseOrderAndLimit},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseRenewed", testLeaseRenewed},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"FailRetryDeadLetterReplay", testFailRetryDeadLetterReplay},
		{"FailBackoffAndSave", testFailBackoffAndSave},
		{"FailOfStaleGenerationNotCounted", testFailOfStaleGenerationNotCounted},
		{"OutboxNotFound", testOutboxNotFound},
		{"Enqueue", testEnqueue},
		{"FailureReasons", testFailureReasons},
		{"OutboxDepth", testOutboxDepth},
		{"SeedConnection", testSeedConnection},
		{"OldestPending", testOldestPending},
		{"WatchOutbox", testWatchOutbox},
		{"InitialLoad", testInitialLoad},
		{"Ledger", testLedger},
		{"Watermarks", testWatermarks},
		{"Conflicts", testConflicts},
		{"Audit", testAudit},
		{"ConnectionSettings", testConnectionSettings},
		{"ReadinessChecks", testReadinessChecks},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

type suite struct {
	open func(t *testing.T) store.Store
}

// store opens t's database and closes it when t ends.
func (s *suite) openStore(t *testing.T) store.Store {
	t.Helper()
	st := s.open(t)
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// save saves clients as new on connections and fails t on error.
func save(t *testing.T, st store.Store, connections []string, clients ...*ips.Client) []store.Version {
	t.Helper()
	in := make([]store.Stored, len(clients))
	for i, c := range clients {
		in[i] = store.Stored{Client: c}
	}
	vs, err := st.SaveClients(t.Context(), in, connections)
	if err != nil {
		t.Fatalf("SaveClients: %v", err)
	}
	return vs
}

// resave saves c again at version v and returns the new version.
func resave(t *testing.T, st store.Store, connections []string, c *ips.Client, v store.Version) store.Version {
	t.Helper()
	vs, err := st.SaveClients(t.Context(), []store.Stored{{Client: c, Version: v}}, connections)
	if err != nil {
		t.Fatalf("SaveClients(%s at %d): %v", c.ID, v, err)
	}
	return vs[0]
}

// lease leases and fails t on error.
func lease(t *testing.T, st store.Store, connection, owner string, n int, d time.Duration) []store.OutboxItem {
	t.Helper()
	items, err := st.Lease(t.Context(), connection, owner, n, d)
	if err != nil {
		t.Fatalf("Lease(%s, %s): %v", connection, owner, err)
	}
	return items
}

// leaseOne leases exactly one item.
func leaseOne(t *testing.T, st store.Store, connection, owner string) store.OutboxItem {
	t.Helper()
	items := lease(t, st, connection, owner, 10, time.Minute)
	if len(items) != 1 {
		t.Fatalf("Lease(%s, %s) = %d items, want 1: %+v", connection, owner, len(items), items)
	}
	return items[0]
}

func depth(t *testing.T, st store.Store) map[string]int {
	t.Helper()
	d, err := st.OutboxDepth(t.Context())
	if err != nil {
		t.Fatalf("OutboxDepth: %v", err)
	}
	return d
}

func wantDepth(t *testing.T, st store.Store, want map[string]int) {
	t.Helper()
	got := depth(t, st)
	// An implementation may or may not list connections with no items.
	for c, n := range got {
		if n == 0 {
			delete(got, c)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OutboxDepth (-want +got):\n%s", diff)
	}
}

func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// minimalClient is a valid client with only the required fields.
func minimalClient(id string) *ips.Client {
	return &ips.Client{
		ID:         id,
		Patient:    ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN-" + id},
		EnrolledOn: ips.MustDate("2025-02-01"),
	}
}

// Patient data in richClient that must never appear in an error string.
const (
	richMRN        = "MRN7654321"
	richSpecialist = "Dana O'Reilly-Núñez"
	richEmployer   = "Lakeside \"Fresh\" Bakery"
)

// richClient sets every field of the model (checked by
// testClientRoundTrip), with text that exercises JSON escaping.
func richClient(id string) *ips.Client {
	yes, no := true, false
	prefHours, target := 20.0, 24.5
	return &ips.Client{
		ID:         id,
		Patient:    ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: richMRN},
		EnrolledOn: ips.MustDate("2025-01-15"),
		ReferredOn: ips.MustDate("2025-01-02"),
		Referral:   &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-rich-2"},
		PastEpisodes: []*ips.Episode{{
			ReferredOn: ips.MustDate("2023-05-01"), Referral: &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-rich-1"},
			EnrolledOn: ips.MustDate("2023-05-10"), ClosedOn: ips.MustDate("2024-02-01"), ClosedReason: "moved away — for a while",
		}},
		ClosedOn:   ips.MustDate("2026-03-31"),
		Status:     ips.ClientClosed,
		Specialist: richSpecialist,
		// The specialist's own words, kept as typed.
		ClosedReason:      "Moved to her sister's — \"for now\"\nwill call",
		SpecialistContact: "dana@ips.example; 555-0142 ext. 7",
		Consent:           &ips.Consent{EHR: &yes, HIE: &no},
		Disclosure:        ips.DisclosurePartial,
		Preferences: &ips.WorkPreferences{
			JobTypes:     []string{"bakery", "retail\tstock", "☕ barista"},
			HoursPerWeek: &prefHours,
			Schedule:     "weekday mornings\nno weekends",
			Location:     `east side, near the "7" bus \ line`,
		},
		Goals: []*ips.Goal{
			{
				ID:                 "g1",
				Description:        "Work in a bakery café — 20 h/week <soon> & for good",
				Status:             ips.GoalCompleted,
				Achievement:        "achieved",
				TargetHoursPerWeek: &target,
				Start:              ips.MustDate("2025-01-20"),
				Due:                ips.MustDate("2025-12-31"),
				Notes: []ips.Note{
					{Text: "Clinician: steady mood, proud of the job", Date: ips.MustDate("2025-06-01"), Source: "riverside-epic"},
					{Text: "日本語のメモ", Date: ips.MustDate("2025-07-01"), Source: "clinic-b"},
				},
			},
			{
				ID:                 "g2",
				Description:        "Finish a food-handler certificate",
				Status:             ips.GoalOnHold,
				Achievement:        "no-progress",
				TargetHoursPerWeek: &prefHours,
				Start:              ips.MustDate("2025-03-01"),
				Due:                ips.MustDate("2026-06-30"),
				Notes:              []ips.Note{{Text: "paused", Date: ips.MustDate("2025-09-09"), Source: "riverside-epic"}},
			},
		},
		Supports: []*ips.Support{
			{ID: "s1", Type: ips.SupportJobDevelopment, Status: ips.SupportCompleted, Date: ips.MustDate("2025-01-22"), Goal: "g1", Note: "met the bakery's owner",
				Contact: &ips.Contact{Mode: ips.ContactFaceToFace, OnBehalfOf: ips.ContactForClient}},
			{ID: "s2", Type: ips.SupportEmployerContact, Status: ips.SupportInProgress, Date: ips.MustDate("2025-05-10"), Goal: "g2", Note: "weekly check-in",
				Contact: &ips.Contact{Mode: ips.ContactPhone, OnBehalfOf: ips.ContactForProgram}},
		},
		Jobs: []*ips.Job{
			{
				ID:           "j1",
				Employer:     richEmployer,
				Title:        "Baker's assistant",
				Occupation:   &ips.Coding{System: "urn:oid:2.16.840.1.114222.4.5.327", Code: "7800", Display: "Bakers"},
				Industry:     &ips.Coding{System: "urn:oid:2.16.840.1.114222.4.5.328", Code: "1190", Display: "Retail bakeries"},
				Start:        ips.MustDate("2025-02-17"),
				End:          ips.MustDate("2026-01-09"),
				EndReason:    "quit-with-plan",
				HoursPerWeek: 22.5,
				DaysPerWeek:  4,
				HourlyWage:   ips.Money{Value: 17.35, Currency: "USD"},
				Competitive:  true,
				Disclosed:    &no,
			},
		},
		Employment: []ips.EmploymentSnapshot{
			{Date: ips.MustDate("2025-01-15"), Status: ips.Unemployed},
			{Date: ips.MustDate("2025-02-17"), Status: ips.Employed},
		},
	}
}

// checkEveryFieldSet fails t if any field reachable from v is zero, so that
// the round trip keeps covering the whole model as it grows. A non-nil
// pointer to a scalar counts as set (a *bool false is a real answer).
func checkEveryFieldSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("richClient leaves %s unset", path)
			return
		}
		if v.Elem().Kind() == reflect.Struct {
			checkEveryFieldSet(t, v.Elem(), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() {
				checkEveryFieldSet(t, v.Field(i), path+"."+f.Name)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("richClient leaves %s empty", path)
		}
		for i := range v.Len() {
			checkEveryFieldSet(t, v.Index(i), path+"[]")
		}
	default:
		if v.IsZero() {
			t.Errorf("richClient leaves %s zero", path)
		}
	}
}

// noPatientData fails t if err's message holds any of richClient's patient
// data or a JSON document.
func noPatientData(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range []string{richMRN, richSpecialist, richEmployer, "bakery", "Bakery", `"patient"`, "{"} {
		if strings.Contains(msg, s) {
			t.Errorf("%s: error %q contains patient data or a document (%q)", what, msg, s)
		}
	}
}
