package config_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/ips"
)

const examplePath = "../../testdata/config/example.yaml"

func TestExampleValidates(t *testing.T) {
	c, err := config.Load(examplePath)
	if err != nil {
		t.Fatalf("the example configuration does not validate:\n%v", err)
	}
	if c.Program.ID != "riverside-ips" || len(c.Connections) != 3 || len(c.APIKeys) != 2 {
		t.Errorf("example read wrongly: %+v", c)
	}
	if got := c.EnabledConnections(); !cmp.Equal(got, []string{"clinic-a"}) {
		t.Errorf("EnabledConnections = %v, want [clinic-a]", got)
	}
	epic := c.Connection("riverside-epic")
	if epic == nil || epic.Auth.Type != config.AuthSMARTBackend || epic.Auth.Alg != "RS384" || len(epic.ReferralCodes) != 2 {
		t.Fatalf("riverside-epic read wrongly: %+v", epic)
	}
	// Relative file names are relative to the configuration file.
	dir, _ := filepath.Abs(filepath.Dir(examplePath))
	if got, _ := filepath.Abs(epic.Auth.PrivateKey.File); got != filepath.Join(dir, "secrets", "riverside-epic.pem") {
		t.Errorf("privateKey file = %s, want it under %s", epic.Auth.PrivateKey.File, dir)
	}
	if got, _ := filepath.Abs(c.Store.DSN.Plain); got != filepath.Join(dir, "ipsfhir.db") {
		t.Errorf("sqlite dsn = %s, want it under %s", c.Store.DSN.Plain, dir)
	}
	// A connection that says nothing of winners or referral codes gets the defaults.
	a := c.Connection("clinic-a")
	if a.Winners != config.DefaultWinners || len(a.ReferralCodings()) != 1 || a.ReferralCodings()[0].Code != "employment-status" ||
		!cmp.Equal(a.ReferralIntents, []string{"order"}) || len(a.ReferralPerformers) != 0 || a.ClinicalText != config.ClinicalTextKeep {
		t.Errorf("clinic-a defaults: %+v", a)
	}
	m := epic.ReferralMatch()
	if !cmp.Equal(m.Intents, []string{"order"}) || len(m.Performers) != 2 || m.Performers[0].Reference != "HealthcareService/ips-riverside" ||
		m.Performers[1].Identifier.Value != "ips-riverside" || len(m.Codes) != 2 {
		t.Errorf("riverside-epic referral match %+v", m)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a loaded configuration: %v", err)
	}
	if len(c.APIKeys[0].Sum()) != 32 {
		t.Error("APIKey.Sum is not 32 bytes")
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	for _, doc := range []string{"", "# nothing but a comment\n", "---\n"} {
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if d := cmp.Diff(config.Default(), c); d != "" {
			t.Errorf("Parse(%q) differs from Default (-want +got):\n%s", doc, d)
		}
	}
	d := config.Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default does not validate: %v", err)
	}
	if d.Server.Listen != "127.0.0.1:8080" || d.Program.ID != "local" || !d.Consent.EHR || d.Consent.HIE ||
		d.Store.Driver != "sqlite" || d.Sync.PollInterval != 5*time.Minute || d.Sync.MaxAttempts != 8 {
		t.Errorf("unexpected defaults: %+v", d)
	}
	// A key given as null keeps its default.
	c, err := config.Parse([]byte("server:\n  listen:\nsync: {workers: null}\n"))
	if err != nil || c.Server.Listen != config.DefaultListen || c.Sync.Workers != config.DefaultWorkers {
		t.Errorf("null keys: %v %+v", err, c)
	}
}

// problemsOf parses doc and returns its problems, failing t if it is valid.
func problemsOf(t *testing.T, doc string) []config.Problem {
	t.Helper()
	_, err := config.Parse([]byte(doc))
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse accepted (or failed otherwise: %v):\n%s", err, doc)
	}
	return ve.Problems
}

func hasProblem(ps []config.Problem, path, msg string) bool {
	for _, p := range ps {
		if p.Path == path && strings.Contains(p.Message, msg) {
			return true
		}
	}
	return false
}

// conn is a valid connection to build broken ones from.
const conn = `connections:
  - name: clinic-a
    fhirBaseUrl: https://ehr.example.org/fhir/R4
    auth: {type: none}
`

