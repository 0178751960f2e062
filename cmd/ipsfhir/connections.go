package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
)

const connectionsAbout = `Lists the EHR connections of the configuration: whether each is enabled now,
and why. A connection is enabled or disabled by the configuration file's
enabled:, unless an administrator enabled or disabled it in the console
(/console/connections/NAME): that choice is stored, wins over the file
until someone makes the connection follow the file again (the console's
"Follow the configuration file again"), and is what serve, sync and import
go by. This command shows the same as the console.

Output, one line per connection: its name, enabled or disabled, and the
source: "file", or "console (NAME, TIME)" with the file's setting beside it.
--json prints {"connections": [{"name", "enabled", "inFile", "setBy",
"setAt"}]}.

Exit codes: 0 listed; 1 the store could not be read; 2 a usage error.`

func runConnections(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("connections", "--config FILE [--json]", connectionsAbout, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "ipsfhir connections: --config FILE is required, and no other arguments are taken")
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir connections: %v\n", err)
		return exitUsage
	}
	st, code := openStore(ctx, cfg, "connections", stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	set, err := readEnabled(ctx, cfg, st)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir connections: %v\n", err)
		return exitFindings
	}
	type row struct {
		Name    string    `json:"name"`
		Enabled bool      `json:"enabled"`
		InFile  bool      `json:"inFile"`
		SetBy   string    `json:"setBy,omitempty"`
		SetAt   time.Time `json:"setAt,omitzero"`
	}
	rows := []row{}
	for _, cn := range cfg.Connections {
		r := row{Name: cn.Name, Enabled: slices.Contains(set.names, cn.Name), InFile: cn.Enabled}
		if s, ok := set.settings[cn.Name]; ok {
			r.SetBy, r.SetAt = s.By, s.At
		}
		rows = append(rows, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"connections": rows}); err != nil {
			return exitFindings
		}
		return exitOK
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no connections in the configuration")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTION\tNOW\tSOURCE")
	for _, r := range rows {
		now := "disabled"
		if r.Enabled {
			now = "enabled"
		}
		source := "file"
		if r.SetBy != "" {
			source = fmt.Sprintf("console (%s, %s; the file says enabled: %t)", r.SetBy, r.SetAt.UTC().Format(time.RFC3339), r.InFile)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, now, source)
	}
	if err := tw.Flush(); err != nil {
		return exitFindings
	}
	return exitOK
}
