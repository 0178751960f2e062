package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
)

// compose is the part of the Compose file format the checks read.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string               `yaml:"image"`
	Build       any                  `yaml:"build"`
	Command     []string             `yaml:"command"`
	NetworkMode string               `yaml:"network_mode"`
	Environment map[string]string    `yaml:"environment"`
	Volumes     []string             `yaml:"volumes"`
	Ports       []string             `yaml:"ports"`
	DependsOn   map[string]dependsOn `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type dependsOn struct {
	Condition string `yaml:"condition"`
}

// testPassword stands for the IPSFHIR_PG_PASSWORD a developer puts in .env.
const testPassword = "0123456789abcdef0123456789abcdef"

// readCompose reads ../docker-compose.yml and interpolates its variables
// the way docker compose does, with IPSFHIR_PG_PASSWORD set to
// testPassword and nothing else set.
func readCompose(t *testing.T) *compose {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(false)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	vars := map[string]string{"IPSFHIR_PG_PASSWORD": testPassword}
	for name, s := range c.Services {
		for k, v := range s.Environment {
			out, err := interpolate(v, vars)
			if err != nil {
				t.Fatalf("services.%s.environment.%s: %v", name, k, err)
			}
			s.Environment[k] = out
		}
	}
	return &c
}

var variable = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$`)

// interpolate expands ${NAME}, ${NAME:-default} and ${NAME:?message} (the
// forms this file may use) from vars, failing where compose would.
func interpolate(s string, vars map[string]string) (string, error) {
	var bad error
	out := variable.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := variable.FindStringSubmatch(m)
		v, set := vars[g[1]]
		switch {
		case set && v != "":
			return v
		case strings.HasSuffix(g[2], "-"):
			return g[3]
		case strings.HasSuffix(g[2], "?"):
			bad = fmt.Errorf("%s is not set: %s", g[1], g[3])
		}
		return v
	})
	if strings.Contains(out, "${") {
		return "", fmt.Errorf("a variable form this check does not know")
	}
	return out, bad
}

func (c *compose) service(t *testing.T, name string) service {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no %s service", name)
	}
	return s
}

// mountedConfig returns the host file the service mounts at target.
func mountedConfig(t *testing.T, s service, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			if len(parts) == 3 && parts[2] != "ro" {
				t.Errorf("%s is mounted %s, want ro", target, parts[2])
			}
			return filepath.Join("..", parts[0])
		}
	}
	t.Fatalf("ipsfhir mounts nothing at %s; volumes: %v", target, s.Volumes)
	return ""
}

// serviceConfig checks that the ipsfhir service runs serve --config FILE
// and returns the configuration it mounts there, loaded as serve loads it,
func serviceConfig(t *testing.T, ips service) *config.Config {
	t.Helper()
	if len(ips.Command) != 3 || ips.Command[0] != "serve" || ips.Command[1] != "--config" {
		t.Fatalf("ipsfhir runs %v, want serve --config FILE", ips.Command)
	}
	path := mountedConfig(t, ips, ips.Command[2])
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%s (mounted at %s) does not load: %v", path, ips.Command[2], err)
	}
	return cfg
}

// TestComposeRunsTheService: the ipsfhir service is `ipsfhir serve` on the
// configuration the compose file mounts, built from this repository, with a
// PostgreSQL store; the configuration loads with the service's own loader,
// every secret it references is provided, and the store's DSN names the
// postgres service's database, user and password.
func TestComposeRunsTheService(t *testing.T) {
	c := readCompose(t)
	for _, name := range []string{"ipsfhir", "postgres", "hapi", "jaeger"} {
		c.service(t, name)
	}
	ips := c.service(t, "ipsfhir")
	if ips.Build == nil {
		t.Error("ipsfhir is not built from the repository's Dockerfile")
	}
	cfg := serviceConfig(t, ips)
	if cfg.Store.Driver != config.DriverPostgres {
		t.Errorf("store.driver is %s, want postgres", cfg.Store.Driver)
	}

	// Every secret the configuration names by env is in the service's
	// environment; by file, it would be a compose secret (none yet).
	refs := map[string]config.Secret{
		"store.dsn": cfg.Store.DSN.Ref, "server.cursorKey": cfg.Server.CursorKey,
		"export.pseudonymKey": cfg.Export.PseudonymKey, "reports.specialistKey": cfg.Reports.SpecialistKey,
	}
	for _, cn := range cfg.Connections {
		refs["connections "+cn.Name+" auth.token"] = cn.Auth.Token
		refs["connections "+cn.Name+" auth.privateKey"] = cn.Auth.PrivateKey
	}
	for key, ref := range refs {
		if ref.IsZero() {
			continue
		}
		if ref.Env == "" {
			t.Errorf("%s is %s: docker-compose.yml provides secrets as environment variables", key, ref)
			continue
		}
		if ips.Environment[ref.Env] == "" {
			t.Errorf("%s names %s, which the ipsfhir service does not set", key, ref)
		}
	}

	// The DSN reaches the postgres service as the user it creates.
	for k, v := range ips.Environment {
		t.Setenv(k, v)
	}
	dsn, err := cfg.Store.DSN.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal("the store's DSN does not parse")
	}
	pg := c.service(t, "postgres")
	cc := pc.ConnConfig
	if cc.Host != "postgres" || cc.Port != 5432 || cc.Database != pg.Environment["POSTGRES_DB"] ||
		cc.User != pg.Environment["POSTGRES_USER"] || cc.Password != pg.Environment["POSTGRES_PASSWORD"] || cc.Password != testPassword {
		t.Errorf("the store's DSN (host %s, port %d, database %s, user %s) is not the postgres service's database and user with IPSFHIR_PG_PASSWORD",
			cc.Host, cc.Port, cc.Database, cc.User)
	}
	if d := ips.DependsOn["postgres"]; d.Condition != "service_healthy" {
		t.Errorf("ipsfhir starts when postgres is %q, want service_healthy", d.Condition)
	}
	if pg.Healthcheck == nil || !slices.Contains(pg.Healthcheck.Test, "pg_isready") {
		t.Error("postgres has no pg_isready healthcheck for service_healthy to wait on")
	}
	if _, declared := c.Volumes["pgdata"]; !declared || !slices.ContainsFunc(pg.Volumes, func(v string) bool { return strings.HasPrefix(v, "pgdata:") }) {
		t.Error("postgres does not keep its data in the named volume pgdata")
	}
}