func TestEveryKindOfMistakeNamesItsKey(t *testing.T) {
	cases := []struct {
		name, doc, path, msg string
	}{
		// Unknown keys at several depths.
		{"unknown top-level key", "programme: {id: x}\n", "programme", "unknown key (did you mean program?)"},
		{"unknown key depth 2", "store: {drvier: sqlite}\n", "store.drvier", "unknown key"},
		{"unknown key depth 3", conn + "    tls: {}\n", "connections[0].tls", "unknown key"},
		{"unknown key depth 4", strings.Replace(conn, "{type: none}", "{tpye: none}", 1), "connections[0].auth.tpye", "unknown key (did you mean type?)"},
		{"unknown key depth 5", conn + "    referralCodes: [{sytem: 'urn:x', code: a}]\n", "connections[0].referralCodes[0].sytem", "unknown key (did you mean system?)"},
		{"unknown key in a secret", strings.Replace(conn, "{type: none}", "{type: bearer, token: {environment: TOKEN}}", 1), "connections[0].auth.token.environment", "unknown key"},
		{"key given twice", "sync:\n  workers: 2\n  workers: 3\n", "sync.workers", "more than once"},
		{"merge key", "base: &b {type: none}\n", "base", "unknown key"},
		{"merge key in a mapping", conn + "    winners: {<<: {goalStatus: ips}}\n", "connections[0].winners", "merge key"},

		// Wrong types.
		{"string for an int", "sync: {workers: two}\n", "sync.workers", "must be a whole number, not a string"},
		{"fraction for an int", "sync: {maxAttempts: 2.5}\n", "sync.maxAttempts", "must be a whole number"},
		{"number for a duration", "sync: {pollInterval: 300}\n", "sync.pollInterval", "must be a duration"},
		{"bad duration", "sync: {leaseFor: 2 minutes}\n", "sync.leaseFor", "must be a duration"},
		{"yes for a bool", conn + "    enabled: yes\n", "connections[0].enabled", "must be true or false"},
		{"list for a mapping", "server: [127.0.0.1]\n", "server", "must be a mapping"},
		{"mapping for a list", "connections: {name: a}\n", "connections", "must be a list"},
		{"number for a string", "program: {id: 42}\n", "program.id", "must be a string, not a whole number (put it in quotes"},
		{"list for a string", conn + "    caFile: [a, b]\n", "connections[0].caFile", "must be a string, not a list"},
		{"root not a mapping", "- a\n- b\n", "", "must be a mapping"},

		// Bad enums.
		{"driver", "store: {driver: mysql, dsn: x}\n", "store.driver", "must be one of: sqlite, postgres"},
		{"role", "apiKeys: [{name: a, role: superuser, sha256: " + strings.Repeat("ab", 32) + "}]\n", "apiKeys[0].role", "must be one of"},
		{"auth type", strings.Replace(conn, "{type: none}", "{type: basic}", 1), "connections[0].auth.type", "must be one of: none, bearer, smart-backend"},
		{"alg", strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, privateKey: {file: k.pem}, keyId: k, alg: HS256, scopes: [system/Goal.rs]}", 1), "connections[0].auth.alg", "must be RS384 or ES384"},
		{"winner", conn + "    winners: {goalStatus: clinic}\n", "connections[0].winners.goalStatus", "must be ips or ehr"},
		{"clinical text", conn + "    clinicalText: everyone\n", "connections[0].clinicalText", "must be keep or share"},
		{"log level", "telemetry: {logLevel: verbose}\n", "telemetry.logLevel", "must be one of"},
		{"override of an unknown concept", conn + "    overrides: {employment-goals: none}\n", "connections[0].overrides.employment-goals", "not an IPS concept"},
		{"override to an unknown path", conn + "    overrides: {employment-goal: note}\n", "connections[0].overrides.employment-goal", "native, chart-note or none"},
		{"site code for a concept without one", conn + "    codes: {employment-goal: {system: 'urn:x', code: a}}\n", "connections[0].codes.employment-goal", "takes no site code"},
		{"site code without a system", conn + "    codes: {employment-status: {code: '1234'}}\n", "connections[0].codes.employment-status.system", "is required"},
		{"site code with a relative system", conn + "    codes: {job-outcome: {system: flowsheet, code: '1'}}\n", "connections[0].codes.job-outcome.system", "absolute URI"},
		{"site code without a code", conn + "    codes: {job-outcome: {system: 'urn:oid:1.2.840.114350', display: x}}\n", "connections[0].codes.job-outcome.code", "is required"},
		{"test patient id", conn + "    testPatient: 'Jane Doe'\n", "connections[0].testPatient", "FHIR Patient id"},
		{"yes for siteCodedObservations", conn + "    siteCodedObservations: yes\n", "connections[0].siteCodedObservations", "must be true or false"},
		{"zero timeout", conn + "    timeout: 0s\n", "connections[0].timeout", "at least 1s"},
		{"number for a timeout", conn + "    timeout: 30\n", "connections[0].timeout", "must be a duration"},
		{"zero concurrency", conn + "    maxConcurrency: 0\n", "connections[0].maxConcurrency", "from 1 to 64"},
		{"concurrency over 64", conn + "    maxConcurrency: 65\n", "connections[0].maxConcurrency", "from 1 to 64"},
		{"string for a concurrency", conn + "    maxConcurrency: four\n", "connections[0].maxConcurrency", "must be"},
		{"negative rate", conn + "    requestsPerSecond: -1\n", "connections[0].requestsPerSecond", "0 (no limit) or more"},
		{"rate not a number", conn + "    requestsPerSecond: .nan\n", "connections[0].requestsPerSecond", "0 (no limit) or more"},
		{"infinite rate", conn + "    requestsPerSecond: .inf\n", "connections[0].requestsPerSecond", "0 (no limit) or more"},
		{"zero first retry", conn + "    retry: {initial: 0s}\n", "connections[0].retry.initial", "more than 0s"},
		{"retry max below initial", conn + "    retry: {initial: 2h}\n", "connections[0].retry.max", "at least retry.initial"},
		{"jitter of 1", conn + "    retry: {jitter: 1}\n", "connections[0].retry.jitter", "fraction from 0 up to"},
		{"negative jitter", conn + "    retry: {jitter: -0.1}\n", "connections[0].retry.jitter", "fraction from 0 up to"},
		{"jitter not a number", conn + "    retry: {jitter: .nan}\n", "connections[0].retry.jitter", "fraction from 0 up to"},
		{"string for a jitter", conn + "    retry: {jitter: '0.2'}\n", "connections[0].retry.jitter", "must be a number, not a string"},
		{"unknown retry key", conn + "    retry: {intial: 1s}\n", "connections[0].retry.intial", "unknown key (did you mean initial?)"},
		{"retry not a mapping", conn + "    retry: 30s\n", "connections[0].retry", "must be a mapping"},
		{"push interval", "sync: {pushInterval: 100ms}\n", "sync.pushInterval", "at least 1s"},

		// Duplicates.
		{"duplicate connection name", conn + "  - {name: clinic-a, fhirBaseUrl: 'https://b.example/fhir', auth: {type: none}}\n", "connections[1].name", "names must be unique"},
		{"duplicate API key", "apiKeys:\n  - {name: a, role: admin, sha256: " + strings.Repeat("ab", 32) + "}\n  - {name: b, role: admin, sha256: " + strings.Repeat("AB", 32) + "}\n", "apiKeys[1].sha256", "same key as apiKeys[0]"},
		{"duplicate API key name", "apiKeys:\n  - {name: a, role: admin, sha256: " + strings.Repeat("ab", 32) + "}\n  - {name: a, role: admin, sha256: " + strings.Repeat("cd", 32) + "}\n", "apiKeys[1].name", "names must be unique"},

		// Bad values.
		{"bad connection name", strings.Replace(conn, "clinic-a", "Clinic_A", 1), "connections[0].name", "lower-case"},
		{"not a URL", strings.Replace(conn, "https://ehr.example.org/fhir/R4", "ehr.example.org/fhir", 1), "connections[0].fhirBaseUrl", "must be an absolute URL"},
		{"ftp URL", strings.Replace(conn, "https://", "ftp://", 1), "connections[0].fhirBaseUrl", "must be an https URL"},
		{"http to a remote host", strings.Replace(conn, "https://", "http://", 1), "connections[0].fhirBaseUrl", "must use https"},
		{"http token URL to a remote host", strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, privateKey: {file: k.pem}, keyId: k, alg: ES384, scopes: [system/Goal.rs], tokenUrl: 'http://auth.example.org/token'}", 1), "connections[0].auth.tokenUrl", "must use https"},
		{"URL with a query", strings.Replace(conn, "/fhir/R4", "/fhir/R4?x=1", 1), "connections[0].fhirBaseUrl", "query"},
		{"listen", "server: {listen: 'localhost'}\n", "server.listen", "host:port"},
		{"public URL over http", "server: {publicUrl: 'http://ips.example.org'}\n", "server.publicUrl", "must use https"},
		{"public URL with a path query", "server: {publicUrl: 'https://ips.example.org/?a=1'}\n", "server.publicUrl", "query"},
		{"cursor TTL too short", "server: {cursorTTL: 30s}\n", "server.cursorTTL", "from 1m to 24h"},
		{"cursor TTL too long", "server: {cursorTTL: 25h}\n", "server.cursorTTL", "from 1m to 24h"},
		{"cursor key env and file", "server: {cursorKey: {env: K, file: k}}\n", "server.cursorKey", "not both"},
		{"CORS any origin", "server: {corsOrigins: ['https://app.example.org', '*']}\n", "server.corsOrigins[1]", "must name one origin"},
		{"CORS origin with a path", "server: {corsOrigins: ['https://app.example.org/ips']}\n", "server.corsOrigins[0]", "no path"},
		{"CORS origin over http", "server: {corsOrigins: ['http://app.example.org']}\n", "server.corsOrigins[0]", "must use https"},
		{"CORS origin without a scheme", "server: {corsOrigins: ['app.example.org']}\n", "server.corsOrigins[0]", "scheme://host"},
		{"CORS null origin", "server: {corsOrigins: ['null']}\n", "server.corsOrigins[0]", "must name one origin"},
		{"negative overlap", "sync: {overlap: -1m}\n", "sync.overlap", "must not be negative"},
		{"zero workers", "sync: {workers: 0}\n", "sync.workers", "at least 1"},
		{"program id", "program: {id: 'river side'}\n", "program.id", "letters, digits"},
		{"sqlite memory", "store: {driver: sqlite, dsn: ':memory:'}\n", "store.dsn", "plain file name"},
		{"empty referral codes", conn + "    referralCodes: []\n", "connections[0].referralCodes", "at least one code"},
		{"empty referral intents", conn + "    referralIntents: []\n", "connections[0].referralIntents", "at least one intent"},
		{"unknown referral intent", conn + "    referralIntents: [order, referral]\n", "connections[0].referralIntents[1]", "must be a FHIR request intent"},
		{"performer of another type", conn + "    referralPerformers: [{reference: Practitioner/12}]\n", "connections[0].referralPerformers[0].reference", "Organization/{id}"},
		{"performer both ways", conn + "    referralPerformers: [{reference: Organization/1, system: 'urn:x', value: v}]\n", "connections[0].referralPerformers[0]", "not both"},
		{"performer value without system", conn + "    referralPerformers: [{value: v}]\n", "connections[0].referralPerformers[0].system", "is required with value"},
		{"performer system not a URI", conn + "    referralPerformers: [{system: 'riverside', value: v}]\n", "connections[0].referralPerformers[0].system", "absolute URI"},
		{"scope with a space", strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, privateKey: {file: k.pem}, keyId: k, alg: RS384, scopes: ['system/Goal.rs system/Patient.rs']}", 1), "connections[0].auth.scopes[0]", "without spaces"},
		{"both env and file", strings.Replace(conn, "{type: none}", "{type: bearer, token: {env: A, file: b}}", 1), "connections[0].auth.token", "not both"},
		{"pseudonym key env and file", "export: {pseudonymKey: {env: K, file: k}}\n", "export.pseudonymKey", "not both"},
		{"pseudonym key env name", "export: {pseudonymKey: {env: 'PSEUDO-KEY'}}\n", "export.pseudonymKey.env", "environment variable name"},
		{"unknown export key", "export: {pseudonymkey: {env: K}}\n", "export.pseudonymkey", "unknown key (did you mean pseudonymKey?)"},
		{"specialist key env and file", "reports: {specialistKey: {env: K, file: k}}\n", "reports.specialistKey", "not both"},
		{"protection of one value", "reports: {protection: 1}\n", "reports.protection", "at least 2"},
		{"env name", strings.Replace(conn, "{type: none}", "{type: bearer, token: {env: 'MY-TOKEN'}}", 1), "connections[0].auth.token.env", "environment variable name"},
		{"key for another auth type", strings.Replace(conn, "{type: none}", "{type: bearer, token: {env: T}, clientId: c}", 1), "connections[0].auth.clientId", "not used with auth type bearer"},
		{"not a hash", "apiKeys: [{name: a, role: admin, sha256: my-secret-key}]\n", "apiKeys[0].sha256", "64 hexadecimal digits"},
		{"pseudonym scope of a specialist key", "apiKeys: [{name: a, role: specialist, sha256: " + strings.Repeat("ab", 32) + ", pseudonymScope: x}]\n", "apiKeys[0].pseudonymScope", "only by hie keys"},
		{"pseudonym scope with a space", "apiKeys: [{name: a, role: hie, sha256: " + strings.Repeat("ab", 32) + ", pseudonymScope: 'two words'}]\n", "apiKeys[0].pseudonymScope", "letters, digits"},

		// Inline secrets.
		{"inline token", strings.Replace(conn, "{type: none}", "{type: bearer, token: abc}", 1), "connections[0].auth.token", "inline secret"},
		{"inline private key", strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, privateKey: '-----BEGIN', keyId: k, alg: RS384, scopes: [s]}", 1), "connections[0].auth.privateKey", "inline secret"},
		{"inline pseudonym key", "export: {pseudonymKey: 0123456789abcdef0123456789abcdef}\n", "export.pseudonymKey", "inline secret"},
		{"inline specialist key", "reports: {specialistKey: 0123456789abcdef0123456789abcdef}\n", "reports.specialistKey", "inline secret"},
		{"inline cursor key", "server: {cursorKey: 0123456789abcdef0123456789abcdef}\n", "server.cursorKey", "inline secret"},
		{"password in a postgres URL", "store: {driver: postgres, dsn: 'postgres://ips:pw@db/ips'}\n", "store.dsn", "holds a password"},
		{"password in a postgres key=value DSN", "store: {driver: postgres, dsn: 'host=db user=ips password=pw'}\n", "store.dsn", "holds a password"},
		{"password in a URL query", "store: {driver: postgres, dsn: 'postgres://db/ips?password=pw'}\n", "store.dsn", "holds a password"},
		{"credentials in an EHR URL", strings.Replace(conn, "https://", "https://u:p@", 1), "connections[0].fhirBaseUrl", "must not hold a user name or password"},

		// Missing required keys.
		{"missing connection name", "connections:\n  - {fhirBaseUrl: 'https://a.example/fhir', auth: {type: none}}\n", "connections[0].name", "is required"},
		{"missing base URL", "connections:\n  - {name: a, auth: {type: none}}\n", "connections[0].fhirBaseUrl", "is required"},
		{"missing auth", "connections:\n  - {name: a, fhirBaseUrl: 'https://a.example/fhir'}\n", "connections[0].auth.type", "is required"},
		{"missing bearer token", strings.Replace(conn, "{type: none}", "{type: bearer}", 1), "connections[0].auth.token", "is required"},
		{"missing smart key", strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, keyId: k, alg: RS384, scopes: [s]}", 1), "connections[0].auth.privateKey", "is required"},
		{"missing smart client id", strings.Replace(conn, "{type: none}", "{type: smart-backend, privateKey: {file: k}, keyId: k, alg: RS384, scopes: [s]}", 1), "connections[0].auth.clientId", "is required"},
		{"missing postgres dsn", "store: {driver: postgres}\n", "store.dsn", "is required for postgres"},
		{"missing API key hash", "apiKeys: [{name: a, role: admin}]\n", "apiKeys[0].sha256", "is required"},
		{"missing API key role", "apiKeys: [{name: a, sha256: " + strings.Repeat("ab", 32) + "}]\n", "apiKeys[0].role", "is required"},

		// Not YAML, or not one document.
		{"syntax", "program: {id: x\n", "", "not valid YAML"},
		{"two documents", "program: {id: x}\n---\nprogram: {id: y}\n", "", "more than one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.doc)
			if !hasProblem(ps, tc.path, tc.msg) {
				t.Errorf("want a problem at %q saying %q; got:\n%s", tc.path, tc.msg, list(ps))
			}
		})
	}
}

