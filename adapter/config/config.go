package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// Config is the whole configuration of one ipsfhir deployment. The yaml
// tags are the key names of the file (see doc.go and docs/CONFIG.md).
type Config struct {
	Program     Program      `yaml:"program"`
	Store       Store        `yaml:"store"`
	Consent     Consent      `yaml:"consent"`
	Server      Server       `yaml:"server"`
	APIKeys     []APIKey     `yaml:"apiKeys"`
	Export      Export       `yaml:"export"`
	Reports     Reports      `yaml:"reports"`
	Telemetry   Telemetry    `yaml:"telemetry"`
	Sync        Sync         `yaml:"sync"`
	Audit       Audit        `yaml:"audit"`
	Connections []Connection `yaml:"connections"`
}

// Audit says how long the audit trail is kept.
type Audit struct {
	// Retention is how long an audit entry is kept before serve deletes
	// it, from MinAuditRetention (default DefaultAuditRetention).
	Retention time.Duration `yaml:"retention"`
}

// Audit trail retention: six years by default, the time HIPAA asks
// covered entities to keep required documentation (45 CFR 164.316(b)(2)).
const (
	DefaultAuditRetention = 6 * 365 * 24 * time.Hour
	MinAuditRetention     = 24 * time.Hour
)

// Program names the IPS program this deployment serves.
type Program struct {
	// ID scopes the business identifiers of every FHIR resource the adapter
	// writes (urn:ipsfhir:{id}:goal …). Changing it orphans what was synced.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
}

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Store says which IPS store to open.
type Store struct {
	Driver string `yaml:"driver"`
	// DSN is a file name for sqlite; a PostgreSQL URL or key=value string
	// for postgres, given by reference when it holds a password.
	DSN Value `yaml:"dsn"`
}

// Consent holds the program's defaults for clients whose consent omits a
// field (ips.Consent: a nil field means "the program's default").
type Consent struct {
	EHR bool `yaml:"ehr"`
	HIE bool `yaml:"hie"`
}

// AllowsEHR reports whether c's data may go to clinic EHRs: the client's
// own answer, or the program's default when the client gave none.
func (d Consent) AllowsEHR(c *ips.Client) bool {
	if c.Consent != nil && c.Consent.EHR != nil {
		return *c.Consent.EHR
	}
	return d.EHR
}

// AllowsHIE reports whether c's de-identified outcomes may go to HIEs.
func (d Consent) AllowsHIE(c *ips.Client) bool {
	if c.Consent != nil && c.Consent.HIE != nil {
		return *c.Consent.HIE
	}
	return d.HIE
}

// Server configures the HTTP listener.
type Server struct {
	Listen string `yaml:"listen"`
	// PublicURL is the service's address as callers reach it (through a
	// TLS proxy, say): https://ips.example.org. The FHIR facade's links,
	// fullUrls and export URLs start with it. Empty: http:// and the
	// address the service listens on (FHIRBase). Never a request's Host or
	// X-Forwarded-* headers, which the caller chooses.
	PublicURL string `yaml:"publicUrl"`
	// CursorKey is the secret the FHIR facade seals its search paging
	// links under. Every replica behind one PublicURL needs the same one.
	// Not given: a random key per process, so a paging link works only on
	// the replica that gave it out, and only until it restarts. At least
	// MinCursorKeyBytes once read.
	CursorKey Secret `yaml:"cursorKey"`
	// CursorTTL is how long a search's paging links stay valid, from
	// MinCursorTTL to MaxCursorTTL (default DefaultCursorTTL).
	CursorTTL time.Duration `yaml:"cursorTTL"`
	// CORSOrigins are the origins of the browser apps allowed to call
	// /fhir and /api/v1 from their pages (CORS): scheme://host[:port],
	// https unless the host is loopback, such as https://app.example.org.
	// Not given: no CORS headers, so browsers keep other sites' pages from
	// reading the answers. Callers still need an API key.
	CORSOrigins []string `yaml:"corsOrigins"`
}

// Bounds and default of server.cursorTTL.
const (
	DefaultCursorTTL = time.Hour
	MinCursorTTL     = time.Minute
	MaxCursorTTL     = 24 * time.Hour
)

// MinCursorKeyBytes is the shortest server.cursorKey accepted: 32 bytes,
// such as the 64 hex digits of openssl rand -hex 32.
const MinCursorKeyBytes = 32

// CursorKeyBytes reads the cursor key: nil when none is configured, an
// error naming the reference (never the key) when it cannot be read or is
// shorter than MinCursorKeyBytes.
func (s Server) CursorKeyBytes() ([]byte, error) {
	return readKey("server.cursorKey", s.CursorKey, MinCursorKeyBytes)
}

// FHIRBase is the absolute URL of the FHIR facade (/fhir): under PublicURL,
// or else http:// and the address the service listens on: bound, the
// listener's actual address when it is known (a port of 0 was chosen by the
// system), or Listen. A listener on every interface (0.0.0.0, [::] or no
// host) is named localhost: the one host name that is right on this
// machine. Nothing a request says changes it.
func (s Server) FHIRBase(bound net.Addr) string {
	if s.PublicURL != "" {
		return strings.TrimSuffix(s.PublicURL, "/") + "/fhir"
	}
	addr := s.Listen
	if bound != nil {
		addr = bound.String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/fhir"
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/fhir"
}

// API key roles.
const (
	RoleSpecialist = "specialist" // reads and writes IPS records
	RoleClinician  = "clinician"  // reads IPS records
	RoleAdmin      = "admin"      // reads records; runs connections, plans, dead letters
	RoleHIE        = "hie"        // de-identified outcomes only, never records
	RoleDirector   = "director"   // the program's outcomes only (console, MeasureReport), never records
)

// APIKey is one caller of the API. Only the SHA-256 of the key is kept, so
// the file (and anything that prints it) cannot be used to call the API.
type APIKey struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"`
	// SHA256 is the key's SHA-256, 64 hexadecimal digits.
	SHA256 string `yaml:"sha256"`
	// PseudonymScope (hie keys only) names the scope of the pseudonyms in
	// the caller's de-identified export: keys of one scope get the same
	// pseudonyms, keys of different scopes pseudonyms that cannot be
	// joined. Empty: the key's Name, so every HIE has a scope of its own.
	PseudonymScope string `yaml:"pseudonymScope"`
}