// TestComposeNetwork: ipsfhir reaches HAPI over loopback (plain http is
// allowed to no other host), so it shares HAPI's network namespace; HAPI
// listens on the port the connection names, and ipsfhir's listen port and
// public URL are what the hapi service publishes, on the host's loopback.
func TestComposeNetwork(t *testing.T) {
	c := readCompose(t)
	ips, hapi := c.service(t, "ipsfhir"), c.service(t, "hapi")
	cfg := serviceConfig(t, ips)
	if ips.NetworkMode != "service:hapi" {
		t.Fatalf("ipsfhir's network_mode is %q, want service:hapi", ips.NetworkMode)
	}
	if hapi.Environment["hapi.fhir.fhir_version"] != "R4" {
		t.Error("HAPI is not set to FHIR R4")
	}
	hapiPort := hapi.Environment["SERVER_PORT"]
	if len(cfg.Connections) == 0 {
		t.Fatal("the configuration has no connection to HAPI")
	}
	for _, cn := range cfg.Connections {
		u, err := url.Parse(cn.FHIRBaseURL)
		if err != nil || u.Hostname() != "localhost" || u.Port() != hapiPort || u.Path != "/fhir" || !cn.Enabled {
			t.Errorf("connection %s is not enabled to http://localhost:%s/fhir, where HAPI listens in the shared namespace", cn.Name, hapiPort)
		}
	}
	_, listenPort, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if listenPort == hapiPort {
		t.Errorf("ipsfhir and HAPI both listen on %s in one namespace", hapiPort)
	}
	published := map[string]string{} // container port → host address
	for _, p := range hapi.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "127.0.0.1" {
			t.Errorf("port %q is not published on the host's loopback only", p)
			continue
		}
		published[parts[2]] = parts[0] + ":" + parts[1]
	}
	for _, p := range []string{hapiPort, listenPort} {
		if published[p] == "" {
			t.Errorf("port %s is not published by the hapi service", p)
		}
	}
	pub, err := url.Parse(cfg.Server.PublicURL)
	if err != nil || "127.0.0.1:"+pub.Port() != published[listenPort] {
		t.Errorf("server.publicUrl %q is not the published address of server.listen", cfg.Server.PublicURL)
	}
	for name, s := range c.Services {
		if s.Image != "" && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) && s.Build == nil {
			t.Errorf("service %s's image %s is not pinned to a version", name, s.Image)
		}
		if name != "hapi" && name != "jaeger" && len(s.Ports) > 0 {
			t.Errorf("service %s publishes ports %v", name, s.Ports)
		}
	}
}

// TestComposeSendsTracesToJaeger: the configuration leaves the collector to
// the environment, the ipsfhir service's standard OTLP variable names the
// jaeger service's OTLP/HTTP port, and the telemetry package accepts the
// variables as set there.
func TestComposeSendsTracesToJaeger(t *testing.T) {
	c := readCompose(t)
	ips, jaeger := c.service(t, "ipsfhir"), c.service(t, "jaeger")
	cfg := serviceConfig(t, ips)
	if cfg.Telemetry.OTLPEndpoint != "" {
		t.Error("telemetry.otlpEndpoint is set, so OTEL_EXPORTER_OTLP_ENDPOINT would be ignored")
	}
	u, err := url.Parse(ips.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
	if err != nil || u.Scheme != "http" || u.Hostname() != "jaeger" || u.Port() != "4318" {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT is %q, want the jaeger service's OTLP/HTTP port (http://jaeger:4318)", ips.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
	}
	if jaeger.Environment["COLLECTOR_OTLP_ENABLED"] != "true" || !strings.HasPrefix(jaeger.Image, "jaegertracing/all-in-one:") {
		t.Error("the jaeger service is not Jaeger all-in-one with OTLP enabled")
	}
	if _, ok := ips.DependsOn["jaeger"]; !ok {
		t.Error("ipsfhir does not depend on jaeger")
	}

	for _, v := range os.Environ() {
		if k, _, _ := strings.Cut(v, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range ips.Environment {
		if strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, v)
		}
	}
	// Nothing is recorded, so nothing is sent to the (unreachable) jaeger
	// host; Setup alone says whether the variables are usable.
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: cfg.Telemetry.ServiceName, OTLPEndpoint: cfg.Telemetry.OTLPEndpoint})
	if err != nil {
		t.Fatalf("the ipsfhir service's OTEL variables are refused: %v", err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "compose")
	if !span.IsRecording() {
		t.Error("with the compose environment, spans are not recorded for export")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx)
}

// TestDockerignoreKeepsSecretsOut: the build context (COPY . . in the
// Dockerfile) leaves out the .env file that holds IPSFHIR_PG_PASSWORD, the
// git directory and local databases.
func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for _, want := range []string{".env", ".git", "**/*.db", "**/node_modules"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not leave out %s", want)
		}
	}
	gi, err := os.ReadFile(filepath.Join("..", ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(gi), "\n"), ".env") {
		t.Error(".gitignore does not keep .env (IPSFHIR_PG_PASSWORD) out of the repository")
	}
}
