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
)

// fhirClient talks to the peer directly, bypassing the fault proxy: it is
// the clinic's own staff (seeding patients, a clinician editing a goal)
// and the suite's checks, none of which go through the adapter's network.
type fhirClient struct {
	base string
	hc   *http.Client
}

func newFHIRClient(base string) *fhirClient {
	return &fhirClient{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 60 * time.Second}}
}

// fhirReply is an answer from the peer.
type fhirReply struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request; path is relative to the base ("Goal/1") or an
// absolute URL under it (a next link).
func (f *fhirClient) do(ctx context.Context, method, path string, body []byte, header map[string]string) (*fhirReply, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = f.base + "/" + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, &safeError{"faultsuite: peer request could not be built", err}
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, transportError("faultsuite: peer "+method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, transportError("faultsuite: peer "+method+" reply", err)
	}
	return &fhirReply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// searchAll runs a search and follows the Bundle's next links, returning
// every matching resource.
func (f *fhirClient) searchAll(ctx context.Context, typ string, q url.Values) ([]json.RawMessage, error) {
	if q == nil {
		q = url.Values{}
	}
	if q.Get("_count") == "" {
		q.Set("_count", "1000")
	}
	next := typ + "?" + q.Encode()
	var out []json.RawMessage
	for page := 0; next != ""; page++ {
		if page > 10000 {
			return nil, fmt.Errorf("faultsuite: %s search: too many pages", typ)
		}
		r, err := f.do(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("faultsuite: %s search: HTTP %d", typ, r.Status)
		}
		var b struct {
			Link []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			} `json:"link"`
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
				Search   struct {
					Mode string `json:"mode"`
				} `json:"search"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			return nil, fmt.Errorf("faultsuite: %s search: the reply is not a Bundle", typ)
		}
		for _, e := range b.Entry {
			if e.Search.Mode == "" || e.Search.Mode == "match" {
				out = append(out, e.Resource)
			}
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" && strings.HasPrefix(l.URL, f.base+"/") {
				next = l.URL
			}
		}
	}
	return out, nil
}

// identifiers returns a resource's id, meta.versionId and (system, value)
// identifiers.
func identifiers(raw json.RawMessage) (id, version string, ids [][2]string) {
	var r struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	}
	_ = json.Unmarshal(raw, &r)
	for _, i := range r.Identifier {
		ids = append(ids, [2]string{i.System, i.Value})
	}
	return r.ID, r.Meta.VersionID, ids
}
