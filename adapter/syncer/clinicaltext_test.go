package syncer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// secondClinic adds a connection "clinic-b" to the rig's engine: another
// EHR (a peer of its own) holding the same patients.
func (r *rig) secondClinic(t *testing.T) (*Connection, *ehr.Client) {
	t.Helper()
	ctx := t.Context()
	srv := peer.StartForTest(t, peer.Options{})
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL, Connection: "clinic-b"})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := c.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(meta, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cli := range r.cl.Clients {
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, cli.Patient.System, cli.Patient.Value)
		if _, err := c.Create(ctx, "Patient", []byte(body), ""); err != nil {
			t.Fatalf("seed patient: %v", err)
		}
	}
	conn := &Connection{Name: "clinic-b", Plan: p, EHR: c, Mapping: r.conn.Mapping, ConsentDefault: true}
	r.engine.Connections = append(r.engine.Connections, conn)
	return conn, c
}

// goalNotes returns the note texts of goal k in an EHR.
func goalNotes(t *testing.T, c *ehr.Client, k mappings.Key) []string {
	t.Helper()
	es, err := c.Search(t.Context(), "Goal", url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("search goal: %d found, %v", len(es), err)
	}
	var g struct {
		Note []struct {
			Text string `json:"text"`
		} `json:"note"`
	}
	if err := json.Unmarshal(es[0].Resource, &g); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range g.Note {
		out = append(out, n.Text)
	}
	return out
}

// addNoteInEHR has a clinician add a note to goal k in an EHR.
func addNoteInEHR(t *testing.T, c *ehr.Client, k mappings.Key, text string) {
	t.Helper()
	es, err := c.Search(t.Context(), "Goal", url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("search goal: %d found, %v", len(es), err)
	}
	var g map[string]any
	if err := json.Unmarshal(es[0].Resource, &g); err != nil {
		t.Fatal(err)
	}
	notes, _ := g["note"].([]any)
	g["note"] = append(notes, map[string]any{"text": text, "time": "2026-11-30T10:00:00Z"})
	body, _ := json.Marshal(g)
	if _, err := c.Update(t.Context(), "Goal", g["id"].(string), body, ""); err != nil {
		t.Fatalf("clinician's update: %v", err)
	}
}

// TestOneClinicsNotesStayOutOfAnothersChart: a client is synced with two
// clinics' EHRs. A clinician of the first adds a note to a goal: the
// program's record keeps it (with its source), the first EHR keeps it, and
// the second clinic's chart never gets it while the first keeps its
// clinical text (the default); a note the second clinic's clinician adds
// does not push the first's out of the record. With the first clinic set
// to share, its note reaches the second EHR too.
func TestOneClinicsNotesStayOutOfAnothersChart(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	connB, ehrB := r.secondClinic(t)
	both := []string{"clinic", "clinic-b"}
	var batch []store.Stored
	for _, c := range r.cl.Clients {
		batch = append(batch, store.Stored{Client: c})
	}
	if _, err := r.store.SaveClients(ctx, batch, both); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	c, g, k := r.firstGoal()
	const fromA = "Clinic A: worried about disclosing the diagnosis at interviews"
	addNoteInEHR(t, r.client, k, fromA)
	if s, err := r.engine.PullConnection(ctx, r.conn); err != nil || s.Applied != 1 {
		t.Fatalf("pull from clinic A: %+v %v", s, err)
	}
	stored := func() []ips.Note {
		got, _, err := r.store.GetClient(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Goal(g.ID).Notes
	}
	if !slices.ContainsFunc(stored(), func(n ips.Note) bool { return n.Text == fromA && n.Source == "clinic" }) {
		t.Fatalf("store notes %+v; want clinic A's note kept with its source", stored())
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push after the pull: %+v %v", s, err)
	}
	if slices.Contains(goalNotes(t, ehrB, k), fromA) {
		t.Errorf("clinic B's goal has clinic A's note %q; clinic A keeps its clinical text", fromA)
	}
	if !slices.Contains(goalNotes(t, r.client, k), fromA) {
		t.Errorf("clinic A's goal lost its own note")
	}

	// Clinic B's clinician adds a note: the record keeps both.
	const fromB = "Clinic B: start date confirmed with the employer"
	addNoteInEHR(t, ehrB, k, fromB)
	if s, err := r.engine.PullConnection(ctx, connB); err != nil || s.Applied != 1 {
		t.Fatalf("pull from clinic B: %+v %v", s, err)
	}
	notes := stored()
	if !slices.ContainsFunc(notes, func(n ips.Note) bool { return n.Text == fromA && n.Source == "clinic" }) ||
		!slices.ContainsFunc(notes, func(n ips.Note) bool { return n.Text == fromB && n.Source == "clinic-b" }) {
		t.Fatalf("store notes %+v; want both clinics' notes, each with its source", notes)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Conflicts != 0 {
		t.Fatalf("push after clinic B's note: %+v %v", s, err)
	}
	if a := goalNotes(t, r.client, k); slices.Contains(a, fromB) || !slices.Contains(a, fromA) {
		t.Errorf("clinic A's goal notes %q; want its own and not clinic B's", a)
	}
	if b := goalNotes(t, ehrB, k); slices.Contains(b, fromA) || !slices.Contains(b, fromB) {
		t.Errorf("clinic B's goal notes %q; want its own and not clinic A's", b)
	}
	// Pulls of both see nothing new: no echo, nothing lost.
	for _, cn := range []*Connection{r.conn, connB} {
		if s, err := r.engine.PullConnection(ctx, cn); err != nil || s.Applied != 0 || s.Conflicts != 0 {
			t.Errorf("pull of %s afterwards: %+v %v; want nothing applied", cn.Name, s, err)
		}
	}
	if n := stored(); len(n) != len(notes) {
		t.Errorf("store notes after the pulls %+v; want %+v", n, notes)
	}

	// Clinic A shares: its note goes to clinic B on the next push.
	r.engine.SharedText = []string{"clinic"}
	got, v, _ := r.store.GetClient(ctx, c.ID)
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: got, Version: v}}, both); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push with clinic A sharing: %+v %v", s, err)
	}
	if b := goalNotes(t, ehrB, k); !slices.Contains(b, fromA) || !slices.Contains(b, fromB) {
		t.Errorf("clinic B's goal notes %q; want clinic A's shared note and its own", b)
	}
	if a := goalNotes(t, r.client, k); slices.Contains(a, fromB) {
		t.Errorf("clinic A's goal notes %q; clinic B keeps its text", a)
	}
}