// Scope returns the key's pseudonym scope: PseudonymScope, or Name.
func (k APIKey) Scope() string {
	if k.PseudonymScope != "" {
		return k.PseudonymScope
	}
	return k.Name
}

// HIEKey returns the hie key named name, or nil.
func (c *Config) HIEKey(name string) *APIKey {
	for i := range c.APIKeys {
		if c.APIKeys[i].Name == name && c.APIKeys[i].Role == RoleHIE {
			return &c.APIKeys[i]
		}
	}
	return nil
}

// Sum returns the key's SHA-256 as bytes, or nil when SHA256 is not 64
// hexadecimal digits (Validate refuses that).
func (k APIKey) Sum() []byte {
	b, err := hex.DecodeString(k.SHA256)
	if err != nil || len(b) != 32 {
		return nil
	}
	return b
}

// Reports configures the quarterly outcome reports (ipsfhir report and
// /fhir/MeasureReport).
type Reports struct {
	// Threshold is the small-cell threshold: counts from 1 to Threshold-1
	// are withheld, with their complements. At least DefaultThreshold, the
	// CMS rule; a program may withhold more.
	Threshold int `yaml:"threshold"`
	// Protection is the least number of values every withheld small count
	// must keep, given everything a quarter's reports publish (interval
	// reasoning; docs/OUTCOMES.md). Default DefaultProtection; at least 2,
	// so that no withheld count is ever pinned to one value.
	Protection int `yaml:"protection"`
	// SpecialistKey is the program's secret key of the specialist codes
	// that stand for employment specialists in the reports
	// (outcomes.SpecialistCode: HMAC-SHA256 under it). Keep it secret and
	// keep it: the same key gives a specialist the same code every quarter,
	// a new key new codes. Not given: reports are not broken down by
	// specialist. At least MinSpecialistKeyBytes once read.
	SpecialistKey Secret `yaml:"specialistKey"`
}

// MinSpecialistKeyBytes is the shortest reports.specialistKey accepted: 32
// bytes, such as the 64 hex digits of openssl rand -hex 32.
const MinSpecialistKeyBytes = 32

// Key reads the specialist key: nil when none is configured, an error
// naming the reference (never the key) when it cannot be read or is shorter
// than MinSpecialistKeyBytes.
func (r Reports) Key() ([]byte, error) {
	return readKey("reports.specialistKey", r.SpecialistKey, MinSpecialistKeyBytes)
}

// DefaultProtection is reports.protection when unset: a withheld small
// count keeps at least 3 possible values.
const DefaultProtection = 3

// DefaultThreshold is the least small-cell threshold reports.threshold
// accepts, and its default: counts of 1 to 10 are never released.
const DefaultThreshold = 11

// Export configures the FHIR Bulk Data export (/fhir/$export).
type Export struct {
	// PseudonymKey is the secret key of the de-identified export HIE
	// operators (role hie) get: patient pseudonyms and resource ids are
	// HMAC-SHA256 under it. Keep it secret and keep it: the same key gives
	// the same pseudonyms in every export, a new key new ones. Not given:
	// hie exports are refused. At least MinPseudonymKeyBytes once read.
	PseudonymKey Secret `yaml:"pseudonymKey"`
	// JobDir is where /fhir/$export jobs keep their output files until
	// they are fetched, deleted or expire: patient data (de-identified
	// for hie callers, identified for admins) on disk. "" uses the
	// system's temporary directory (TMPDIR). Relative to the file.
	JobDir string `yaml:"jobDir"`
}

// MinPseudonymKeyBytes is the shortest export.pseudonymKey accepted: 32
// bytes, such as the 64 hex digits of openssl rand -hex 32.
const MinPseudonymKeyBytes = 32

// Key reads the pseudonymization key: nil when none is configured, an
// error naming the reference (never the key) when it cannot be read or is
// shorter than MinPseudonymKeyBytes.
func (e Export) Key() ([]byte, error) {
	return readKey("export.pseudonymKey", e.PseudonymKey, MinPseudonymKeyBytes)
}

// readKey reads the secret key at path: nil when none is configured.
func readKey(path string, ref Secret, minBytes int) ([]byte, error) {
	if ref.IsZero() {
		return nil, nil
	}
	v, err := ref.Resolve()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(v) < minBytes {
		return nil, fmt.Errorf("%s: %s is shorter than %d bytes; make one with openssl rand -hex 32", path, ref, minBytes)
	}
	return []byte(v), nil
}

// Telemetry configures traces, metrics and logs.
type Telemetry struct {
	// OTLPEndpoint is an OTLP/HTTP collector URL. Empty: the standard
	// OTEL_EXPORTER_OTLP_ENDPOINT variables decide (telemetry.Config), and
	// with none set nothing is exported.
	OTLPEndpoint string `yaml:"otlpEndpoint"`
	// ServiceName is service.name of traces and metrics. Empty: the
	// OTEL_SERVICE_NAME variable, else ipsfhir (telemetry.Config).
	ServiceName string `yaml:"serviceName"`
	LogLevel    string `yaml:"logLevel"`
}

