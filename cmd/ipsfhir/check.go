package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/conformance/check"
)

func runCheck(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("check", `--ehr URL [--auth none|bearer|smart-backend] [auth flags] [--test-patient ID [--write-tests]] [--json]
       ipsfhir check --config FILE --connection NAME [--test-patient ID [--write-tests]] [--json]
       ipsfhir check --capability-statement FILE [--json]`,
		`Checks whether a clinic EHR is ready for sync, the way ONC's Inferno checks
a FHIR server, limited to what ipsfhir needs, then prints the sync plan the
EHR's CapabilityStatement leads to (each IPS concept's path and why).

Give the EHR one of three ways: --ehr URL with auth flags; --config FILE
--connection NAME, to check a configured connection (enabled or not) with
its auth and caFile; or --capability-statement FILE, a saved /metadata
answer, to check offline: nothing is sent, and the tests that need the EHR
are skipped with reason "offline".

Test groups: connectivity (reachable, https with the certificate verified;
plain http only to loopback), auth (token obtained, accepted, an invalid
token answered 401), metadata (an R4 CapabilityStatement speaking JSON),
resources (Patient, Goal, CarePlan, Observation, DocumentReference,
ServiceRequest declared; search by patient live), write-paths (each IPS
concept: native, chart-note or none), conditional (conditional
create/update), versioning (versioned updates with If-Match), change-
detection (_lastUpdated or a date parameter; a live poll as sync polls),
bundles (batch, transaction), smart (.well-known/smart-configuration, only
with smart-backend auth; a token endpoint on another origin than the FHIR
base is used only when --token-url or tokenUrl names it) and write-tests.

A live check sends only interactions and search parameters the EHR's
CapabilityStatement declares, and never patient data: without --test-patient
it searches with a made-up patient id. It writes NOTHING unless --write-tests
is given: then it creates one test Goal (a DocumentReference where Goal is
not writable) for the test patient, with an identifier in the
urn:ipsfhir:check namespace, reads, searches and updates it (also with a
stale If-Match where versioned updates are declared), and deletes it where
the EHR declares delete; otherwise the result names what was left behind.
Use a test patient, never a real one.

Each result is one of:
  pass   the EHR does what sync needs
  fail   it does not; the reason says what follows and what to do
  error  no verdict: the EHR timed out or failed (5xx)
  skip   applies but was not run (offline, no --write-tests, or a test it
         needs did not pass)
  omit   does not apply to this connection
A fail or error marked [blocks sync] means sync cannot run (unreachable,
TLS, auth, not R4, a declared interaction sync relies on failing live); other
failures are advisory: sync runs with the fallback the plan shows.

--json prints {"results":[{"id","group","status","reason","blocking"}...],
"plan":{...},"ready":bool}.

Exit 0 when sync can run (nothing blocks it), 1 when something blocks it,
2 on a usage error (bad or conflicting flags, an unreadable file, a bad
configuration).`, stderr)
	ehrURL := fs.String("ehr", "", "the EHR's FHIR R4 base URL (https; plain http only to loopback)")
	authType := fs.String("auth", "none", "with --ehr: none, bearer or smart-backend")
	tokenEnv := fs.String("token-env", "", "bearer: the environment variable holding the token")
	clientID := fs.String("client-id", "", "smart-backend: the client id the EHR registered for ipsfhir")
	privateKey := fs.String("private-key", "", "smart-backend: PEM file of the private key (RSA >= 2048 bits signs RS384, EC P-384 signs ES384)")
	keyID := fs.String("key-id", "", "smart-backend: the key's kid (default: its JWK thumbprint)")
	scopes := fs.String("scopes", "", `smart-backend: scopes to request, space-separated (e.g. "system/Goal.rs system/Observation.crus")`)
	tokenURL := fs.String("token-url", "", "smart-backend: the token endpoint (default: from .well-known/smart-configuration, on the FHIR base's origin only)")
	caFile := fs.String("ca-file", "", "with --ehr: PEM file of CA certificates to trust besides the system's")
	cfgPath := fs.String("config", "", "configuration file; with --connection")
	connName := fs.String("connection", "", "with --config: the name of the connection to check")
	statementPath := fs.String("capability-statement", "", "a saved CapabilityStatement JSON file (- for standard input): check offline")
	testPatient := fs.String("test-patient", "", "live: the id of a TEST patient in the EHR; searches use it, and --write-tests writes for it")
	writeTests := fs.Bool("write-tests", false, "live, with --test-patient: create, update and delete one test resource")
	asJSON := fs.Bool("json", false, `print {"results":[...],"plan":{...},"ready":bool}`)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ipsfhir check: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q; every input is a flag (see --help)", fs.Arg(0))
	}
	modes := 0
	for _, m := range []string{"ehr", "config", "capability-statement"} {
		if set[m] {
			modes++
		}
	}
	if modes != 1 {
		return usageErr("give exactly one of --ehr URL, --config FILE --connection NAME, or --capability-statement FILE")
	}
	authFlags := []string{"auth", "token-env", "client-id", "private-key", "key-id", "scopes", "token-url", "ca-file"}
	if !set["ehr"] {
		for _, f := range authFlags {
			if set[f] {
				return usageErr("--%s goes with --ehr only (a configured connection has its own auth)", f)
			}
		}
	}
	if set["connection"] != set["config"] {
		return usageErr("--config FILE and --connection NAME go together")
	}
	if *writeTests && *testPatient == "" && !set["config"] {
		return usageErr("--write-tests needs --test-patient ID (a test patient, never a real one)")
	}
	if set["capability-statement"] && (*testPatient != "" || *writeTests) {
		return usageErr("--test-patient and --write-tests need a live EHR (--ehr or --config), not --capability-statement")
	}

	o := check.Options{TestPatient: *testPatient, WriteTests: *writeTests}
	switch {
	case set["capability-statement"]:
		data, err := readInput(*statementPath, stdin)
		if err != nil {
			return usageErr("%s", fileError(err))
		}
		if len(data) == 0 {
			return usageErr("%s is empty", *statementPath)
		}
		o.Statement = data
	case set["ehr"]:
		a, err := authFromFlags(*authType, *tokenEnv, *clientID, *privateKey, *keyID, *scopes, *tokenURL, set)
		if err != nil {
			return usageErr("%v", err)
		}
		o.BaseURL, o.CAFile = *ehrURL, *caFile
		if o.Auth, err = checkAuth(a); err != nil {
			return usageErr("%v", err)
		}
	default:
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return usageErr("%v", err)
		}
		cn := cfg.Connection(*connName)
		if cn == nil {
			var names []string
			for _, c := range cfg.Connections {
				names = append(names, c.Name)
			}
			return usageErr("no connection %q in %s (it has: %s)", *connName, *cfgPath, strings.Join(names, ", "))
		}
		o.BaseURL, o.CAFile = cn.FHIRBaseURL, cn.CAFile
		// The plan sync would use: the connection's overrides and site codes.
		o.Plan = cn.PlanOptions()
		if o.TestPatient == "" && o.WriteTests {
			if cn.TestPatient == "" {
				return usageErr("--write-tests needs --test-patient ID or connections[].testPatient in the config (a test patient, never a real one)")
			}
			o.TestPatient = cn.TestPatient
		}
		if o.Auth, err = checkAuth(cn.Auth); err != nil {
			return usageErr("connection %s: %v", cn.Name, err)
		}
	}

	rep, err := check.Run(ctx, o)
	if err != nil {
		return usageErr("%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "ipsfhir check: %v\n", err)
			return exitFindings
		}
	} else if err := check.WriteText(stdout, rep); err != nil {
		fmt.Fprintf(stderr, "ipsfhir check: %v\n", err)
		return exitFindings
	}
	if !rep.Ready {
		return exitFindings
	}
	return exitOK
}

