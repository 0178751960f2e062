package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// Joint transactions. Each client's changes go to an EHR that takes
// transactions as one transaction Bundle (pushBundle), about 14 entries on
// a first sync. The EHR's cost is mostly per request, so the Bundles of the
// clients a worker leases together are joined into one request of up to
// jointMaxEntries entries.
//
// The push of each leased client runs as it does alone, in a goroutine of
// its own, but only one of them runs at a time (a run token), in lease
// order: the worker makes one request at a time, as before. A push that
// reaches its transaction hands its Bundle to the joiner and waits; when
// every push of the lease is waiting or done, the Bundles waiting are sent
// together, and each push gets the part of the answer that is its own, as
// if its Bundle had been sent alone. Two Bundles that write the same
// resource (the specialist's Practitioner) go in different requests.
//
// When the joint transaction fails, a transaction is all or nothing: nothing
// was written. A failure of the EHR or the connection (5xx, 429, a lost
// answer, authentication) is every client's answer, as it would have been
// alone. Any other (one client's resource rejected, one client's stale
// If-Match) is not: each client's Bundle is then sent alone, so that the
// client at fault gets its own error and the others are written. Every
// entry is conditional (by identifier, If-Match, If-None-Exist), so a
// joint Bundle is as safe to send again after a lost answer as each of its
// parts. When the EHR refuses joint Bundles but takes each alone (a limit
// on entries), joining stops for bundleRetryAfter.

// jointMaxEntries is the most entries a joint transaction holds.
const jointMaxEntries = 120

// joiner joins the transactions of one lease's pushes.
type joiner struct {
	conn  *Connection
	e     *Engine
	token chan struct{} // held (full) by the push that runs

	mu      sync.Mutex
	live    int // pushes not done
	waiting []*jointSend
	// writing counts, by ledger key, the pushes whose transaction writes
	// the record, until they are done.
	writing map[string]int
	// held are the pushes waiting for the others to be done (see
	// jointTurn.await).
	held []chan struct{}
}

// jointSend is one push's transaction, waiting to be sent.
type jointSend struct {
	body    []byte
	entries []json.RawMessage
	targets []string
	resp    *ehr.Response
	err     error
	done    chan struct{}
	// alone, when set, says the joint transaction was refused: the push
	// sends its own alone.
	alone *refusal
}

// newJoiner returns a joiner for the pushes of items, or nil when their
// transactions are not joined: fewer than two, an EHR without
// transactions, or one that refused joint Bundles lately.
func (e *Engine) newJoiner(conn *Connection, items []store.OutboxItem) *joiner {
	if len(items) < 2 || conn.Plan.Bundles != "transaction" || !conn.bundles.allowed(jointKind, e.now()) {
		return nil
	}
	return &joiner{conn: conn, e: e, token: make(chan struct{}, 1), live: len(items)}
}

// jointKind is the bundleMemory kind of joint transactions.
const jointKind = "joint transaction"

// jointTurn is one push's part in a joiner: its transactions go through
// it (transaction), and it can wait for the others (await).
type jointTurn struct {
	j    *joiner
	next func() // hands the turn on to the next push of the lease, once
	keys []string
	held bool
}