// SlogLevel returns LogLevel as a slog level (info for an unknown name,
// which Validate refuses).
func (t Telemetry) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(t.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Sync tunes the sync engine.
type Sync struct {
	// PollInterval is how often each connection is polled for changes.
	PollInterval time.Duration `yaml:"pollInterval"`
	// Overlap re-reads this far behind the last watermark, for EHR clocks
	// and commits that land late.
	Overlap time.Duration `yaml:"overlap"`
	// MaxAttempts failed pushes make an outbox item a dead letter.
	MaxAttempts int `yaml:"maxAttempts"`
	// Workers push outbox items in parallel per replica.
	Workers int `yaml:"workers"`
	// LeaseFor is how long a worker holds an outbox item before another
	// replica may take it over.
	LeaseFor time.Duration `yaml:"leaseFor"`
	// PushInterval is how often, at least, each connection's outbox is
	// looked at for due items, independently of PollInterval: a slow pull
	// does not hold back pushes. A save wakes the push worker at once; this
	// is the fallback (a retry come due, a wake missed).
	PushInterval time.Duration `yaml:"pushInterval"`
}

// Connection is one clinic EHR.
type Connection struct {
	Name        string `yaml:"name"`
	FHIRBaseURL string `yaml:"fhirBaseUrl"`
	// Enabled connections get outbox items and are synced; a disabled one
	// is configured (and checkable) but left alone.
	Enabled bool `yaml:"enabled"`
	Auth    Auth `yaml:"auth"`
	// CAFile is a PEM bundle of CAs to trust for this EHR, added to the
	// system's; empty trusts the system's only.
	CAFile string `yaml:"caFile"`
	// PatientSystem is the EHR's Patient identifier system, used to turn a
	// referral whose subject is Patient/{id} into a client identifier.
	PatientSystem string `yaml:"patientSystem"`
	// ReferralCodes mark a ServiceRequest as a referral to IPS.
	ReferralCodes []Coding `yaml:"referralCodes"`
	// ReferralIntents are the ServiceRequest intents read as a referral
	// (default order).
	ReferralIntents []string `yaml:"referralIntents"`
	// ReferralPerformers name the program as a ServiceRequest performer;
	// with any given, a request addressed to another performer is not a
	// referral to this program, whatever its code.
	ReferralPerformers []ReferralPerformer `yaml:"referralPerformers"`
	// PRAPARE adds the PRAPARE employment answer to each employment status.
	PRAPARE bool    `yaml:"prapare"`
	Winners Winners `yaml:"winners"`
	// ClinicalText says where the goal notes this EHR's clinicians write
	// go: keep (the default) keeps them in the program's record and this
	// connection's EHR only; share writes them to every connection's EHR.
	ClinicalText ClinicalText `yaml:"clinicalText"`
	// Overrides force an IPS concept's path in the sync plan: concept
	// (employment-goal, ips-plan, job-outcome, employment-status,
	// chart-note, referral-intake, treatment-plan, specialist, care-team)
	// → native, chart-note or none (only none for the last three). A path the
	// EHR cannot take is refused when the plan is built.
	Overrides map[string]string `yaml:"overrides"`
	// Codes are the site's local codes for the employment observations
	// (job-outcome, employment-status), added to the standard LOINC code:
	// EHRs such as Epic take Observation writes only under codes the site
	// configured (a flowsheet row).
	Codes map[string]Coding `yaml:"codes"`
	// SiteCodedObservations says whether the EHR takes Observation writes
	// only under site-configured codes; left out, ipsfhir decides from the
	// EHR's CapabilityStatement (Epic, Oracle Health and athenahealth do).
	SiteCodedObservations *bool `yaml:"siteCodedObservations"`
	// TreatmentPlan says which of a patient's CarePlans is the clinic's
	// mental health treatment plan, which the IPS plan is linked to (see
	// TreatmentPlan).
	TreatmentPlan TreatmentPlan `yaml:"treatmentPlan"`
	// TestPatient is the EHR Patient id that `ipsfhir check --write-tests`
	// writes to and cleans up; never a real patient's.
	TestPatient string `yaml:"testPatient"`
	// Timeout bounds each request attempt to the EHR, from sending it to
	// reading the whole answer (ehr.Options.Timeout). A file that leaves it
	// out gets DefaultTimeout; a Connection built in code must set it.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency bounds this connection's requests in flight at once
	// (ehr.Options.MaxConcurrency), 1 to 64; the connection is pushed by
	// at least that many workers. A file that leaves it out gets
	// DefaultMaxConcurrency; a Connection built in code must set it.
	MaxConcurrency int `yaml:"maxConcurrency"`
	// RequestsPerSecond bounds the rate of this connection's requests
	// (ehr.Options.RequestsPerSecond); 0, the default, sets no bound until
	// the EHR throttles.
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	// Retry spaces the retries of this connection's failing outbox items
	// (syncer.RetrySchedule). A file that leaves it, or any of its keys,
	// out gets DefaultRetry's values; a Connection built in code must set it.
	Retry Retry `yaml:"retry"`
}

// TreatmentPlan picks the patient's mental health treatment plan among their
// CarePlans in the EHR: an active one with one of Categories, not written
// by ipsfhir. The IPS CarePlan is partOf it, and the chart note relates to
// it. The zero value takes every default (syncer.TreatmentPlanSearch, which
// a test holds to these keys).
type TreatmentPlan struct {
	// Categories mark the treatment plan, any one by system and code.
	// Empty: US Core's careplan-category assess-plan.
	Categories []Coding `yaml:"categories"`
	// Choose picks one of several: lastUpdated (the most recently
	// updated; the default) or periodStart (the latest to start).
	Choose string `yaml:"choose"`
	// Refresh is how long the answer found for a client is used before
	// the next push of the client searches again. Zero: 24h.
	Refresh time.Duration `yaml:"refresh"`
	// AddGoals adds references to the client's IPS goals to the treatment
	// plan (CarePlan.goal): an update of the clinic's own CarePlan, made
	// only where the EHR updates CarePlan with If-Match and goals are
	// written natively. Off by default: the clinic owns its plan.
	AddGoals bool `yaml:"addGoals"`
}

// Ways TreatmentPlan.Choose picks among several treatment plans.
const (
	ChooseLastUpdated = "lastUpdated"
	ChoosePeriodStart = "periodStart"
)

// TreatmentPlanCategories returns Categories as domain codings, nil for
// the default.
func (t TreatmentPlan) TreatmentPlanCategories() []ips.Coding {
	if len(t.Categories) == 0 {
		return nil
	}
	out := make([]ips.Coding, len(t.Categories))
	for i, c := range t.Categories {
		out[i] = ips.Coding{System: c.System, Code: c.Code}
	}
	return out
}

func (t TreatmentPlan) problems(p string, ps *problems) {
	for i, c := range t.Categories {
		cp := index(child(p, "categories"), i)
		if c.System == "" {
			ps.add(child(cp, "system"), "is required")
		} else if !isAbsoluteURI(c.System) {
			ps.add(child(cp, "system"), "must be an absolute URI")
		}
		if c.Code == "" {
			ps.add(child(cp, "code"), "is required")
		}
	}
	switch t.Choose {
	case "", ChooseLastUpdated, ChoosePeriodStart:
	default:
		ps.add(child(p, "choose"), "must be %s or %s", ChooseLastUpdated, ChoosePeriodStart)
	}
	if t.Refresh != 0 && t.Refresh < time.Minute {
		ps.add(child(p, "refresh"), "must be at least 1m (or left out for 24h): each refresh is a search per client pushed")
	}
}

// Retry spaces the retries of a connection's failing outbox items: Initial
// after the first failure, doubling up to Max, each delay spread by up to
// ±Jitter (a fraction: 0.2 is ±20%) so items that failed together do not
// come back together. An EHR's Retry-After can lengthen a delay, never
// shorten it.
type Retry struct {
	Initial time.Duration `yaml:"initial"`
	Max     time.Duration `yaml:"max"`
	Jitter  float64       `yaml:"jitter"`
}

// DefaultRetry is the retry schedule of a connection that configures none:
// 30 s, 1 min, 2 min … up to 1 h, ±20%. It is syncer.DefaultRetry (a test
// holds the two together; config does not import the sync engine).
var DefaultRetry = Retry{Initial: 30 * time.Second, Max: time.Hour, Jitter: 0.2}

// Concepts whose observations take a site code (Connection.Codes).
var codedConcepts = []plan.Concept{plan.JobOutcome, plan.EmploymentStatus}

// PlanOptions returns the plan options the connection's keys give.
// Validate has checked them.
func (c Connection) PlanOptions() plan.Options {
	o := plan.Options{SiteCodedObservations: c.SiteCodedObservations, AddGoalsToTreatmentPlan: c.TreatmentPlan.AddGoals}
	for k, v := range c.Overrides {
		if o.Overrides == nil {
			o.Overrides = map[plan.Concept]plan.Path{}
		}
		o.Overrides[plan.Concept(k)] = plan.Path(v)
	}
	for k := range c.Codes {
		if o.SiteCodes == nil {
			o.SiteCodes = map[plan.Concept]bool{}
		}
		o.SiteCodes[plan.Concept(k)] = true
	}
	return o
}

// SiteCodings returns Codes as domain codings by concept.
func (c Connection) SiteCodings() map[plan.Concept]ips.Coding {
	if len(c.Codes) == 0 {
		return nil
	}
	out := map[plan.Concept]ips.Coding{}
	for k, v := range c.Codes {
		out[plan.Concept(k)] = ips.Coding{System: v.System, Code: v.Code, Display: v.Display}
	}
	return out
}

// setDefaults gives a connection read from a file its defaults before the
// file's keys are applied.
func (c *Connection) setDefaults() {
	c.Winners = DefaultWinners
	c.ClinicalText = ClinicalTextKeep
	c.ReferralCodes = defaultReferralCodes()
	c.ReferralIntents = slices.Clone(mappings.DefaultReferralIntents)
	c.Timeout = DefaultTimeout
	c.MaxConcurrency = DefaultMaxConcurrency
	c.Retry = DefaultRetry
}

// ReferralCodings returns ReferralCodes as domain codings.
func (c Connection) ReferralCodings() []ips.Coding {
	out := make([]ips.Coding, len(c.ReferralCodes))
	for i, rc := range c.ReferralCodes {
		out[i] = ips.Coding{System: rc.System, Code: rc.Code, Display: rc.Display}
	}
	return out
}

// ReferralPerformer names the program as a ServiceRequest performer: a
// reference to its Organization, HealthcareService or CareTeam in the EHR
// (HealthcareService/ips-1), or an identifier of it (system and value).
type ReferralPerformer struct {
	Reference string `yaml:"reference"`
	System    string `yaml:"system"`
	Value     string `yaml:"value"`
}

// performerTypes are the resource types that can stand for the program
// as a ServiceRequest performer.
var performerTypes = []string{"Organization", "HealthcareService", "CareTeam"}

// ReferralMatch says which ServiceRequests are referrals to the program on
// this connection.
func (c Connection) ReferralMatch() mappings.ReferralMatch {
	m := mappings.ReferralMatch{Codes: c.ReferralCodings(), Intents: slices.Clone(c.ReferralIntents)}
	for _, p := range c.ReferralPerformers {
		m.Performers = append(m.Performers, mappings.ReferralPerformer{Reference: p.Reference, Identifier: ips.Identifier{System: p.System, Value: p.Value}})
	}
	return m
}

// Auth types.
const (
	AuthNone         = "none"
	AuthBearer       = "bearer"
	AuthSMARTBackend = "smart-backend"
)

// Auth says how the adapter authenticates to an EHR.
type Auth struct {
	Type string `yaml:"type"`
	// Token is the bearer token (type bearer).
	Token Secret `yaml:"token"`
	// The rest is SMART Backend Services (type smart-backend): a signed JWT
	// assertion exchanged for an access token.
	ClientID   string   `yaml:"clientId"`
	PrivateKey Secret   `yaml:"privateKey"` // PEM
	KeyID      string   `yaml:"keyId"`      // "kid" of the JWT header; empty: the key's JWK thumbprint (RFC 7638)
	Alg        string   `yaml:"alg"`        // RS384 or ES384, the two SMART requires servers to accept
	Scopes     []string `yaml:"scopes"`
	// TokenURL overrides the token endpoint found in the EHR's
	// .well-known/smart-configuration.
	TokenURL string `yaml:"tokenUrl"`
}

// Coding is a code in a code system.
type Coding struct {
	System  string `yaml:"system"`
	Code    string `yaml:"code"`
	Display string `yaml:"display"`
}

func defaultReferralCodes() []Coding {
	out := make([]Coding, len(mappings.DefaultReferralCodes))
	for i, c := range mappings.DefaultReferralCodes {
		out[i] = Coding{System: c.System, Code: c.Code, Display: c.Display}
	}
	return out
}

// Side names a side of a sync: the IPS program or the clinic EHR.
type Side string

// Sides.
const (
	SideIPS Side = "ips"
	SideEHR Side = "ehr"
)

// ClinicalText is a connection's choice for its clinicians' free text.
type ClinicalText string

// ClinicalText values.
const (
	// ClinicalTextKeep keeps a clinic's clinical free text out of other
	// clinics' charts.
	ClinicalTextKeep ClinicalText = "keep"
	// ClinicalTextShare writes it to every connection's EHR.
	ClinicalTextShare ClinicalText = "share"
)

// Winners says which side's value is applied when both sides changed a
// goal field since the last sync. Either way both values are kept in a
// conflict record for an administrator; the winner only decides what takes
// effect meanwhile.
type Winners struct {
	GoalStatus      Side `yaml:"goalStatus"`
	GoalAchievement Side `yaml:"goalAchievement"`
	GoalNotes       Side `yaml:"goalNotes"`
	GoalDescription Side `yaml:"goalDescription"`
	GoalTarget      Side `yaml:"goalTarget"`
}

// DefaultWinners gives the clinical side the clinical status (lifecycle and
// achievement) and the notes clinicians write, and the IPS side the goal in
// the client's words and its target, which the specialist records with the
// client.
var DefaultWinners = Winners{GoalStatus: SideEHR, GoalAchievement: SideEHR, GoalNotes: SideEHR, GoalDescription: SideIPS, GoalTarget: SideIPS}

// Defaults of keys the file may leave out.
const (
	DefaultListen       = "127.0.0.1:8080" // loopback: nothing is exposed until someone decides to
	DefaultSQLiteDSN    = "ipsfhir.db"
	DefaultLogLevel     = "info"
	DefaultPollInterval = 5 * time.Minute
	DefaultOverlap      = 2 * time.Minute
	DefaultMaxAttempts  = 8
	DefaultWorkers      = 2
	DefaultLeaseFor     = 2 * time.Minute
	DefaultPushInterval = 5 * time.Second
	// DefaultTimeout bounds each EHR request attempt: the ehr package's
	// own default.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxConcurrency bounds each connection's requests in flight:
	// the ehr package's own default.
	DefaultMaxConcurrency = 4
	// MaxConcurrencyLimit is the most maxConcurrency may be.
	MaxConcurrencyLimit = 64
)

// Default returns the configuration an empty file gives: program "local",
// an SQLite store in ipsfhir.db, consent to EHR sharing but not HIE sharing
// by default, the API on loopback, no API keys (so no caller is let in), no
// telemetry export and no connections.
func Default() *Config {
	c := defaults()
	c.fill()
	return c
}

// defaults are the defaults that do not depend on other keys.
func defaults() *Config {
	return &Config{
		Program:   Program{ID: ips.DefaultProgramID},
		Store:     Store{Driver: DriverSQLite},
		Consent:   Consent{EHR: true, HIE: false},
		Server:    Server{Listen: DefaultListen, CursorTTL: DefaultCursorTTL},
		Audit:     Audit{Retention: DefaultAuditRetention},
		Telemetry: Telemetry{LogLevel: DefaultLogLevel},
		Reports:   Reports{Threshold: DefaultThreshold, Protection: DefaultProtection},
		Sync: Sync{PollInterval: DefaultPollInterval, Overlap: DefaultOverlap, MaxAttempts: DefaultMaxAttempts,
			Workers: DefaultWorkers, LeaseFor: DefaultLeaseFor, PushInterval: DefaultPushInterval},
	}
}

// fill applies defaults that depend on other keys: only SQLite has a
// default DSN (a PostgreSQL store must be named).
func (c *Config) fill() {
	if c.Store.Driver == DriverSQLite && c.Store.DSN.IsZero() {
		c.Store.DSN = Value{Plain: DefaultSQLiteDSN}
	}
}

// Load reads and checks the configuration file at path. Relative file names
// in it (the SQLite file, secret files, CA files) are taken relative to the
// file's directory, so the service finds them whatever its working
// directory. On any problem it returns a *ValidationError listing all.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	c, err := Parse(data)
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.File = path
		return nil, ve
	}
	if err != nil {
		return nil, err
	}
	c.relativeTo(filepath.Dir(path))
	return c, nil
}

