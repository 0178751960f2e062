package ehr_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

// rsaKey is one 2048-bit key for the whole run (generating one is slow
// under the race detector).
func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaPriv = k
	})
	return rsaPriv
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tokenServer is a fake SMART authorization server and FHIR endpoint. The
// token endpoint checks what a real one checks: the grant parameters, and
// the client assertion's signature (against the JWKS the adapter would
// publish), header and claims.
type tokenServer struct {
	t        *testing.T
	srv      *httptest.Server
	jwks     jose.JSONWebKeySet
	clientID string
	scope    string
	// expiresIn is the token lifetime the endpoint announces.
	expiresIn int
	// now is the token endpoint's clock (the client's, in tests that move it).
	now func() time.Time

	mu         sync.Mutex
	issued     []string // access tokens, in order
	jtis       map[string]bool
	tokenCalls atomic.Int32
	fhirCalls  atomic.Int32
	// reject401 lists tokens the FHIR endpoint answers 401 to.
	reject401 map[string]bool
	rejectAll bool
	problems  []string
}

func newTokenServer(t *testing.T, jwksJSON []byte, clientID, scope string) *tokenServer {
	ts := &tokenServer{t: t, clientID: clientID, scope: scope, expiresIn: 300, now: time.Now, jtis: map[string]bool{}, reject401: map[string]bool{}}
	if err := json.Unmarshal(jwksJSON, &ts.jwks); err != nil {
		t.Fatalf("JWKS does not parse: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			ts.problem("smart-configuration fetched with credentials")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token_endpoint": ts.srv.URL + "/auth/token"})
	})
	mux.HandleFunc("POST /auth/token", ts.token)
	mux.HandleFunc("GET /fhir/Goal/{id}", func(w http.ResponseWriter, r *http.Request) {
		ts.fhirCalls.Add(1)
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ts.mu.Lock()
		known := false
		for _, v := range ts.issued {
			known = known || v == tok
		}
		rejected := ts.reject401[tok] || ts.rejectAll
		ts.mu.Unlock()
		if !known || rejected {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("ETag", `W/"7"`)
		_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"` + r.PathValue("id") + `","meta":{"versionId":"7"}}`))
	})
	ts.srv = httptest.NewServer(mux)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) problem(p string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.problems = append(ts.problems, p)
}

func (ts *tokenServer) token(w http.ResponseWriter, r *http.Request) {
	ts.tokenCalls.Add(1)
	fail := func(why string) {
		ts.problem(why)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		fail("content type " + ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail("form: " + err.Error())
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		fail("grant_type " + g)
		return
	}
	if a := r.PostForm.Get("client_assertion_type"); a != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		fail("client_assertion_type " + a)
		return
	}
	if s := r.PostForm.Get("scope"); s != ts.scope {
		fail("scope " + s)
		return
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		fail("assertion: " + err.Error())
		return
	}
	if len(tok.Headers) != 1 {
		fail("assertion has no single header")
		return
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "JWT" {
		fail("typ " + typ)
		return
	}
	keys := ts.jwks.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		fail("kid " + h.KeyID + " not in the JWKS")
		return
	}
	if keys[0].Algorithm != h.Algorithm {
		fail("alg " + h.Algorithm + " differs from the JWKS's " + keys[0].Algorithm)
		return
	}
	var claims jwt.Claims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		fail("signature: " + err.Error())
		return
	}
	aud := ts.srv.URL + "/auth/token"
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: ts.clientID, Subject: ts.clientID, AnyAudience: jwt.Audience{aud}, Time: ts.now()}, 0); err != nil {
		fail("claims: " + err.Error())
		return
	}
	if claims.Expiry == nil || claims.Expiry.Time().Sub(ts.now()) > 5*time.Minute {
		fail("exp missing or more than 5 minutes ahead")
		return
	}
	ts.mu.Lock()
	dup := claims.ID == "" || ts.jtis[claims.ID]
	ts.jtis[claims.ID] = true
	ts.mu.Unlock()
	if dup {
		fail("jti missing or reused")
		return
	}
	access := "at-" + rand.Text()
	ts.mu.Lock()
	ts.issued = append(ts.issued, access)
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "bearer", "expires_in": ts.expiresIn, "scope": ts.scope})
}

func (ts *tokenServer) check() {
	ts.t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, p := range ts.problems {
		ts.t.Errorf("token server: %s", p)
	}
}

func TestSMARTBackend(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"RS384", rsaKey(t), "RS384"},
		{"ES384", ecKey(t), "ES384"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwks, err := ehr.JWKS(ehr.SigningKey{Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("JWKS: %s", jwks)
			}
			if k := set.Keys[0]; !k.IsPublic() || k.Algorithm != tc.alg || k.Use != "sig" || k.KeyID == "" {
				t.Fatalf("JWKS key: public %v alg %q use %q kid %q", k.IsPublic(), k.Algorithm, k.Use, k.KeyID)
			}
			if strings.Contains(string(jwks), `"d"`) {
				t.Fatal("JWKS contains private key material")
			}

			scopes := []string{"system/Goal.rs", "system/Observation.cruds"}
			ts := newTokenServer(t, jwks, "ipsfhir-client", strings.Join(scopes, " "))
			auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "ipsfhir-client", Key: ehr.SigningKey{Key: tc.key}, Scopes: scopes})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			var clock atomic.Int64
			clock.Store(now.UnixNano())
			fake := func() time.Time { return time.Unix(0, clock.Load()) }
			ehr.SetClock(auth, fake)
			ts.now = fake

			c, _ := newClient(t, ts.srv.URL+"/fhir", ehr.Options{Auth: auth})
			ctx := t.Context()

			// Discovery, one token, cached for the second request.
			for range 2 {
				resp, err := c.Read(ctx, "Goal", "g1")
				if err != nil {
					ts.check()
					t.Fatalf("read: %v", err)
				}
				if resp.VersionID != "7" {
					t.Fatalf("version %q", resp.VersionID)
				}
			}
			if n := ts.tokenCalls.Load(); n != 1 {
				t.Fatalf("%d token requests for two reads, want 1 (cached)", n)
			}

			// 300 s token, renewed 60 s before: at +239 s still cached, at
			// +241 s a new one.
			clock.Store(now.Add(239 * time.Second).UnixNano())
			if _, err := c.Read(ctx, "Goal", "g1"); err != nil {
				t.Fatal(err)
			}
			if n := ts.tokenCalls.Load(); n != 1 {
				t.Fatalf("token fetched again %v before its renewal time", 239*time.Second)
			}
			clock.Store(now.Add(241 * time.Second).UnixNano())
			if _, err := c.Read(ctx, "Goal", "g1"); err != nil {
				t.Fatal(err)
			}
			if n := ts.tokenCalls.Load(); n != 2 {
				t.Fatalf("%d token requests, want 2 after the renewal time", n)
			}

			// The EHR revokes the current token: one 401, a new token, the
			// request sent once more.
			ts.mu.Lock()
			ts.reject401[ts.issued[len(ts.issued)-1]] = true
			ts.mu.Unlock()
			fhirBefore := ts.fhirCalls.Load()
			if _, err := c.Read(ctx, "Goal", "g1"); err != nil {
				t.Fatalf("read after a revoked token: %v", err)
			}
			if n := ts.tokenCalls.Load(); n != 3 {
				t.Fatalf("%d token requests, want 3 (refreshed on 401)", n)
			}
			if n := ts.fhirCalls.Load() - fhirBefore; n != 2 {
				t.Fatalf("%d FHIR requests, want 2 (401, then OK)", n)
			}
			ts.check()
		})
	}
}

func TestSMARTRefreshesOnlyOnce(t *testing.T) {
	key := ecKey(t)
	jwks, err := ehr.JWKS(ehr.SigningKey{ID: "k1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTokenServer(t, jwks, "c1", "system/Goal.rs")
	auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{
		ClientID: "c1", Key: ehr.SigningKey{ID: "k1", Key: key},
		Scopes: []string{"system/Goal.rs"}, TokenURL: ts.srv.URL + "/auth/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, ts.srv.URL+"/fhir", ehr.Options{Auth: auth})
	if _, err := c.Read(t.Context(), "Goal", "g1"); err != nil {
		t.Fatal(err)
	}
	// From now on every token is refused, the fresh one too.
	ts.mu.Lock()
	ts.rejectAll = true
	ts.mu.Unlock()
	fhirBefore, tokensBefore := ts.fhirCalls.Load(), ts.tokenCalls.Load()
	_, err = c.Read(t.Context(), "Goal", "g1")
	e := wantKind(t, err, ehr.KindAuth)
	if e.Status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", e.Status)
	}
	if n := ts.fhirCalls.Load() - fhirBefore; n != 2 {
		t.Fatalf("%d FHIR requests, want 2 (one refresh, then give up)", n)
	}
	if n := ts.tokenCalls.Load() - tokensBefore; n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

func TestSMARTTokenEndpointRefuses(t *testing.T) {
	key := ecKey(t)
	other := ecKey(t) // the EHR knows a different key
	jwks, err := ehr.JWKS(ehr.SigningKey{ID: "k", Key: other})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTokenServer(t, jwks, "c1", "system/Goal.rs")
	auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c1", Key: ehr.SigningKey{ID: "k", Key: key}, Scopes: []string{"system/Goal.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, ts.srv.URL+"/fhir", ehr.Options{Auth: auth})
	_, err = c.Read(t.Context(), "Goal", "g1")
	wantKind(t, err, ehr.KindAuth)
	if !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("error %q does not say what the token endpoint said", err)
	}
	if n := ts.fhirCalls.Load(); n != 0 {
		t.Fatalf("%d FHIR requests without a token", n)
	}
}

func TestBearer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, ehr.Options{Auth: ehr.Bearer("s3cret")})
	_, err := c.Read(t.Context(), "Goal", "g1")
	e := wantKind(t, err, ehr.KindAuth)
	if e.Status != http.StatusForbidden || calls.Load() != 1 {
		t.Fatalf("status %d after %d calls; want 403 after 1", e.Status, calls.Load())
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("error quotes the token")
	}

	// Credentials never go over plain http to a host that is not loopback.
	if _, err := ehr.New(ehr.Options{BaseURL: "http://ehr.example.org/fhir", Auth: ehr.Bearer("x")}); err == nil {
		t.Fatal("New accepted a bearer token over plain http")
	}
}

func TestLoadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ec := ecKey(t)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"rsa pkcs1", write("rsa1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(t))), true},
		{"rsa pkcs8", write("rsa8.pem", "PRIVATE KEY", pkcs8(rsaKey(t))), true},
		{"ec sec1", write("ec1.pem", "EC PRIVATE KEY", sec1), true},
		{"ec pkcs8", write("ec8.pem", "PRIVATE KEY", pkcs8(ec)), true},
		{"ec p-256", write("p256.pem", "PRIVATE KEY", pkcs8(p256)), false},
		{"rsa 1024", write("small.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), false},
		{"garbage", write("garbage.pem", "PRIVATE KEY", []byte("not a key")), false},
		{"certificate only", write("cert.pem", "CERTIFICATE", []byte("x")), false},
		{"missing", filepath.Join(dir, "nope.pem"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ehr.LoadPrivateKey(tc.path)
			if tc.ok != (err == nil) {
				t.Fatalf("LoadPrivateKey: key %T, err %v; want ok=%v", key, err, tc.ok)
			}
			if err != nil {
				return
			}
			if _, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c", Key: ehr.SigningKey{Key: key}}); err != nil {
				t.Fatalf("loaded key unusable: %v", err)
			}
		})
	}
}

// TestSMARTTokenEndpointOnAnotherOrigin plays an EHR whose
// .well-known/smart-configuration (tampered with, or simply wrong) names a
// token endpoint on another host: the client assertion, a credential, must
// not be sent there. A second server stands for the other host and counts
// what reaches it. Configured explicitly (auth.tokenUrl), the same endpoint
// is used.
func TestSMARTTokenEndpointOnAnotherOrigin(t *testing.T) {
	key := ecKey(t)
	jwks, err := ehr.JWKS(ehr.SigningKey{ID: "k", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	// The other host: a working token endpoint, so that a test that sent
	// the assertion there would see it accepted.
	elsewhere := newTokenServer(t, jwks, "c1", "system/Goal.rs")
	var fhirCalls, discoveries atomic.Int32
	ehrMux := http.NewServeMux()
	ehrMux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, _ *http.Request) {
		discoveries.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token_endpoint": elsewhere.srv.URL + "/auth/token"})
	})
	ehrMux.HandleFunc("GET /fhir/Goal/{id}", func(w http.ResponseWriter, r *http.Request) {
		fhirCalls.Add(1)
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer at-") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"g1","meta":{"versionId":"1"}}`))
	})
	fhir := httptest.NewServer(ehrMux)
	t.Cleanup(fhir.Close)

	auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c1", Key: ehr.SigningKey{ID: "k", Key: key}, Scopes: []string{"system/Goal.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, fhir.URL+"/fhir", ehr.Options{Auth: auth})
	for range 2 {
		_, err = c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindAuth)
		if !errors.Is(err, ehr.ErrTokenEndpointOrigin) || !strings.Contains(err.Error(), "another origin") || !strings.Contains(err.Error(), "auth.tokenUrl") {
			t.Errorf("the refusal does not say why: %v", err)
		}
		if strings.Contains(err.Error(), elsewhere.srv.URL) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("the error names an address: %v", e)
		}
	}
	if n := elsewhere.tokenCalls.Load(); n != 0 {
		t.Fatalf("the client assertion was sent to another origin %d times", n)
	}
	if n := fhirCalls.Load(); n != 0 {
		t.Errorf("%d FHIR requests without a token", n)
	}
	if n := discoveries.Load(); n != 2 {
		t.Errorf("%d discoveries, want 2: a refused endpoint is not cached", n)
	}

	// The administrator who knows the EHR's token endpoint is elsewhere
	// says so: then it is used.
	auth, err = ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c1", Key: ehr.SigningKey{ID: "k", Key: key}, Scopes: []string{"system/Goal.rs"},
		TokenURL: elsewhere.srv.URL + "/auth/token"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ = newClient(t, fhir.URL+"/fhir", ehr.Options{Auth: auth})
	if _, err := c.Read(t.Context(), "Goal", "g1"); err != nil {
		elsewhere.check()
		t.Fatalf("with the token endpoint configured: %v", err)
	}
	if n := elsewhere.tokenCalls.Load(); n != 1 {
		t.Errorf("%d token requests to the configured endpoint, want 1", n)
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://ehr.example.org/fhir/R4", "https://ehr.example.org/oauth2/token", true},
		{"https://EHR.example.org/fhir", "HTTPS://ehr.example.org:443/token", true},
		{"http://127.0.0.1/fhir", "http://127.0.0.1:80/token", true},
		{"https://ehr.example.org/fhir", "https://auth.example.org/token", false},
		{"https://ehr.example.org/fhir", "https://ehr.example.org:8443/token", false},
		{"https://ehr.example.org/fhir", "http://ehr.example.org/token", false},
		{"http://127.0.0.1:8080/fhir", "http://127.0.0.1:8081/token", false},
		{"https://ehr.example.org/fhir", "https://ehr.example.org@evil.example/token", false},
		{"https://ehr.example.org/fhir", "https://ehr.example.org.evil.example/token", false},
		{"https://ehr.example.org/fhir", "ftp://ehr.example.org/token", false},
		{"https://ehr.example.org/fhir", "/token", false},
	} {
		if got := ehr.SameOrigin(tc.a, tc.b); got != tc.same {
			t.Errorf("SameOrigin(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
	if o, ok := ehr.Origin("https://EHR.example.org/fhir?x=1"); !ok || o != "https://ehr.example.org:443" {
		t.Errorf("Origin: %q %v", o, ok)
	}
}
