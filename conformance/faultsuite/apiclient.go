package faultsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// apiClient calls one replica's HTTP API (/api/v1, /admin, /metrics) with
// the suite's keys. It knows only the documented HTTP contract.
type apiClient struct {
	base     string
	key      string // specialist
	adminKey string
	hc       *http.Client
}

func newAPIClient(base, key, adminKey string) *apiClient {
	return &apiClient{base: base, key: key, adminKey: adminKey, hc: &http.Client{Timeout: 30 * time.Second}}
}

type apiReply struct {
	Status int
	ETag   string
	Body   []byte
}

func (a *apiClient) do(ctx context.Context, method, path, key string, body []byte, header map[string]string) (*apiReply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, &safeError{"faultsuite: API request could not be built", err}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, transportError("faultsuite: API "+method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, transportError("faultsuite: API "+method+" reply", err)
	}
	return &apiReply{Status: resp.StatusCode, ETag: resp.Header.Get("ETag"), Body: b}, nil
}

// getClient reads one client and its version (ETag).
func (a *apiClient) getClient(ctx context.Context, id string) (*ips.Client, string, error) {
	r, err := a.do(ctx, http.MethodGet, "/api/v1/clients/"+url.PathEscape(id), a.key, nil, nil)
	if err != nil {
		return nil, "", err
	}
	if r.Status != http.StatusOK {
		return nil, "", fmt.Errorf("faultsuite: GET client: HTTP %d", r.Status)
	}
	var c ips.Client
	if err := json.Unmarshal(r.Body, &c); err != nil {
		return nil, "", fmt.Errorf("faultsuite: GET client: the reply is not a client")
	}
	return &c, r.ETag, nil
}

// putRecord replaces (or, with rid "", adds) a goal, support or job of a
// client, only if the client is still at etag. It returns the HTTP status.
func (a *apiClient) putRecord(ctx context.Context, clientID, plural, rid, etag string, record any) (int, error) {
	body, err := json.Marshal(record)
	if err != nil {
		return 0, err
	}
	method, path := http.MethodPut, "/api/v1/clients/"+url.PathEscape(clientID)+"/"+plural
	if rid == "" {
		method = http.MethodPost
	} else {
		path += "/" + url.PathEscape(rid)
	}
	r, err := a.do(ctx, method, path, a.key, body, map[string]string{"If-Match": etag})
	if err != nil {
		return 0, err
	}
	return r.Status, nil
}

// listClients reads every client, page by page.
func (a *apiClient) listClients(ctx context.Context) (map[string]*ips.Client, error) {
	out := map[string]*ips.Client{}
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		r, err := a.do(ctx, http.MethodGet, "/api/v1/clients?"+q.Encode(), a.key, nil, nil)
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("faultsuite: list clients: HTTP %d", r.Status)
		}
		var page struct {
			Clients []*ips.Client `json:"clients"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return nil, fmt.Errorf("faultsuite: list clients: the reply is not a page of clients")
		}
		for _, c := range page.Clients {
			out[c.ID] = c
		}
		if len(page.Clients) < 1000 {
			return out, nil
		}
		after = page.Clients[len(page.Clients)-1].ID
	}
}

// outboxDepth sums the outbox depth /admin/connections reports.
func (a *apiClient) outboxDepth(ctx context.Context) (int, error) {
	r, err := a.do(ctx, http.MethodGet, "/admin/connections", a.adminKey, nil, nil)
	if err != nil {
		return 0, err
	}
	if r.Status != http.StatusOK {
		return 0, fmt.Errorf("faultsuite: GET /admin/connections: HTTP %d", r.Status)
	}
	var b struct {
		Connections []struct {
			Name        string `json:"name"`
			OutboxDepth int    `json:"outboxDepth"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		return 0, fmt.Errorf("faultsuite: GET /admin/connections: unexpected reply")
	}
	n := 0
	for _, c := range b.Connections {
		n += c.OutboxDepth
	}
	return n, nil
}

// conceptPaths reads a connection's sync plan: each IPS concept's path
// (native, chart-note, none, read), and whether each write carries a
// Provenance.
func (a *apiClient) conceptPaths(ctx context.Context, connection string) (map[string]string, bool, error) {
	r, err := a.do(ctx, http.MethodGet, "/admin/connections/"+url.PathEscape(connection)+"/plan", a.adminKey, nil, nil)
	if err != nil {
		return nil, false, err
	}
	if r.Status != http.StatusOK {
		return nil, false, fmt.Errorf("faultsuite: GET the connection's plan: HTTP %d", r.Status)
	}
	var p struct {
		Concepts []struct {
			Concept string `json:"concept"`
			Path    string `json:"path"`
		} `json:"concepts"`
		Types []struct {
			Type             string `json:"type"`
			WrittenAlongside bool   `json:"writtenAlongside"`
		} `json:"resourceTypes"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		return nil, false, fmt.Errorf("faultsuite: GET the connection's plan: unexpected reply")
	}
	out := map[string]string{}
	for _, c := range p.Concepts {
		out[c.Concept] = c.Path
	}
	provenance := false
	for _, t := range p.Types {
		provenance = provenance || (t.Type == "Provenance" && t.WrittenAlongside)
	}
	return out, provenance, nil
}

// DeadLetter is a dead letter as /admin/dead-letters lists it.
type DeadLetter struct {
	ID       int64  `json:"id"`
	ClientID string `json:"clientId"`
	Attempts int    `json:"attempts"`
	Reason   string `json:"reason"`
}

// Conflict is a conflict record as /admin/conflicts lists it.
type Conflict struct {
	ID       int64  `json:"id"`
	ClientID string `json:"clientId"`
	Key      string `json:"key"`
	Field    string `json:"field"`
	Winner   string `json:"winner"`
}

func (a *apiClient) deadLetters(ctx context.Context) ([]DeadLetter, error) {
	var b struct {
		DeadLetters []DeadLetter `json:"deadLetters"`
	}
	return b.DeadLetters, a.adminGet(ctx, "/admin/dead-letters", &b)
}

// conflicts lists every conflict record, resolved or not.
func (a *apiClient) conflicts(ctx context.Context) ([]Conflict, error) {
	var b struct {
		Conflicts []Conflict `json:"conflicts"`
	}
	return b.Conflicts, a.adminGet(ctx, "/admin/conflicts?all=true", &b)
}

func (a *apiClient) adminGet(ctx context.Context, path string, v any) error {
	r, err := a.do(ctx, http.MethodGet, path, a.adminKey, nil, nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("faultsuite: GET %s: HTTP %d", strings.SplitN(path, "?", 2)[0], r.Status)
	}
	// encoding/json matches names without regard to case, so the store's
	// untagged fields (ClientID) and lowerCamel tags (clientId) both fit.
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("faultsuite: GET %s: unexpected reply", strings.SplitN(path, "?", 2)[0])
	}
	return nil
}

// metrics reads /metrics (Prometheus text) with the admin key.
func (a *apiClient) metrics(ctx context.Context) (string, error) {
	r, err := a.do(ctx, http.MethodGet, "/metrics", a.adminKey, nil, nil)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("faultsuite: GET /metrics: HTTP %d", r.Status)
	}
	return string(r.Body), nil
}