// TestPlanKeys: overrides, site codes and the test patient reach the plan
// options and the mapping.
func TestPlanKeys(t *testing.T) {
	c, err := config.Parse([]byte(conn + `    overrides: {employment-goal: chart-note, referral-intake: none}
    codes:
      employment-status: {system: 'urn:oid:1.2.840.114350.1.13.0.1.7.2.707679', code: '1570000123', display: Employment status (flowsheet)}
    siteCodedObservations: true
    testPatient: eTestPat.123
`))
	if err != nil {
		t.Fatal(err)
	}
	cn := c.Connections[0]
	o := cn.PlanOptions()
	if o.Overrides[plan.Goal] != plan.InNote || o.Overrides[plan.Referral] != plan.NoPath || len(o.Overrides) != 2 {
		t.Errorf("overrides %v", o.Overrides)
	}
	if !o.SiteCodes[plan.EmploymentStatus] || o.SiteCodes[plan.JobOutcome] || o.SiteCodedObservations == nil || !*o.SiteCodedObservations {
		t.Errorf("site codes %v, restricted %v", o.SiteCodes, o.SiteCodedObservations)
	}
	if sc := cn.SiteCodings()[plan.EmploymentStatus]; sc.Code != "1570000123" || sc.System != "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679" {
		t.Errorf("site coding %+v", sc)
	}
	if cn.TestPatient != "eTestPat.123" {
		t.Errorf("test patient %q", cn.TestPatient)
	}
}

