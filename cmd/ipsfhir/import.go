package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

func runImport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("import", "--config FILE [--all] [--json] CASELOAD",
		`Stores the clients of a caseload JSON file (docs/CASELOAD.md; - for standard
input) in the IPS store the configuration names, and queues each stored client
for every enabled connection, all in one transaction.

Clients are matched by id: a new id is added, an existing client is replaced
by the file's version, and one whose content is unchanged is left alone (use
--all to store and queue it anyway, e.g. after enabling a connection). A
client given without pastEpisodes keeps the earlier enrollment episodes the
store holds; a referred client given with status active and enrolledOn is
thereby accepted.
Clients in the store that the file does not mention are not touched.

The file is checked whole first: if anything is wrong, every problem is
listed with its path and nothing is stored. The summary counts clients; it
names none. When stderr is a terminal, a progress line there shows how the
import goes (clients compared with the store: done/total, rate, time left). Exit 0 imported, 1 invalid caseload or the store failed, 2 usage,
a bad configuration or an unreadable file.`, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	all := fs.Bool("all", false, "store and queue unchanged clients too")
	asJSON := fs.Bool("json", false, `print the summary as JSON: {"new", "updated", "unchanged", "connections"}`)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	// Flags may also follow the file (import caseload.json --config x):
	// the flag package stops at the first argument that is not a flag.
	var files []string
	for fs.NArg() > 0 {
		files = append(files, fs.Arg(0))
		if code, done := parseFlags(fs, fs.Args()[1:], stdout); done {
			return code
		}
	}
	if *cfgPath == "" || len(files) != 1 {
		fmt.Fprintln(stderr, "ipsfhir import: --config FILE and one CASELOAD file are required")
		fs.Usage()
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir import: %v\nnothing was stored\n", err)
		return exitUsage
	}

	// The caseload is checked before the store is opened, so a broken
	// file leaves no trace, not even a new empty database.
	data, err := readInput(files[0], stdin)
	if errors.Is(err, errTooBig) {
		fmt.Fprintf(stderr, "ipsfhir import: %s: split the caseload and import each part\nnothing was stored\n", fileError(err))
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir import: %s\n", fileError(err))
		return exitUsage
	}
	prog := progressTo(stderr)
	prog.status(fmt.Sprintf("import: checking the caseload (%d MB)", len(data)>>20))
	cl, err := ips.Decode(bytes.NewReader(data))
	prog.clear()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir import: %v\nnothing was stored\n", err)
		if errors.Is(err, ips.ErrNotJSON) || errors.Is(err, ips.ErrTooLarge) || !errors.As(err, new(*ips.ValidationError)) {
			return exitUsage
		}
		return exitFindings
	}
	// Business identifiers are scoped by program: clients of another
	// program would be written into this program's namespace in the EHRs.
	if cl.Program != nil && cl.Program.ID != "" && cl.Program.ID != cfg.Program.ID {
		fmt.Fprintf(stderr, "ipsfhir import: invalid caseload: 1 problem\n  program.id: is %q, but the configuration's program.id is %q\nnothing was stored\n", cl.Program.ID, cfg.Program.ID)
		return exitFindings
	}

	st, code := openStore(ctx, cfg, "import", stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	set, err := readEnabled(ctx, cfg, st)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir import: %v\nnothing was stored\n", err)
		return exitFindings
	}
	connections := set.names
	sum, err := importClients(ctx, st, cl.Clients, connections, *all, prog)
	prog.clear()
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			fmt.Fprintln(stderr, "ipsfhir import: a client changed in the store while the file was imported; nothing was stored; run the import again")
		} else {
			fmt.Fprintf(stderr, "ipsfhir import: %v\nnothing was stored\n", err)
		}
		return exitFindings
	}
	sum.Connections = connections
	if sum.Connections == nil {
		sum.Connections = []string{}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			fmt.Fprintf(stderr, "ipsfhir import: %v\n", err)
			return exitFindings
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "imported %d clients: %d new, %d updated, %d unchanged\n", sum.New+sum.Updated+sum.Unchanged, sum.New, sum.Updated, sum.Unchanged)
	switch {
	case sum.New+sum.Updated == 0:
	case len(connections) == 0:
		fmt.Fprintln(stdout, "no connection is enabled: nothing was queued for an EHR")
	default:
		fmt.Fprintf(stdout, "queued %d clients for %s\n", sum.New+sum.Updated, strings.Join(connections, ", "))
	}
	return exitOK
}

// importSummary counts what an import did; it names no client.
type importSummary struct {
	New         int      `json:"new"`
	Updated     int      `json:"updated"`
	Unchanged   int      `json:"unchanged"`
	Connections []string `json:"connections"`
}

// importClients saves clients in one SaveClients call (one transaction):
// new ones at version 0, existing ones at the version just read, so that a
// client changed meanwhile through the API fails the whole import with
// store.ErrConflict instead of being overwritten unseen. Clients whose
// stored content is the same are skipped unless all is set. prog, if not
// nil, shows the clients compared with the store and then the save.
func importClients(ctx context.Context, st store.Store, clients []*ips.Client, connections []string, all bool, prog *progressOut) (importSummary, error) {
	bar := prog.start("import", "clients", len(clients))
	var (
		sum   importSummary
		batch []store.Stored
	)
	for i, c := range clients {
		bar.set(i)
		cur, v, err := st.GetClient(ctx, c.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			sum.New++
			batch = append(batch, store.Stored{Client: c})
			continue
		case err != nil:
			return importSummary{}, err
		}
		// A client given without pastEpisodes keeps the stored ones
		// (episodes ipsfhir opened on a re-referral), and must still fit
		// them.
		c.KeepHistory(cur)
		same, err := sameClient(cur, c)
		if err != nil {
			return importSummary{}, err
		}
		if same && !all {
			sum.Unchanged++
			continue
		}
		sum.Updated++
		batch = append(batch, store.Stored{Client: c, Version: v})
	}
	bar.finish()
	// The file was valid; with the stored episodes kept it must still be
	// (the paths are the file's).
	if err := ips.Validate(&ips.Caseload{Clients: clients}); err != nil {
		return importSummary{}, err
	}
	if len(batch) == 0 {
		return sum, nil
	}
	prog.status(fmt.Sprintf("import: saving %d clients", len(batch)))
	if _, err := st.SaveClients(ctx, batch, connections); err != nil {
		return importSummary{}, err
	}
	return sum, nil
}

// sameClient compares two clients as the store keeps them: their JSON.
func sameClient(a, b *ips.Client) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ja, jb), nil
}

// openStore opens the store a configuration names. On failure it reports
// to stderr and returns a nil store and the exit code: 2 when the store
// cannot even be named (a secret reference that does not resolve), 1 when
// opening it fails.
func openStore(ctx context.Context, cfg *config.Config, cmd string, stderr io.Writer) (store.Store, int) {
	if _, err := cfg.Store.DSN.Resolve(); err != nil {
		fmt.Fprintf(stderr, "ipsfhir %s: store.dsn: %v\n", cmd, err)
		return nil, exitUsage
	}
	st, err := storeFor(ctx, cfg.Store)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir %s: %v\n", cmd, err)
		return nil, exitFindings
	}
	return st, exitOK
}