// authFromFlags turns the --ehr auth flags into the configuration's auth,
// so that ehrAuth builds it exactly as it builds a configured connection's.
func authFromFlags(typ, tokenEnv, clientID, privateKey, keyID, scopes, tokenURL string, set map[string]bool) (config.Auth, error) {
	a := config.Auth{Type: typ}
	allowed := map[string][]string{
		config.AuthNone:         nil,
		config.AuthBearer:       {"token-env"},
		config.AuthSMARTBackend: {"client-id", "private-key", "key-id", "scopes", "token-url"},
	}
	ok, known := allowed[typ]
	if !known {
		return a, fmt.Errorf("--auth must be none, bearer or smart-backend")
	}
	for _, f := range []string{"token-env", "client-id", "private-key", "key-id", "scopes", "token-url"} {
		if set[f] && !slices.Contains(ok, f) {
			return a, fmt.Errorf("--%s is not used with --auth %s", f, typ)
		}
	}
	switch typ {
	case config.AuthBearer:
		if tokenEnv == "" {
			return a, errors.New("--auth bearer needs --token-env VAR (the token itself never goes on the command line)")
		}
		a.Token = config.Secret{Env: tokenEnv}
	case config.AuthSMARTBackend:
		if clientID == "" || privateKey == "" {
			return a, errors.New("--auth smart-backend needs --client-id and --private-key FILE")
		}
		a.ClientID, a.KeyID, a.TokenURL = clientID, keyID, tokenURL
		a.PrivateKey = config.Secret{File: privateKey}
		a.Scopes = strings.Fields(scopes)
	}
	return a, nil
}

// checkAuth builds a connection's auth with ehrAuth, the function the
// service wires connections with, and describes it for the check.
func checkAuth(a config.Auth) (check.Auth, error) {
	provider, key, err := ehrAuth(a)
	if err != nil {
		return check.Auth{}, err
	}
	out := check.Auth{Type: a.Type, Provider: provider, TokenURL: a.TokenURL}
	switch key.Key.(type) {
	case *rsa.PrivateKey:
		out.Alg = "RS384"
	case *ecdsa.PrivateKey:
		out.Alg = "ES384"
	}
	return out, nil
}