// Parse decodes and checks a configuration. Unknown keys, values of the
// wrong type, inline secrets and every rule Validate checks are problems;
// on any it returns a *ValidationError listing all of them with their key
// paths and lines. Relative file names stay relative to the working
// directory.
func Parse(data []byte) (*Config, error) {
	c := defaults()
	d := decodeDocument(data, c)
	c.fill()
	ps := d.ps
	for _, p := range c.problems() {
		if !d.ps.covered(p.Path) {
			ps = append(ps, p)
		}
	}
	for i := range ps {
		ps[i].Line = d.lineOf(ps[i].Path)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// lineOf finds the line of path's key, or of its nearest enclosing key.
func (d *decoder) lineOf(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			return 0
		}
		path = path[:cut]
	}
	return 0
}

// relativeTo makes relative file names relative to dir.
func (c *Config) relativeTo(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if c.Store.Driver == DriverSQLite {
		c.Store.DSN.Plain = abs(c.Store.DSN.Plain)
	}
	c.Store.DSN.Ref.File = abs(c.Store.DSN.Ref.File)
	c.Export.PseudonymKey.File = abs(c.Export.PseudonymKey.File)
	c.Export.JobDir = abs(c.Export.JobDir)
	c.Reports.SpecialistKey.File = abs(c.Reports.SpecialistKey.File)
	c.Server.CursorKey.File = abs(c.Server.CursorKey.File)
	for i := range c.Connections {
		cn := &c.Connections[i]
		cn.CAFile = abs(cn.CAFile)
		cn.Auth.Token.File = abs(cn.Auth.Token.File)
		cn.Auth.PrivateKey.File = abs(cn.Auth.PrivateKey.File)
	}
}