func list(ps []config.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func TestLoopbackHTTPIsAllowed(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8103/fhir/R4", "http://localhost/fhir", "http://[::1]:8080/fhir", "http://127.9.9.9/fhir"} {
		if _, err := config.Parse([]byte(strings.Replace(conn, "https://ehr.example.org/fhir/R4", u, 1))); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	// keyId may be left out (the key's thumbprint is used).
	if _, err := config.Parse([]byte(strings.Replace(conn, "{type: none}", "{type: smart-backend, clientId: c, privateKey: {env: K}, alg: ES384, scopes: [system/Goal.rs]}", 1))); err != nil {
		t.Errorf("smart-backend without keyId: %v", err)
	}
	// A postgres DSN without a password may be written out.
	for _, dsn := range []string{"postgres://ipsfhir@db.internal:5432/ipsfhir?sslmode=verify-full", "host=db user=ipsfhir dbname=ipsfhir"} {
		if _, err := config.Parse([]byte("store: {driver: postgres, dsn: '" + dsn + "'}\n")); err != nil {
			t.Errorf("%s: %v", dsn, err)
		}
	}
}

// TestEveryProblemAtOnce checks that one pass reports all problems, with
// the line of each key, rather than stopping at the first.
func TestEveryProblemAtOnce(t *testing.T) {
	doc := `program: {id: riverside}
store: {driver: mysql}
sync:
  workers: two
  pollIntervall: 5m
connections:
  - name: a
    fhirBaseUrl: http://ehr.example.org/fhir
    auth:
      tpye: bearer
  - name: a
    fhirBaseUrl: https://b.example.org/fhir
    auth: {type: bearer, token: {env: B}}
`
	ps := problemsOf(t, doc)
	want := []struct {
		path string
		line int
	}{
		{"connections[0].auth.tpye", 10},
		{"connections[0].auth.type", 9},
		{"connections[0].fhirBaseUrl", 8},
		{"connections[1].name", 11},
		{"store.driver", 2},
		{"sync.pollIntervall", 5},
		{"sync.workers", 4},
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ps), len(want), list(ps))
	}
	for i, w := range want {
		if i < len(ps) && (ps[i].Path != w.path || ps[i].Line != w.line) {
			t.Errorf("problem %d is %s, want %s at line %d", i, ps[i], w.path, w.line)
		}
	}
	_, err := config.Parse([]byte(doc))
	if !strings.Contains(err.Error(), "connections[0].auth.tpye: unknown key") || !strings.Contains(err.Error(), "7 problems") {
		t.Errorf("error text:\n%v", err)
	}
}