// pushAll pushes items, one at a time but for their transactions, which
// are joined (see above). push is called in lease order, each under the
// run token, with the turn its transaction goes through; it returns the
// first error push returned, after every push is done.
func (j *joiner) pushAll(ctx context.Context, items []store.OutboxItem, push func(int, store.OutboxItem, *jointTurn) error) error {
	var (
		wg    sync.WaitGroup
		errs  = make([]error, len(items))
		turns = make([]chan struct{}, len(items)+1)
	)
	for i := range turns {
		turns[i] = make(chan struct{})
	}
	close(turns[0])
	for i, it := range items {
		wg.Go(func() {
			// Lease order: a push starts once the one before it waits
			// for its transaction or is done.
			<-turns[i]
			j.acquire()
			t := &jointTurn{j: j, next: sync.OnceFunc(func() { close(turns[i+1]) })}
			errs[i] = push(i, it, t)
			j.finish(ctx, t)
		})
	}
	wg.Wait()
	return firstError(errs)
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (j *joiner) acquire() { j.token <- struct{}{} }
func (j *joiner) release() { <-j.token }

// finish is called by a push that is done, holding the token.
func (j *joiner) finish(ctx context.Context, t *jointTurn) {
	j.mu.Lock()
	j.live--
	for _, k := range t.keys {
		if j.writing[k]--; j.writing[k] <= 0 {
			delete(j.writing, k)
		}
	}
	t.stepAside(ctx)
}

// stepAside is called by a push that holds the token and j.mu and waits
// from now on (for its send, for the others, or because it is done): it
// hands the token and the turn on and, when every push left is waiting,
// sends what waits (see ready). It unlocks j.mu.
func (t *jointTurn) stepAside(ctx context.Context) {
	j := t.j
	ready := j.ready()
	j.mu.Unlock()
	j.release()
	t.next()
	if ready != nil {
		j.flush(ctx, ready)
	}
}

// ready takes the waiting sends when every push left is waiting (for its
// send, or held); when only held pushes are left, it lets them go.
func (j *joiner) ready() []*jointSend {
	if len(j.waiting)+len(j.held) < j.live {
		return nil
	}
	if len(j.waiting) == 0 {
		for _, h := range j.held {
			close(h)
		}
		j.held = nil
		return nil
	}
	w := j.waiting
	j.waiting = nil
	return w
}

// await holds the push, before it writes anything, until every other push
// of the lease is done, when another's transaction writes one of keys (a
// record two clients share, the specialist's Practitioner): the push then
// starts again and finds that record written, instead of writing it a
// second time. It reports whether it held the push; a push is held once.
func (t *jointTurn) await(ctx context.Context, keys []string) bool {
	j := t.j
	if t.held {
		return false
	}
	j.mu.Lock()
	shared := slices.ContainsFunc(keys, func(k string) bool { return j.writing[k] > 0 })
	if !shared {
		j.mu.Unlock()
		return false
	}
	t.held = true
	h := make(chan struct{})
	j.held = append(j.held, h)
	t.stepAside(ctx)
	<-h
	j.acquire()
	return true
}

// transaction sends the push's transaction Bundle, which writes the
// records of keys, joined with the others' (see above).
func (t *jointTurn) transaction(ctx context.Context, body []byte, keys []string) (*ehr.Response, error) {
	j := t.j
	entries, targets, ok := bundleEntries(body)
	if !ok {
		return j.conn.EHR.Transaction(ctx, body, true)
	}
	js := &jointSend{body: body, entries: entries, targets: targets, done: make(chan struct{})}
	j.mu.Lock()
	if j.writing == nil {
		j.writing = map[string]int{}
	}
	for _, k := range keys {
		j.writing[k]++
	}
	t.keys = append(t.keys, keys...)
	j.waiting = append(j.waiting, js)
	t.stepAside(ctx)
	<-js.done
	j.acquire()
	if js.alone == nil {
		return js.resp, js.err
	}
	if !j.conn.bundles.allowed("transaction", j.e.now()) {
		js.alone.taken(false)
		return nil, errNotSent
	}
	resp, err := j.conn.EHR.Transaction(ctx, body, true)
	if js.alone.taken(err == nil) {
		j.conn.bundles.suspect(jointKind)
		if j.conn.bundles.settled(jointKind, true, j.e.now()) {
			j.e.log().InfoContext(ctx, "the EHR refuses joint transactions but takes each client's alone; sending them alone for a while", "connection", j.conn.Name)
		}
	}
	return resp, err
}

// errHeld: the push was held for the other pushes of its lease to be done
// (jointTurn.await) and starts again.
var errHeld = errors.New("push held for the lease's other pushes")

// flush sends the waiting transactions, joined in groups, and hands each
// its answer.
func (j *joiner) flush(ctx context.Context, sends []*jointSend) {
	var refused *refusal
	for _, group := range jointGroups(sends) {
		if refused != nil {
			// One joint transaction of these was refused: the rest go
			// alone too, not as more joint requests the EHR may refuse
			// for the same reason (a limit on entries).
			refused.add(len(group))
			for _, s := range group {
				s.alone = refused
			}
		} else {
			refused = j.send(ctx, group)
		}
		for _, s := range group {
			close(s.done)
		}
	}
}

// jointGroups splits sends, in order, into groups of at most
// jointMaxEntries entries (a larger one alone) that write no resource
// twice.
func jointGroups(sends []*jointSend) [][]*jointSend {
	var (
		out     [][]*jointSend
		cur     []*jointSend
		n       int
		targets = map[string]bool{}
	)
	for len(sends) > 0 {
		var rest []*jointSend
		for _, s := range sends {
			clash := false
			for _, t := range s.targets {
				clash = clash || targets[t]
			}
			if clash || (len(cur) > 0 && n+len(s.entries) > jointMaxEntries) {
				rest = append(rest, s)
				continue
			}
			cur, n = append(cur, s), n+len(s.entries)
			for _, t := range s.targets {
				targets[t] = true
			}
		}
		out = append(out, cur)
		cur, n, sends = nil, 0, rest
		clear(targets)
	}
	return out
}

// send sends one group joined, or a single one alone. When the EHR refuses
// the joint transaction for what is in it (see above), each push is told
// to send its own alone (the refusal returned), which it does in turn.
func (j *joiner) send(ctx context.Context, group []*jointSend) *refusal {
	if len(group) == 1 {
		group[0].resp, group[0].err = j.conn.EHR.Transaction(ctx, group[0].body, true)
		return nil
	}
	var entries []json.RawMessage
	for _, s := range group {
		entries = append(entries, s.entries...)
	}
	resp, err := j.conn.EHR.Transaction(ctx, bundleJSON("transaction", entries), true)
	switch {
	case err == nil:
		j.split(resp, group)
		return nil
	case ctx.Err() != nil || connectionWide(err):
		for _, s := range group {
			s.err = err
		}
		return nil
	}
	j.e.log().InfoContext(ctx, "joint transaction refused; sending each client's alone", "connection", j.conn.Name, "clients", len(group), "error_kind", errorToken(err), "status", statusOf(err))
	r := &refusal{pending: len(group), allOK: true}
	for _, s := range group {
		s.alone = r
	}
	return r
}

// refusal follows the sends of a group whose joint transaction the EHR
// refused, each then sent alone: when every one is taken alone, it was the
// joining the EHR refused, and joint transactions stop for a while.
type refusal struct {
	mu      sync.Mutex
	pending int
	allOK   bool
}

// add counts n more sends to be taken alone.
func (r *refusal) add(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending += n
}

// taken reports how one send went alone; it returns whether the EHR took
// every send of the group alone (so the last one reports true).
func (r *refusal) taken(ok bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	r.allOK = r.allOK && ok
	return r.pending == 0 && r.allOK
}

// errNotSent: a push's transaction, refused jointly, is not sent alone
// either, since the EHR refuses transactions for a while (see
// bundleMemory); the push writes one by one.
var errNotSent = &pushError{msg: "push: transaction not sent; the EHR refuses transactions for a while"}

// connectionWide: a failure that any request would have met, not one of a
// client's content.
func connectionWide(err error) bool {
	var ee *ehr.Error
	if !errors.As(err, &ee) {
		return true
	}
	switch ee.Kind {
	case ehr.KindTransient, ehr.KindOutcomeUnknown, ehr.KindAuth:
		return true
	}
	return false
}

// split hands each send of group its part of the joint answer: the
// entries' responses in order, as a transaction-response Bundle of its
// own. An answer that does not hold one response per entry is handed to
// each as unreadable, as it would be alone.
func (j *joiner) split(resp *ehr.Response, group []*jointSend) {
	var b struct {
		ResourceType string            `json:"resourceType"`
		Entry        []json.RawMessage `json:"entry"`
	}
	n := 0
	for _, s := range group {
		n += len(s.entries)
	}
	readable := json.Unmarshal(resp.Body, &b) == nil && b.ResourceType == "Bundle" && len(b.Entry) == n
	at := 0
	for _, s := range group {
		r := *resp
		var part []json.RawMessage
		if readable {
			part = b.Entry[at : at+len(s.entries)]
		}
		r.Body = bundleJSON("transaction-response", part)
		at += len(s.entries)
		s.resp = &r
	}
}

// bundleJSON writes a Bundle of type typ around entries, as they are.
func bundleJSON(typ string, entries []json.RawMessage) []byte {
	b := []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[`)
	for i, en := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, en...)
	}
	return append(b, "]}"...)
}

// bundleEntries reads a transaction Bundle's entries and what each one
// writes (its method, URL and If-None-Exist).
func bundleEntries(body []byte) ([]json.RawMessage, []string, bool) {
	var b struct {
		ResourceType string            `json:"resourceType"`
		Type         string            `json:"type"`
		Entry        []json.RawMessage `json:"entry"`
	}
	if json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" || b.Type != "transaction" || len(b.Entry) == 0 {
		return nil, nil, false
	}
	targets := make([]string, len(b.Entry))
	for i, en := range b.Entry {
		var r struct {
			FullURL string `json:"fullUrl"`
			Request struct {
				Method      string `json:"method"`
				URL         string `json:"url"`
				IfNoneExist string `json:"ifNoneExist"`
			} `json:"request"`
		}
		if json.Unmarshal(en, &r) != nil {
			return nil, nil, false
		}
		targets[i] = r.Request.Method + " " + r.Request.URL + " " + r.Request.IfNoneExist
		if r.FullURL != "" {
			// Two entries with one fullUrl cannot share a Bundle either.
			targets = append(targets, "fullUrl "+r.FullURL)
		}
	}
	return b.Entry, targets, true
}
