// Package config reads the one YAML file that configures an ipsfhir
// deployment and checks it whole before anything starts, so a mistake is
// reported at start-up with the key that holds it instead of surfacing
// later as a failed sync.
//
// # Strict decoding
//
// Load and Parse refuse, with a *ValidationError that lists every problem
// (not just the first) by key path and line:
//   - an unknown key, anywhere ("connections[0].auth.tpye: unknown key (did
//     you mean type?)"): a misspelt key would otherwise leave a default in
//     force without anyone noticing;
//   - a value of the wrong type, with no quiet conversion (an unquoted 1.10
//     is a number, not the string "1.10"; yes is not a boolean);
//   - a key given twice in one mapping, or more than one YAML document;
//   - every rule Validate checks (enums, URLs, unique names, required keys).
//
// Messages name keys and say what is wrong; they never repeat a value,
// because a value in the wrong place may be a secret.
//
// # Secrets
//
// A secret is never written in the file. Keys that hold one (auth.token,
// auth.privateKey, export.pseudonymKey, reports.specialistKey, and a
// PostgreSQL store.dsn with a password) take a reference, {env: NAME} or {file: PATH}; an inline value
// is refused with a message saying so. A Secret holds only the reference, so a Config can be
// printed or logged safely; Secret.Resolve reads the value when it is needed
// and logs nothing. Relative file names (secret files, caFile, the SQLite
// file) are relative to the configuration file's directory when it is read
// with Load.
//
// # Keys
//
// Defaults are in code (Default, DefaultWinners, the Default* constants);
// an empty file is a valid configuration: an SQLite store in ipsfhir.db, the
// API on 127.0.0.1:8080 with no keys (so nobody is let in), no connections.
//
//	program.id               string   scopes FHIR business identifiers (urn:ipsfhir:{id}:…); default "local"
//	program.name             string   shown to people; optional
//	store.driver             enum     sqlite (default) | postgres
//	store.dsn                string or {env}/{file}
//	                                  sqlite: a plain file name (default ipsfhir.db);
//	                                  postgres: required; a URL or key=value DSN, which must be a
//	                                  reference if it holds a password
//	consent.ehr              bool     default for clients whose consent omits ehr; default true
//	consent.hie              bool     default for clients whose consent omits hie; default false
//	server.listen            host:port  default 127.0.0.1:8080 (loopback: exposing it is a decision)
//	server.publicUrl         URL      where callers reach the service; /fhir's absolute URLs start with it;
//	                                  default the listen address (never a request's Host)
//	server.cursorKey         {env}/{file}  seals /fhir search paging links; at least 32 bytes, the same
//	                                  on every replica; not given: a random key per process
//	server.cursorTTL         duration how long /fhir paging links stay valid; default 1h, 1m to 24h
//	server.corsOrigins[]     URL      origins of browser apps allowed to call /fhir and /api/v1 (CORS),
//	                                  scheme://host[:port], https unless loopback; default none
//	apiKeys[]                         callers of the API
//	  .name                  string   required, unique; the caller's name in the access log
//	  .role                  enum     required: specialist | clinician | admin | hie
//	  .sha256                hex      required: SHA-256 of the key, 64 hex digits, unique
//	  .pseudonymScope        string   hie keys only: the scope of their export's pseudonyms; default the name
//	export.pseudonymKey      {env}/{file}  the HMAC key of the de-identified export hie keys get;
//	                                  at least 32 bytes; not given: hie exports are refused
//	reports.threshold        int      small-cell threshold of the outcome reports; default and least 11
//	reports.protection       int      least number of values a withheld small count keeps; default 3, least 2
//	reports.specialistKey    {env}/{file}  the HMAC key of the specialist codes in the reports;
//	                                  at least 32 bytes; not given: no breakdown by specialist
//	telemetry.otlpEndpoint   URL      OTLP/HTTP collector; empty (default): the standard
//	                                  OTEL_EXPORTER_OTLP_ENDPOINT variables, else no export
//	telemetry.serviceName    string   default OTEL_SERVICE_NAME, else ipsfhir
//	telemetry.logLevel       enum     debug | info (default) | warn | error
//	sync.pollInterval        duration default 5m, at least 1s
//	sync.overlap             duration default 2m, not negative
//	sync.maxAttempts         int      default 8, at least 1
//	sync.workers             int      default 2, at least 1
//	sync.leaseFor            duration default 2m, at least 1s
//	sync.pushInterval        duration default 5s, at least 1s
//	audit.retention          duration default 52560h (six years), at least 24h: how long audit entries are kept
//	connections[]                     clinic EHRs
//	  .name                  string   required, unique, [a-z0-9-], at most 63
//	  .fhirBaseUrl           URL      required; https, or http to a loopback host only
//	  .enabled               bool     default false: configured and checkable, not synced
//	  .auth.type             enum     required: none | bearer | smart-backend
//	  .auth.token            {env}/{file}  bearer: required
//	  .auth.clientId         string   smart-backend: required
//	  .auth.privateKey       {env}/{file}  smart-backend: required, PEM
//	  .auth.keyId            string   smart-backend: the JWT kid; default the key's JWK thumbprint
//	  .auth.alg              enum     smart-backend: required, RS384 | ES384
//	  .auth.scopes           [string] smart-backend: required, one scope each
//	  .auth.tokenUrl         URL      smart-backend: optional, overrides .well-known/smart-configuration
//	  .caFile                path     optional PEM of extra CAs to trust for this EHR
//	  .patientSystem         URI      optional: the EHR's Patient identifier system
//	  .referralCodes[]       {system, code, display}  default: SDOHCC employment-status
//	  .prapare               bool     default false
//	  .clinicalText          keep|share default keep: this EHR's clinicians' goal notes stay out of other connections' EHRs
//	  .winners.goalStatus    ips|ehr  default ehr (the clinical side owns clinical status)
//	  .winners.goalAchievement ips|ehr default ehr
//	  .winners.goalNotes     ips|ehr  default ehr
//	  .winners.goalDescription ips|ehr default ips (the client's own words, as the specialist recorded them)
//	  .winners.goalTarget    ips|ehr  default ips
//	  .timeout               duration default 30s (DefaultTimeout), at least 1s: each EHR request attempt
//	  .maxConcurrency        int      default 4, 1 to 64: EHR requests in flight at once; push workers at least this
//	  .requestsPerSecond     number   default 0 (no limit), not negative: EHR requests per second
//	  .retry.initial         duration default 30s, more than 0: outbox retry after an item's first failure
//	  .retry.max             duration default 1h, at least retry.initial
//	  .retry.jitter          number   default 0.2, from 0 up to (not including) 1
//
// docs/CONFIG.md explains each key for administrators, and
// testdata/config/example.yaml is a commented example that validates.
//
// # Why go.yaml.in/yaml/v3
//
// gopkg.in/yaml.v3 is archived. go.yaml.in/yaml/v3 is its continuation,
// maintained by the YAML organization, with the same API and parser; the
// OpenTelemetry, Prometheus and grpc-gateway modules this project already
// requires depend on it too, so it is one YAML library, not a second.
// github.com/goccy/go-yaml
// was the alternative; its errors print a snippet of the source around the
// problem, which is exactly what must not happen with a misplaced secret.
// Either way only the parser is used: the package walks yaml.Node trees
// itself, because the library's own struct decoding stops at the first
// unknown key, reports lines instead of key paths, and quotes values in its
// type errors.
package config