// TestSecretsNeverInErrors plants secret-looking values wherever someone
// might paste a secret by mistake and checks that no message repeats them.
func TestSecretsNeverInErrors(t *testing.T) {
	const s1, s2, s3, s4, s5, s6 = "sk-PLANTED-11111", "PLANTEDPASS22222", "PLANTED-KEY-33333", "PLANTED-TOKEN-44444", "PLANTEDURLPW55555", "PLANTED-API-KEY-66666"
	doc := `store: {driver: postgres, dsn: 'postgres://ips:` + s2 + `@db/ips'}
apiKeys: [{name: a, role: specialist, sha256: ` + s6 + `}]
connections:
  - name: a
    fhirBaseUrl: https://u:` + s5 + `@ehr.example.org/fhir
    auth: {type: bearer, token: ` + s1 + `}
  - name: b
    fhirBaseUrl: https://ehr.example.org/fhir
    auth: {type: smart-backend, clientId: c, keyId: k, alg: RS384, scopes: [s], privateKey: "-----BEGIN PRIVATE KEY-----\n` + s3 + `\n-----END"}
  - name: c
    fhirBaseUrl: https://ehr.example.org/fhir
    auth: {type: none, token: [` + s4 + `]}
    enabled: ` + s4 + `
    caFile: {x: ` + s4 + `}
    prapare: ` + s1 + `
sync: {workers: ` + s2 + `, pollInterval: ` + s3 + `}
`
	_, err := config.Parse([]byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, s := range []string{s1, s2, s3, s4, s5, s6} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("the error repeats the planted secret %q:\n%v", s, err)
		}
	}
	ps := problemsOf(t, doc)
	for _, p := range []string{"store.dsn", "apiKeys[0].sha256", "connections[0].fhirBaseUrl", "connections[0].auth.token", "connections[1].auth.privateKey", "connections[2].auth.token", "connections[2].enabled", "sync.workers", "sync.pollInterval"} {
		if !hasProblem(ps, p, "") {
			t.Errorf("no problem at %s:\n%s", p, list(ps))
		}
	}
	// A YAML syntax error near a secret does not quote it either.
	_, err = config.Parse([]byte("connections:\n  - auth: {token: \"" + s1 + "\n"))
	if err == nil || strings.Contains(err.Error(), s1) {
		t.Errorf("syntax error: %v", err)
	}
}