// EnabledConnections returns the names of the enabled connections, in file
// order: the connections a change to a client is queued for.
func (c *Config) EnabledConnections() []string {
	var out []string
	for _, cn := range c.Connections {
		if cn.Enabled {
			out = append(out, cn.Name)
		}
	}
	return out
}

// Connection returns the connection named name, or nil.
func (c *Config) Connection(name string) *Connection {
	for i := range c.Connections {
		if c.Connections[i].Name == name {
			return &c.Connections[i]
		}
	}
	return nil
}

// Validate checks the rules of a configuration built in code or read from a
// file, and returns a *ValidationError listing every problem with its key
// path, or nil. (Parse also checks what only a file can get wrong: unknown
// keys, wrong types, inline secrets.)
func (c *Config) Validate() error { return c.problems().err() }

var (
	programIDPattern      = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	connectionNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envNamePattern        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hexSHA256Pattern      = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	pseudonymScopePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$`)
	// A key=value PostgreSQL DSN names its password as password=…
	kvPasswordPattern = regexp.MustCompile(`(?i)(^|\s)password\s*=`)
)

func (c *Config) problems() problems {
	var ps problems
	if !programIDPattern.MatchString(c.Program.ID) {
		ps.add("program.id", "must be 1 to 64 letters, digits, '-' or '.'")
	}
	c.storeProblems(&ps)
	c.serverProblems(&ps)
	c.apiKeyProblems(&ps)
	secretProblems(&ps, "export.pseudonymKey", c.Export.PseudonymKey, false)
	secretProblems(&ps, "reports.specialistKey", c.Reports.SpecialistKey, false)
	c.telemetryProblems(&ps)
	c.syncProblems(&ps)
	if c.Audit.Retention < MinAuditRetention {
		ps.add("audit.retention", "must be at least 24h: how long the audit trail is kept (default 52560h, six years)")
	}
	if c.Reports.Protection < 2 {
		ps.add("reports.protection", "must be at least 2: a withheld count must never be narrowed to a single value (default %d)", DefaultProtection)
	}
	if c.Reports.Threshold < DefaultThreshold {
		ps.add("reports.threshold", "must be at least %d: counts of 1 to %d are never released (ipsfhir report --threshold can go lower for a program's own eyes)", DefaultThreshold, DefaultThreshold-1)
	}
	names := map[string]int{}
	for i := range c.Connections {
		p := index("connections", i)
		cn := &c.Connections[i]
		if j, dup := names[cn.Name]; dup && cn.Name != "" {
			ps.add(child(p, "name"), "is the name of connections[%d] too; names must be unique", j)
		} else {
			names[cn.Name] = i
		}
		cn.problems(p, &ps)
	}
	return ps
}

func (c *Config) storeProblems(ps *problems) {
	dsn := c.Store.DSN
	secretProblems(ps, "store.dsn", dsn.Ref, false)
	switch c.Store.Driver {
	case DriverSQLite:
		p := dsn.Plain
		if dsn.Ref.IsZero() && (p == "" || p == ":memory:" || strings.HasPrefix(p, "file:") || strings.Contains(p, "?")) {
			ps.add("store.dsn", "must be a plain file name for sqlite (no file: URI, ?options or :memory:)")
		}
	case DriverPostgres:
		switch {
		case dsn.IsZero():
			ps.add("store.dsn", "is required for postgres: a DSN without a password, or {env: NAME} or {file: PATH}")
		case dsn.Ref.IsZero():
			has, ok := dsnHasPassword(dsn.Plain)
			if !ok {
				ps.add("store.dsn", "is not a valid PostgreSQL URL")
			} else if has {
				ps.add("store.dsn", "holds a password, which is refused in the file: give the DSN by reference as {env: NAME} or {file: PATH}")
			}
		}
	default:
		ps.add("store.driver", "must be one of: sqlite, postgres")
	}
}

// dsnHasPassword reports whether a PostgreSQL DSN (URL or key=value) holds
// a password; ok is false for a URL that does not parse.
func dsnHasPassword(dsn string) (has, ok bool) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return false, false // url's error quotes the DSN: not passed on
		}
		if _, set := u.User.Password(); set {
			return true, true
		}
		return u.Query().Has("password"), true
	}
	return kvPasswordPattern.MatchString(dsn), true
}

func (c *Config) serverProblems(ps *problems) {
	host, port, err := net.SplitHostPort(c.Server.Listen)
	if err != nil {
		ps.add("server.listen", "must be host:port, such as 127.0.0.1:8080 or :8080")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ps.add("server.listen", "must end in a port number from 0 to 65535")
	}
	if host != "" && strings.ContainsAny(host, " /") {
		ps.add("server.listen", "must be host:port, such as 127.0.0.1:8080 or :8080")
	}
	if c.Server.PublicURL != "" {
		urlProblems(ps, "server.publicUrl", c.Server.PublicURL)
	}
	secretProblems(ps, "server.cursorKey", c.Server.CursorKey, false)
	if c.Server.CursorTTL < MinCursorTTL || c.Server.CursorTTL > MaxCursorTTL {
		ps.add("server.cursorTTL", "must be from 1m to 24h: how long a FHIR search's paging links stay valid (default 1h)")
	}
	for i, o := range c.Server.CORSOrigins {
		originProblems(ps, index("server.corsOrigins", i), o)
	}
}

// originProblems checks a CORS origin: scheme://host[:port], as browsers
// send it in Origin, https unless the host is loopback.
func originProblems(ps *problems, path, s string) {
	const shape = "must be an origin, scheme://host[:port] with no path, such as https://app.example.org"
	if s == "*" || s == "null" {
		ps.add(path, "must name one origin: %s is not allowed, since every caller's page could then read the answers; list each app's origin", s)
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		ps.add(path, shape)
		return
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		ps.add(path, shape)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			ps.add(path, "must use https: a page served over plain http could be changed on its way to the browser; http is allowed only for a loopback host (localhost, 127.0.0.0/8, [::1])")
		}
	default:
		ps.add(path, shape)
	}
}

func (c *Config) apiKeyProblems(ps *problems) {
	names := map[string]int{}
	sums := map[string]int{}
	for i, k := range c.APIKeys {
		p := index("apiKeys", i)
		if k.Name == "" {
			ps.add(child(p, "name"), "is required: it names the caller in the access log")
		} else if j, dup := names[k.Name]; dup {
			ps.add(child(p, "name"), "is the name of apiKeys[%d] too; names must be unique", j)
		} else {
			names[k.Name] = i
		}
		switch k.Role {
		case RoleSpecialist, RoleClinician, RoleAdmin, RoleHIE, RoleDirector:
		case "":
			ps.add(child(p, "role"), "is required: one of specialist, clinician, admin, hie, director")
		default:
			ps.add(child(p, "role"), "must be one of: specialist, clinician, admin, hie, director")
		}
		switch {
		case k.PseudonymScope == "":
		case k.Role != RoleHIE:
			ps.add(child(p, "pseudonymScope"), "is used only by hie keys: it scopes the pseudonyms of their de-identified export")
		case !pseudonymScopePattern.MatchString(k.PseudonymScope):
			ps.add(child(p, "pseudonymScope"), "must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
		}
		switch {
		case k.SHA256 == "":
			ps.add(child(p, "sha256"), "is required: the key's SHA-256 as 64 hexadecimal digits")
		case !hexSHA256Pattern.MatchString(k.SHA256):
			// Someone may have pasted the key itself: say how to hash it.
			ps.add(child(p, "sha256"), "must be the key's SHA-256 as 64 hexadecimal digits (printf %%s \"$KEY\" | sha256sum); the key itself never goes in the file")
		default:
			sum := strings.ToLower(k.SHA256)
			if j, dup := sums[sum]; dup {
				ps.add(child(p, "sha256"), "is the same key as apiKeys[%d]; give each caller a key of its own", j)
			} else {
				sums[sum] = i
			}
		}
	}
}

func (c *Config) telemetryProblems(ps *problems) {
	t := c.Telemetry
	if t.OTLPEndpoint != "" {
		// Plain http is allowed: telemetry carries no patient data (a rule
		// the telemetry package enforces), and collectors commonly listen
		// on http inside a pod or compose network.
		u, err := url.Parse(t.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps.add("telemetry.otlpEndpoint", "must be an http or https URL of an OTLP/HTTP collector, or empty (then OTEL_EXPORTER_OTLP_ENDPOINT decides)")
		} else if u.User != nil {
			ps.add("telemetry.otlpEndpoint", "must not hold a user name or password")
		} else if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			// The telemetry package refuses these at start (see its
			// parseEndpoint): say so here, with the setting's path.
			ps.add("telemetry.otlpEndpoint", "must not carry a query or a fragment (headers go in OTEL_EXPORTER_OTLP_HEADERS)")
		}
	}
	switch t.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		ps.add("telemetry.logLevel", "must be one of: debug, info, warn, error")
	}
}

func (c *Config) syncProblems(ps *problems) {
	s := c.Sync
	if s.PollInterval < time.Second {
		ps.add("sync.pollInterval", "must be at least 1s")
	}
	if s.Overlap < 0 {
		ps.add("sync.overlap", "must not be negative")
	}
	if s.MaxAttempts < 1 {
		ps.add("sync.maxAttempts", "must be at least 1")
	}
	if s.Workers < 1 {
		ps.add("sync.workers", "must be at least 1")
	}
	if s.LeaseFor < time.Second {
		ps.add("sync.leaseFor", "must be at least 1s")
	}
	if s.PushInterval < time.Second {
		ps.add("sync.pushInterval", "must be at least 1s")
	}
}

func (cn *Connection) problems(p string, ps *problems) {
	switch {
	case cn.Name == "":
		ps.add(child(p, "name"), "is required")
	case !connectionNamePattern.MatchString(cn.Name):
		ps.add(child(p, "name"), "must be 1 to 63 lower-case letters, digits or '-', starting with a letter or digit")
	}
	if cn.FHIRBaseURL == "" {
		ps.add(child(p, "fhirBaseUrl"), "is required: the EHR's FHIR R4 base URL")
	} else {
		urlProblems(ps, child(p, "fhirBaseUrl"), cn.FHIRBaseURL)
	}
	cn.Auth.problems(child(p, "auth"), ps)
	if cn.PatientSystem != "" && !isAbsoluteURI(cn.PatientSystem) {
		ps.add(child(p, "patientSystem"), "must be an absolute URI, such as urn:oid:… or https://…")
	}
	if len(cn.ReferralCodes) == 0 {
		ps.add(child(p, "referralCodes"), "must list at least one code; leave the key out for the default")
	}
	for i, rc := range cn.ReferralCodes {
		rp := index(child(p, "referralCodes"), i)
		if rc.System == "" {
			ps.add(child(rp, "system"), "is required")
		} else if !isAbsoluteURI(rc.System) {
			ps.add(child(rp, "system"), "must be an absolute URI")
		}
		if rc.Code == "" {
			ps.add(child(rp, "code"), "is required")
		}
	}
	if len(cn.ReferralIntents) == 0 {
		ps.add(child(p, "referralIntents"), "must list at least one intent; leave the key out for the default (order)")
	}
	for i, in := range cn.ReferralIntents {
		if !slices.Contains(mappings.RequestIntents, in) {
			ps.add(index(child(p, "referralIntents"), i), "must be a FHIR request intent: %s", strings.Join(mappings.RequestIntents, ", "))
		}
	}
	for i, rp := range cn.ReferralPerformers {
		pp := index(child(p, "referralPerformers"), i)
		switch {
		case rp.Reference != "" && (rp.System != "" || rp.Value != ""):
			ps.add(pp, "must give either reference or system and value, not both")
		case rp.Reference != "":
			typ, id, ok := strings.Cut(rp.Reference, "/")
			if !ok || !slices.Contains(performerTypes, typ) || id == "" || strings.Contains(id, "/") {
				ps.add(child(pp, "reference"), "must be %s/{id}: the program's resource in the EHR", strings.Join(performerTypes, "/{id}, "))
			}
		case rp.System == "" && rp.Value == "":
			ps.add(pp, "must give reference, or system and value")
		default:
			if rp.System == "" {
				ps.add(child(pp, "system"), "is required with value")
			} else if !isAbsoluteURI(rp.System) {
				ps.add(child(pp, "system"), "must be an absolute URI")
			}
			if rp.Value == "" {
				ps.add(child(pp, "value"), "is required with system")
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cn.Overrides)) {
		kp := child(child(p, "overrides"), k)
		if !slices.Contains(plan.Concepts, plan.Concept(k)) {
			ps.add(kp, "is not an IPS concept; use one of %s", joinConcepts(plan.Concepts))
			continue
		}
		switch plan.Path(cn.Overrides[k]) {
		case plan.Native, plan.InNote, plan.NoPath:
		default:
			ps.add(kp, "must be native, chart-note or none")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cn.Codes)) {
		kp := child(child(p, "codes"), k)
		if !slices.Contains(codedConcepts, plan.Concept(k)) {
			ps.add(kp, "takes no site code; codes are for %s", joinConcepts(codedConcepts))
			continue
		}
		c := cn.Codes[k]
		if c.System == "" {
			ps.add(child(kp, "system"), "is required: the code system of the site's code (e.g. its flowsheet row system)")
		} else if !isAbsoluteURI(c.System) {
			ps.add(child(kp, "system"), "must be an absolute URI, such as urn:oid:… or https://…")
		}
		if c.Code == "" {
			ps.add(child(kp, "code"), "is required")
		}
	}
	if cn.Timeout < time.Second {
		ps.add(child(p, "timeout"), "must be at least 1s: it bounds each request to the EHR")
	}
	if cn.MaxConcurrency < 1 || cn.MaxConcurrency > MaxConcurrencyLimit {
		ps.add(child(p, "maxConcurrency"), "must be from 1 to %d: the requests to the EHR in flight at once", MaxConcurrencyLimit)
	}
	if !(cn.RequestsPerSecond >= 0) || math.IsInf(cn.RequestsPerSecond, 0) {
		ps.add(child(p, "requestsPerSecond"), "must be a number, 0 (no limit) or more")
	}
	cn.Retry.problems(child(p, "retry"), ps)
	cn.TreatmentPlan.problems(child(p, "treatmentPlan"), ps)
	if cn.TestPatient != "" && !fhirIDPattern.MatchString(cn.TestPatient) {
		ps.add(child(p, "testPatient"), "must be a FHIR Patient id: 1 to 64 letters, digits, '-' or '.'")
	}
	if cn.ClinicalText != ClinicalTextKeep && cn.ClinicalText != ClinicalTextShare {
		ps.add(child(p, "clinicalText"), "must be keep or share")
	}
	wp := child(p, "winners")
	for _, w := range []struct {
		key  string
		side Side
	}{{"goalStatus", cn.Winners.GoalStatus}, {"goalAchievement", cn.Winners.GoalAchievement}, {"goalNotes", cn.Winners.GoalNotes},
		{"goalDescription", cn.Winners.GoalDescription}, {"goalTarget", cn.Winners.GoalTarget}} {
		if w.side != SideIPS && w.side != SideEHR {
			ps.add(child(wp, w.key), "must be ips or ehr")
		}
	}
}

func (r Retry) problems(p string, ps *problems) {
	if r.Initial <= 0 {
		ps.add(child(p, "initial"), "must be more than 0s: the delay after an item's first failure")
	}
	if r.Max < r.Initial {
		ps.add(child(p, "max"), "must be at least retry.initial")
	}
	if r.Jitter < 0 || r.Jitter >= 1 || math.IsNaN(r.Jitter) {
		ps.add(child(p, "jitter"), "must be a fraction from 0 up to (not including) 1, such as 0.2 for ±20%%")
	}
}

var fhirIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

func joinConcepts(cs []plan.Concept) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func (a *Auth) problems(p string, ps *problems) {
	notUsed := func(key string, given bool) {
		if given {
			ps.add(child(p, key), "is not used with auth type %s", a.Type)
		}
	}
	secretProblems(ps, child(p, "token"), a.Token, a.Type == AuthBearer)
	secretProblems(ps, child(p, "privateKey"), a.PrivateKey, a.Type == AuthSMARTBackend)
	switch a.Type {
	case AuthNone, AuthBearer:
		if a.Type == AuthNone {
			notUsed("token", !a.Token.IsZero())
		}
		notUsed("clientId", a.ClientID != "")
		notUsed("privateKey", !a.PrivateKey.IsZero())
		notUsed("keyId", a.KeyID != "")
		notUsed("alg", a.Alg != "")
		notUsed("scopes", len(a.Scopes) > 0)
		notUsed("tokenUrl", a.TokenURL != "")
	case AuthSMARTBackend:
		notUsed("token", !a.Token.IsZero())
		if a.ClientID == "" {
			ps.add(child(p, "clientId"), "is required for smart-backend: the client id the EHR registered")
		}
		switch a.Alg {
		case "RS384", "ES384":
		case "":
			ps.add(child(p, "alg"), "is required for smart-backend: RS384 or ES384")
		default:
			ps.add(child(p, "alg"), "must be RS384 or ES384")
		}
		if len(a.Scopes) == 0 {
			ps.add(child(p, "scopes"), "must list the scopes to request, such as system/Goal.rs")
		}
		for i, s := range a.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\n") {
				ps.add(index(child(p, "scopes"), i), "must be one scope, without spaces")
			}
		}
		if a.TokenURL != "" {
			urlProblems(ps, child(p, "tokenUrl"), a.TokenURL)
		}
	case "":
		ps.add(child(p, "type"), "is required: none, bearer or smart-backend")
	default:
		ps.add(child(p, "type"), "must be one of: none, bearer, smart-backend")
	}
}

// secretProblems checks a secret reference; required says it must be given.
func secretProblems(ps *problems, path string, s Secret, required bool) {
	switch {
	case s.IsZero():
		if required {
			ps.add(path, "is required: give it by reference as {env: NAME} or {file: PATH}")
		}
	case s.Env != "" && s.File != "":
		ps.add(path, "must give env or file, not both")
	case s.Env != "" && !envNamePattern.MatchString(s.Env):
		ps.add(child(path, "env"), "must be an environment variable name (letters, digits, '_')")
	}
}

// urlProblems checks a URL the adapter sends patient data or credentials
// to: absolute, no credentials in it, and https unless the host is this
// machine (plain http elsewhere would put both on the network in clear).
func urlProblems(ps *problems, path, s string) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		ps.add(path, "must be an absolute URL, such as https://ehr.example.org/fhir/R4")
		return
	}
	if u.User != nil {
		ps.add(path, "must not hold a user name or password: credentials go in auth")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		ps.add(path, "must not have a query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			ps.add(path, "must use https: plain http is allowed only to a loopback host (localhost, 127.0.0.0/8, [::1])")
		}
	default:
		ps.add(path, "must be an https URL (or http to a loopback host)")
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func isAbsoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && !strings.ContainsAny(s, " \t\n")
}