// TestFoldNotes: what a merge with one clinic's EHR leaves in the program's
// record, note by note.
func TestFoldNotes(t *testing.T) {
	t.Parallel()
	e := &Engine{}
	a := &Connection{Name: "a"}
	prog := ips.Note{Text: "program", Date: ips.MustDate("2026-10-01")}
	fromB := ips.Note{Text: "b's", Source: "b"}
	fromA := ips.Note{Text: "a's", Source: "a"}
	cases := []struct {
		name        string
		notes, seen []ips.Note
		want        []ips.Note
	}{
		{"a new note is a's", []ips.Note{prog}, []ips.Note{{Text: prog.Text, Date: prog.Date}, {Text: "new"}},
			[]ips.Note{prog, {Text: "new", Source: "a"}}},
		{"b's note a cannot see stays", []ips.Note{prog, fromB, fromA}, []ips.Note{{Text: prog.Text, Date: prog.Date}, {Text: "a's"}},
			[]ips.Note{fromB, prog, fromA}},
		{"a removes its own note", []ips.Note{fromA, fromB}, nil, []ips.Note{fromB}},
		{"b's note a still holds from sharing is not taken as a's", []ips.Note{fromB}, []ips.Note{{Text: "b's"}}, []ips.Note{fromB}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.foldNotes(a, tc.notes, tc.seen)
			if !slices.Equal(got, tc.want) {
				t.Errorf("foldNotes = %+v, want %+v", got, tc.want)
			}
		})
	}
	// With b sharing, b's note is one a sees.
	e.SharedText = []string{"b"}
	if got := e.foldNotes(a, []ips.Note{fromB}, []ips.Note{{Text: "b's"}}); !slices.Equal(got, []ips.Note{fromB}) {
		t.Errorf("with b sharing: %+v", got)
	}
	if got := e.foldNotes(a, []ips.Note{fromB}, nil); len(got) != 0 {
		t.Errorf("a clinician of a removing b's shared note: %+v, want it gone", got)
	}
}

// TestSyncPassesAreAudited: a push that wrote to the EHR and a pull that
// read from it are each one entry in the audit trail (caller sync, the
// connection, how many records), and a pass that did nothing is none.
func TestSyncPassesAreAudited(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	ps, err := r.engine.PushOnce(ctx)
	if err != nil || ps.Written == 0 {
		t.Fatalf("push: %+v %v", ps, err)
	}
	pl, err := r.engine.PullOnce(ctx)
	if err != nil || pl.Seen == 0 {
		t.Fatalf("pull: %+v %v", pl, err)
	}
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.store.Audit(ctx, store.AuditQuery{Caller: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AuditEntry{
		{Caller: "sync", Action: "U", Route: "push", Connection: "clinic", Records: ps.Written, Status: 200},
		{Caller: "sync", Action: "R", Route: "pull", Connection: "clinic", Records: pl.Seen, Status: 200},
	}
	for i := range got {
		got[i].ID, got[i].At = 0, time.Time{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit trail of sync:\n got %+v\nwant %+v", got, want)
	}
}