func TestSecretResolve(t *testing.T) {
	t.Setenv("IPSFHIR_TEST_TOKEN", "tok-PLANTED-777")
	t.Setenv("IPSFHIR_TEST_EMPTY", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("file-PLANTED-888\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := (config.Secret{Env: "IPSFHIR_TEST_TOKEN"}).Resolve(); err != nil || v != "tok-PLANTED-777" {
		t.Errorf("env: %q, %v", v, err)
	}
	if v, err := (config.Secret{File: file}).Resolve(); err != nil || v != "file-PLANTED-888" {
		t.Errorf("file (the trailing newline is not part of it): %q, %v", v, err)
	}
	if v, err := (config.Value{Plain: "ipsfhir.db"}).Resolve(); err != nil || v != "ipsfhir.db" {
		t.Errorf("plain value: %q, %v", v, err)
	}
	for _, s := range []config.Secret{{Env: "IPSFHIR_TEST_UNSET_VARIABLE"}, {Env: "IPSFHIR_TEST_EMPTY"}, {File: filepath.Join(dir, "missing")}, {File: empty}, {}} {
		v, err := s.Resolve()
		if err == nil || v != "" {
			t.Errorf("%v: want an error, got %q", s, v)
			continue
		}
		if s.Env != "" && !strings.Contains(err.Error(), s.Env) || s.File != "" && !strings.Contains(err.Error(), s.File) {
			t.Errorf("%v: the error does not name the reference: %v", s, err)
		}
	}
	// Printing a configuration prints references, never values.
	c, err := config.Parse([]byte("connections:\n  - {name: a, fhirBaseUrl: 'https://a.example/fhir', auth: {type: bearer, token: {env: IPSFHIR_TEST_TOKEN}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Connections[0].Auth.Token.String(); s != "env IPSFHIR_TEST_TOKEN" {
		t.Errorf("Secret.String = %q", s)
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	c := config.Default()
	c.Connections = []config.Connection{{Name: "a", FHIRBaseURL: "https://a.example/fhir", Auth: config.Auth{Type: config.AuthBearer}}}
	c.Sync.Workers = 0
	err := c.Validate()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v", err)
	}
	// Defaults a file gets are not filled in for a connection built in
	// code: it sets them, as demo does with DefaultTimeout and DefaultRetry.
	for _, p := range []string{"sync.workers", "connections[0].auth.token", "connections[0].referralCodes", "connections[0].referralIntents", "connections[0].winners.goalStatus", "connections[0].winners.goalAchievement",
		"connections[0].clinicalText", "connections[0].timeout", "connections[0].maxConcurrency", "connections[0].retry.initial"} {
		if !hasProblem(ve.Problems, p, "") {
			t.Errorf("no problem at %s:\n%s", p, list(ve.Problems))
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("sync: {wrokers: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(bad)
	var ve *config.ValidationError
	if !errors.As(err, &ve) || ve.File != bad || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "sync.wrokers: unknown key (did you mean workers?) (line 1)") {
		t.Errorf("bad file: %v", err)
	}
}

func TestConsentDefaults(t *testing.T) {
	yes, no := true, false
	d := config.Consent{EHR: true, HIE: false}
	for _, tc := range []struct {
		consent  *ips.Consent
		ehr, hie bool
	}{
		{nil, true, false},
		{&ips.Consent{}, true, false},
		{&ips.Consent{EHR: &no, HIE: &yes}, false, true},
	} {
		c := &ips.Client{Consent: tc.consent}
		if d.AllowsEHR(c) != tc.ehr || d.AllowsHIE(c) != tc.hie {
			t.Errorf("consent %+v: ehr %v hie %v", tc.consent, d.AllowsEHR(c), d.AllowsHIE(c))
		}
	}
}

func TestExportPseudonymKey(t *testing.T) {
	// Not given: no key, no problem (hie exports are then refused).
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := c.Export.Key(); k != nil || err != nil {
		t.Errorf("no key configured: %q, %v", k, err)
	}

	const planted = "PLANTED-pseudonym-key-0123456789abcdef"
	t.Setenv("IPSFHIR_TEST_PSEUDONYM_KEY", planted)
	t.Setenv("IPSFHIR_TEST_SHORT_KEY", "PLANTED-short")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pseudonym.key"), []byte(planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte("export: {pseudonymKey: {file: pseudonym.key}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The file is relative to the configuration file, and read on demand.
	if k, err := c.Export.Key(); err != nil || string(k) != planted {
		t.Errorf("file key: %q, %v", k, err)
	}
	if k, err := (config.Export{PseudonymKey: config.Secret{Env: "IPSFHIR_TEST_PSEUDONYM_KEY"}}).Key(); err != nil || string(k) != planted {
		t.Errorf("env key: %q, %v", k, err)
	}
	for _, e := range []config.Export{
		{PseudonymKey: config.Secret{Env: "IPSFHIR_TEST_SHORT_KEY"}},
		{PseudonymKey: config.Secret{Env: "IPSFHIR_TEST_UNSET_PSEUDONYM_KEY"}},
		{PseudonymKey: config.Secret{File: filepath.Join(dir, "missing.key")}},
	} {
		k, err := e.Key()
		if err == nil || k != nil {
			t.Errorf("%v: want an error, got %q", e.PseudonymKey, k)
			continue
		}
		if !strings.Contains(err.Error(), "export.pseudonymKey") || strings.Contains(err.Error(), "PLANTED") {
			t.Errorf("%v: the error should name the key and never its value: %v", e.PseudonymKey, err)
		}
	}
}

// TestPseudonymScope: an hie key's pseudonym scope is its pseudonymScope,
// or its name; HIEKey finds hie keys only.
func TestPseudonymScope(t *testing.T) {
	c, err := config.Parse([]byte("apiKeys:\n" +
		"  - {name: state-hie, role: hie, sha256: " + strings.Repeat("a1", 32) + ", pseudonymScope: regional}\n" +
		"  - {name: city-hie, role: hie, sha256: " + strings.Repeat("b2", 32) + "}\n" +
		"  - {name: jordan, role: specialist, sha256: " + strings.Repeat("c3", 32) + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.HIEKey("state-hie"); k == nil || k.Scope() != "regional" {
		t.Errorf("state-hie: %+v", k)
	}
	if k := c.HIEKey("city-hie"); k == nil || k.Scope() != "city-hie" {
		t.Errorf("city-hie: %+v", k)
	}
	if k := c.HIEKey("jordan"); k != nil {
		t.Errorf("a specialist key taken for an hie key: %+v", k)
	}
}

func TestReportsSpecialistKey(t *testing.T) {
	// Not given: no key, no problem (reports are then not broken down by
	// specialist).
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := c.Reports.Key(); k != nil || err != nil {
		t.Errorf("no key configured: %q, %v", k, err)
	}

	const planted = "PLANTED-specialist-key-0123456789abcdef"
	t.Setenv("IPSFHIR_TEST_SPECIALIST_KEY", planted)
	t.Setenv("IPSFHIR_TEST_SHORT_SPECIALIST_KEY", "PLANTED-short")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "specialist.key"), []byte(planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte("reports: {specialistKey: {file: specialist.key}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The file is relative to the configuration file, and read on demand;
	// the threshold keeps its default.
	if k, err := c.Reports.Key(); err != nil || string(k) != planted || c.Reports.Threshold != config.DefaultThreshold {
		t.Errorf("file key: %q, %v, threshold %d", k, err, c.Reports.Threshold)
	}
	if k, err := (config.Reports{SpecialistKey: config.Secret{Env: "IPSFHIR_TEST_SPECIALIST_KEY"}}).Key(); err != nil || string(k) != planted {
		t.Errorf("env key: %q, %v", k, err)
	}
	for _, r := range []config.Reports{
		{SpecialistKey: config.Secret{Env: "IPSFHIR_TEST_SHORT_SPECIALIST_KEY"}},
		{SpecialistKey: config.Secret{Env: "IPSFHIR_TEST_UNSET_SPECIALIST_KEY"}},
		{SpecialistKey: config.Secret{File: filepath.Join(dir, "missing.key")}},
	} {
		k, err := r.Key()
		if err == nil || k != nil {
			t.Errorf("%v: want an error, got %q", r.SpecialistKey, k)
			continue
		}
		if !strings.Contains(err.Error(), "reports.specialistKey") || strings.Contains(err.Error(), "PLANTED") {
			t.Errorf("%v: the error should name the key and never its value: %v", r.SpecialistKey, err)
		}
	}
}

// TestTimeoutRetryAndPushInterval: a connection's EHR timeout and outbox
// retry schedule, and the push interval, read from the file or defaulted
// key by key.
func TestTimeoutRetryAndPushInterval(t *testing.T) {
	c, err := config.Parse([]byte(conn + `    timeout: 10s
    retry: {initial: 5s, max: 10m, jitter: 0.1}
  - name: clinic-b
    fhirBaseUrl: https://b.example.org/fhir
    auth: {type: none}
    retry: {initial: 1m, jitter: 0}
  - name: clinic-c
    fhirBaseUrl: https://c.example.org/fhir
    auth: {type: none}
sync: {pushInterval: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		timeout time.Duration
		retry   config.Retry
	}{
		{10 * time.Second, config.Retry{Initial: 5 * time.Second, Max: 10 * time.Minute, Jitter: 0.1}},
		{config.DefaultTimeout, config.Retry{Initial: time.Minute, Max: time.Hour, Jitter: 0}},
		{config.DefaultTimeout, config.DefaultRetry},
	} {
		cn := c.Connections[i]
		if cn.Timeout != want.timeout || cn.Retry != want.retry {
			t.Errorf("%s: timeout %v retry %+v, want %v %+v", cn.Name, cn.Timeout, cn.Retry, want.timeout, want.retry)
		}
	}
	if c.Sync.PushInterval != 2*time.Second {
		t.Errorf("sync.pushInterval = %v", c.Sync.PushInterval)
	}
	d := config.Default()
	if d.Sync.PushInterval != 5*time.Second || config.DefaultTimeout != 30*time.Second {
		t.Errorf("defaults: push interval %v, timeout %v", d.Sync.PushInterval, config.DefaultTimeout)
	}
	// The documented default is the sync engine's.
	if r := config.DefaultRetry; syncer.RetrySchedule(r) != syncer.DefaultRetry {
		t.Errorf("config.DefaultRetry %+v differs from syncer.DefaultRetry %+v", r, syncer.DefaultRetry)
	}
}

// TestFHIRBase: the facade's absolute URLs come from server.publicUrl, or
// else from the address the service listens on; nothing else.
func TestFHIRBase(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}
	for _, tc := range []struct {
		server config.Server
		bound  net.Addr
		want   string
	}{
		{config.Server{Listen: "127.0.0.1:8080", PublicURL: "https://ips.example.org/"}, bound, "https://ips.example.org/fhir"},
		{config.Server{Listen: "127.0.0.1:8080", PublicURL: "https://ips.example.org/ips"}, nil, "https://ips.example.org/ips/fhir"},
		{config.Server{Listen: "127.0.0.1:0"}, bound, "http://127.0.0.1:41234/fhir"},
		{config.Server{Listen: "127.0.0.1:8080"}, nil, "http://127.0.0.1:8080/fhir"},
		{config.Server{Listen: ":8080"}, nil, "http://localhost:8080/fhir"},
		{config.Server{Listen: "0.0.0.0:8080"}, nil, "http://localhost:8080/fhir"},
		{config.Server{Listen: "[::]:8080"}, &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://localhost:8080/fhir"},
		{config.Server{Listen: "[::1]:8080"}, nil, "http://[::1]:8080/fhir"},
		{config.Server{Listen: "ips.internal:8080"}, nil, "http://ips.internal:8080/fhir"},
	} {
		if got := tc.server.FHIRBase(tc.bound); got != tc.want {
			t.Errorf("%+v bound %v: %s, want %s", tc.server, tc.bound, got, tc.want)
		}
	}
}

// TestCursorKey: server.cursorKey is read on demand, relative to the
// configuration file; a short or unreadable one is an error that names the
// key and never its value.
func TestCursorKey(t *testing.T) {
	const planted = "PLANTED-cursor-key-0123456789abcdef0123"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cursor.key"), []byte(planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte("server: {cursorKey: {file: cursor.key}, cursorTTL: 15m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := c.Server.CursorKeyBytes(); err != nil || string(k) != planted || c.Server.CursorTTL != 15*time.Minute {
		t.Errorf("cursor key %q, %v; TTL %s", k, err, c.Server.CursorTTL)
	}
	if d := config.Default(); d.Server.CursorTTL != config.DefaultCursorTTL {
		t.Errorf("default cursor TTL %s", d.Server.CursorTTL)
	}
	if k, err := config.Default().Server.CursorKeyBytes(); k != nil || err != nil {
		t.Errorf("no key configured: %q, %v", k, err)
	}
	t.Setenv("IPSFHIR_TEST_SHORT_CURSOR_KEY", "PLANTED-short")
	k, err := (config.Server{CursorKey: config.Secret{Env: "IPSFHIR_TEST_SHORT_CURSOR_KEY"}}).CursorKeyBytes()
	if err == nil || k != nil || !strings.Contains(err.Error(), "server.cursorKey") || strings.Contains(err.Error(), "PLANTED") {
		t.Errorf("a short key: %q, %v", k, err)
	}
}

// TestTreatmentPlanKeys: the treatment-plan keys reach the sync engine as
// written, defaults where left out, and bad values are named by key.
func TestTreatmentPlanKeys(t *testing.T) {
	c, err := config.Parse([]byte(conn + `    treatmentPlan:
      categories: [{system: 'http://snomed.info/sct', code: '736353004'}]
      choose: periodStart
      refresh: 6h
      addGoals: true
`))
	if err != nil {
		t.Fatal(err)
	}
	tp := c.Connections[0].TreatmentPlan
	if !c.Connections[0].PlanOptions().AddGoalsToTreatmentPlan {
		t.Error("addGoals does not reach the plan")
	}
	if cats := tp.TreatmentPlanCategories(); len(cats) != 1 || cats[0].Code != "736353004" || tp.Choose != syncer.ChoosePeriodStart || tp.Refresh != 6*time.Hour {
		t.Errorf("treatment plan %+v", tp)
	}
	c, err = config.Parse([]byte(conn))
	if err != nil {
		t.Fatal(err)
	}
	if tp := c.Connections[0].TreatmentPlan; tp.TreatmentPlanCategories() != nil || tp.Choose != "" || tp.Refresh != 0 {
		t.Errorf("left out: %+v, want the engine's defaults", tp)
	}
	if config.ChooseLastUpdated != syncer.ChooseLastUpdated || config.ChoosePeriodStart != syncer.ChoosePeriodStart {
		t.Error("config and the sync engine spell the choices differently")
	}
	for key, doc := range map[string]string{
		"connections[0].treatmentPlan.categories[0].code": "    treatmentPlan: {categories: [{system: 'http://snomed.info/sct'}]}\n",
		"connections[0].treatmentPlan.choose":             "    treatmentPlan: {choose: newest}\n",
		"connections[0].treatmentPlan.refresh":            "    treatmentPlan: {refresh: 5s}\n",
	} {
		if ps := problemsOf(t, conn+doc); !hasProblem(ps, key, "") {
			t.Errorf("want a problem at %s; got:\n%s", key, list(ps))
		}
	}
}

// TestCORSOrigins: server.corsOrigins takes https origins, and http ones
// on a loopback host for development; none by default.
func TestCORSOrigins(t *testing.T) {
	c, err := config.Parse([]byte("server: {corsOrigins: ['https://app.example.org', 'https://ehr.example.org:8443', 'http://localhost:3000', 'http://127.0.0.1:5173/']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.org", "https://ehr.example.org:8443", "http://localhost:3000", "http://127.0.0.1:5173/"}; !slices.Equal(c.Server.CORSOrigins, want) {
		t.Errorf("corsOrigins %v, want %v", c.Server.CORSOrigins, want)
	}
	if d := config.Default(); d.Server.CORSOrigins != nil {
		t.Errorf("default corsOrigins %v", d.Server.CORSOrigins)
	}
}

// TestConnectionLimits: a connection's concurrency and rate limits, read
// from the file or defaulted.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(conn + `    maxConcurrency: 8
    requestsPerSecond: 12.5
  - name: clinic-b
    fhirBaseUrl: https://b.example.org/fhir
    auth: {type: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Connections[0]; a.MaxConcurrency != 8 || a.RequestsPerSecond != 12.5 {
		t.Errorf("%s: maxConcurrency %d requestsPerSecond %v, want 8 and 12.5", a.Name, a.MaxConcurrency, a.RequestsPerSecond)
	}
	if b := c.Connections[1]; b.MaxConcurrency != config.DefaultMaxConcurrency || b.RequestsPerSecond != 0 {
		t.Errorf("%s: maxConcurrency %d requestsPerSecond %v, want the defaults %d and 0", b.Name, b.MaxConcurrency, b.RequestsPerSecond, config.DefaultMaxConcurrency)
	}
}

// The telemetry package refuses a collector URL with a query or a fragment
// (the exporters would drop or garble them); the file's check says so
// first, with the setting's path, rather than serve failing at start.
func TestOTLPEndpointWithQueryIsAProblem(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"https://otel.example.org:4318?tenant=a", "https://otel.example.org:4318#x"} {
		ps := problemsOf(t, "program: {id: riverside}\ntelemetry: {otlpEndpoint: \""+u+"\"}\n")
		if !hasProblem(ps, "telemetry.otlpEndpoint", "query") {
			t.Errorf("%s: problems %v, want one on telemetry.otlpEndpoint naming the query", u, ps)
		}
	}
}

// TestDirectorRole: director is a role a key may have (a program director,
// who sees outcomes only); it takes no pseudonym scope (no export), is no
// hie key, and the message for a wrong role names it.
func TestDirectorRole(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("apiKeys:\n  - {name: dana, role: director, sha256: " + strings.Repeat("d4", 32) + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.APIKeys) != 1 || c.APIKeys[0].Role != config.RoleDirector {
		t.Errorf("keys: %+v", c.APIKeys)
	}
	if c.HIEKey("dana") != nil {
		t.Error("a director key taken for an hie key")
	}
	_, err = config.Parse([]byte("apiKeys:\n  - {name: dana, role: director, sha256: " + strings.Repeat("d4", 32) + ", pseudonymScope: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "apiKeys[0].pseudonymScope") {
		t.Errorf("a director key with a pseudonym scope: %v", err)
	}
	_, err = config.Parse([]byte("apiKeys:\n  - {name: dana, role: directors, sha256: " + strings.Repeat("d4", 32) + "}\n"))
	if err == nil || !strings.Contains(err.Error(), "hie, director") {
		t.Errorf("a wrong role's message does not list director: %v", err)
	}
}

// TestExportJobDir: export.jobDir, where $export jobs keep their files, is
// relative to the configuration file; unset, it is "" (the facade uses the
// system's temporary directory).
func TestExportJobDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte("export: {jobDir: exports}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Export.JobDir != filepath.Join(dir, "exports") {
		t.Errorf("export.jobDir = %q, want %q", c.Export.JobDir, filepath.Join(dir, "exports"))
	}
	if d := config.Default(); d.Export.JobDir != "" {
		t.Errorf("default export.jobDir %q", d.Export.JobDir)
	}
}
