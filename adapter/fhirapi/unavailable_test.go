package fhirapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
)

// TestStoreOutageIs503: with the database gone, FHIR reads answer 503 with
// a transient OperationOutcome and Retry-After, not a 500 that reads like a
// bug.
func TestStoreOutageIs503(t *testing.T) {
	proxy, dsn := storetest.StartPostgresProxy(t, storetest.PostgresDSN(t))
	st, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := serveHarness(t, st, ipstest.Sample(t))
	get := func() *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", h.srv.URL+"/fhir/Goal?_lastUpdated=gt2020-01-01", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := get(); r.StatusCode != http.StatusOK {
		t.Fatalf("before the outage: %d", r.StatusCode)
	}
	proxy.Stop()
	r := get()
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("with the store gone: %d Retry-After %q: %s", r.StatusCode, r.Header.Get("Retry-After"), body)
	}
	var oo struct {
		ResourceType string                  `json:"resourceType"`
		Issue        []struct{ Code string } `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "transient" {
		t.Errorf("body %s; want an OperationOutcome with one transient issue", body)
	}
	if strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("the answer names the database's address: %s", body)
	}
}
