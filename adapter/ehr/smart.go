package ehr

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// assertionLifetime is the client assertion's exp - now. SMART allows at
	// most five minutes; a minute less leaves room for clock skew.
	assertionLifetime = 4 * time.Minute
	// defaultRefreshBefore is how long before expires_in a token is replaced.
	defaultRefreshBefore = 60 * time.Second
	// tokenBodyLimit bounds what we read from a token endpoint or a SMART
	// configuration document.
	tokenBodyLimit = 1 << 20
	// assertionType is the client_assertion_type of private_key_jwt.
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// SigningKey is a private key the adapter signs client assertions with.
type SigningKey struct {
	// ID is the JWK key id ("kid") the EHR looks the public key up by.
	// Default: the key's RFC 7638 SHA-256 thumbprint.
	ID string
	// Key is an *rsa.PrivateKey of at least 2048 bits (signs RS384) or an
	// *ecdsa.PrivateKey on P-384 (signs ES384). LoadPrivateKey reads either
	// from a PEM file.
	Key crypto.Signer
}

// SMARTOptions configures SMART Backend Services authorization.
type SMARTOptions struct {
	// ClientID is the client id the EHR registered for ipsfhir; it is the
	// assertion's iss and sub.
	ClientID string
	// Key signs the client assertion. Its public half must be registered with
	// the EHR, directly or through the JWKS URL the adapter serves (JWKS).
	Key SigningKey
	// TokenURL is the token endpoint. Empty: discovered from
	// {base}/.well-known/smart-configuration on first use, and accepted
	// only on the FHIR base's origin (scheme, host and port): the client
	// assertion is a credential, and a discovery document that names
	// another origin would have it sent there. An EHR whose token endpoint
	// is on another origin is configured here, explicitly.
	TokenURL string
	// Scopes requested, e.g. "system/Goal.rs", "system/Observation.cruds".
	Scopes []string
	// RefreshBefore is how long before its expiry a token is replaced
	// (default 60 s), so a request never leaves with a token about to expire.
	RefreshBefore time.Duration
}

// SMARTBackend is an Auth for SMART Backend Services: an OAuth 2.0
// client_credentials grant authenticated with a private_key_jwt client
// assertion. The access token is cached until RefreshBefore ahead of its
// expiry and dropped when the EHR answers 401.
type SMARTBackend struct {
	clientID      string
	scope         string
	tokenURL      string
	signer        jose.Signer
	refreshBefore time.Duration
	now           func() time.Time

	// fetch serializes token fetches, so concurrent requests that find no
	// token wait for one fetch instead of each asking for a token. A channel,
	// not a mutex, so a waiter can give up when its context ends.
	fetch chan struct{}

	mu         sync.Mutex
	token      string    // the Authorization value, "Bearer ..."
	renewAt    time.Time // when to fetch a new one
	discovered string    // token endpoint from smart-configuration
}

var _ Auth = (*SMARTBackend)(nil)

// NewSMARTBackend checks o and returns the Auth. It does no I/O: the token
// endpoint is discovered and called on the first request.
func NewSMARTBackend(o SMARTOptions) (*SMARTBackend, error) {
	if o.ClientID == "" {
		return nil, errors.New("ehr: SMART: ClientID is required")
	}
	if o.Key.Key == nil {
		return nil, errors.New("ehr: SMART: Key is required")
	}
	alg, err := keyAlgorithm(o.Key.Key)
	if err != nil {
		return nil, fmt.Errorf("ehr: SMART: %w", err)
	}
	if o.TokenURL != "" {
		u, err := url.Parse(o.TokenURL)
		if err != nil || !u.IsAbs() {
			return nil, errors.New("ehr: SMART: TokenURL must be an absolute URL")
		}
		if !secureEnough(u) {
			return nil, errors.New("ehr: SMART: TokenURL must use https (http only on loopback)")
		}
	}
	if o.RefreshBefore < 0 {
		return nil, errors.New("ehr: SMART: RefreshBefore must not be negative")
	}
	if o.RefreshBefore == 0 {
		o.RefreshBefore = defaultRefreshBefore
	}
	for _, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("ehr: SMART: scope %q must be one non-empty word", s)
		}
	}
	kid := o.Key.ID
	if kid == "" {
		if kid, err = thumbprint(o.Key.Key); err != nil {
			return nil, fmt.Errorf("ehr: SMART: %w", err)
		}
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: o.Key.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid),
	)
	if err != nil {
		return nil, fmt.Errorf("ehr: SMART: signer: %w", err)
	}
	return &SMARTBackend{
		clientID:      o.ClientID,
		scope:         strings.Join(o.Scopes, " "),
		tokenURL:      o.TokenURL,
		signer:        signer,
		refreshBefore: o.RefreshBefore,
		now:           time.Now,
		fetch:         make(chan struct{}, 1),
	}, nil
}

// Authorization returns "Bearer <access token>", fetching a token when none
// is cached or the cached one is due for renewal.
func (s *SMARTBackend) Authorization(ctx context.Context, env AuthEnv) (string, error) {
	if v, ok := s.cached(); ok {
		return v, nil
	}
	select {
	case s.fetch <- struct{}{}:
	case <-ctx.Done():
		return "", &Error{Op: "token", Kind: KindTransient, Err: ctx.Err()}
	}
	defer func() { <-s.fetch }()
	if v, ok := s.cached(); ok { // fetched while we waited
		return v, nil
	}
	endpoint, err := s.endpoint(ctx, env)
	if err != nil {
		return "", err
	}
	v, ttl, err := s.requestToken(ctx, env.HTTP, endpoint)
	if err != nil {
		return "", err
	}
	lifetime := ttl - s.refreshBefore
	if lifetime <= 0 {
		lifetime = ttl / 2
	}
	s.mu.Lock()
	s.token, s.renewAt = v, s.now().Add(lifetime)
	s.mu.Unlock()
	return v, nil
}

// Rejected drops the cached token if it is the one the EHR refused. It
// always reports true: a fresh token may succeed (a token can be revoked
// before its expiry), and the client resends at most once.
func (s *SMARTBackend) Rejected(value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == value {
		s.token = ""
	}
	return true
}

func (s *SMARTBackend) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.renewAt) {
		return s.token, true
	}
	return "", false
}

// endpoint returns the token endpoint: configured, or discovered once.
func (s *SMARTBackend) endpoint(ctx context.Context, env AuthEnv) (string, error) {
	if s.tokenURL != "" {
		return s.tokenURL, nil
	}
	s.mu.Lock()
	d := s.discovered
	s.mu.Unlock()
	if d != "" {
		return d, nil
	}
	const op = "smart-configuration"
	body, status, err := get(ctx, env.HTTP, strings.TrimRight(env.BaseURL, "/")+"/.well-known/smart-configuration")
	if err != nil {
		return "", transportFailure(op, status, err)
	}
	if status != http.StatusOK {
		k := KindAuth // no discovery document: the connection cannot authorize
		if status == http.StatusTooManyRequests || status >= 500 {
			k = KindTransient
		}
		return "", &Error{Op: op, Status: status, Kind: k, Err: because("no SMART configuration")}
	}
	var conf struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &conf); err != nil || conf.TokenEndpoint == "" {
		return "", &Error{Op: op, Status: status, Kind: KindAuth, Err: because("SMART configuration has no token_endpoint")}
	}
	u, err := url.Parse(conf.TokenEndpoint)
	if err != nil || !u.IsAbs() || !secureEnough(u) {
		return "", &Error{Op: op, Status: status, Kind: KindAuth, Err: because("SMART token_endpoint is not an https URL")}
	}
	if !SameOrigin(conf.TokenEndpoint, env.BaseURL) {
		// The assertion would authenticate us to whoever runs that host.
		// The reason names no address (errors group by their text); the
		// check command shows both origins.
		return "", &Error{Op: op, Status: status, Kind: KindAuth, Err: ErrTokenEndpointOrigin}
	}
	s.mu.Lock()
	s.discovered = conf.TokenEndpoint
	s.mu.Unlock()
	return conf.TokenEndpoint, nil
}

// ErrTokenEndpointOrigin is the cause of a discovery that named a token
// endpoint on another origin than the FHIR base: the client assertion is
// not sent there unless SMARTOptions.TokenURL (auth.tokenUrl) names it.
var ErrTokenEndpointOrigin error = &detail{msg: "SMART token_endpoint is on another origin than the FHIR base: the client assertion is not sent there unless auth.tokenUrl names it"}

// SameOrigin reports whether two absolute http(s) URLs have one origin
// (Origin).
func SameOrigin(a, b string) bool {
	oa, okA := Origin(a)
	ob, okB := Origin(b)
	return okA && okB && oa == ob
}

// oauthError accepts the registered OAuth error codes' shape, so a token
// endpoint cannot get free text into our errors.
var oauthError = regexp.MustCompile(`^[a-z_]{1,40}$`)

// requestToken runs the client_credentials grant once. Token requests are
// not retried here: the request that needed the token is, as a whole.
func (s *SMARTBackend) requestToken(ctx context.Context, hc *http.Client, endpoint string) (value string, ttl time.Duration, err error) {
	const op = "token"
	assertion, err := s.assertion(endpoint)
	if err != nil {
		return "", 0, &Error{Op: op, Kind: KindOther, Err: &detail{msg: "cannot sign the client assertion", err: err}}
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {assertionType},
		"client_assertion":      {assertion},
	}
	if s.scope != "" {
		form.Set("scope", s.scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &Error{Op: op, Kind: KindOther, Err: because("bad token endpoint URL")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, transportFailure(op, 0, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, tokenBodyLimit))
	if err != nil {
		return "", 0, transportFailure(op, resp.StatusCode, err)
	}
	var tr struct {
		AccessToken string  `json:"access_token"`
		TokenType   string  `json:"token_type"`
		ExpiresIn   float64 `json:"expires_in"`
		Error       string  `json:"error"`
	}
	_ = json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		k := KindAuth
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			k = KindTransient
		}
		e := &Error{Op: op, Status: resp.StatusCode, Kind: k}
		if oauthError.MatchString(tr.Error) {
			e.Err = because("token endpoint says " + tr.Error)
		}
		return "", 0, e
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, &Error{Op: op, Status: resp.StatusCode, Kind: KindAuth, Err: because("token response has no bearer access_token")}
	}
	ttl = time.Duration(tr.ExpiresIn * float64(time.Second))
	if ttl <= 0 {
		ttl = 5 * time.Minute // SMART's recommended lifetime when the server does not say
	}
	return "Bearer " + tr.AccessToken, ttl, nil
}

// assertion is the signed client assertion JWT for one token request.
func (s *SMARTBackend) assertion(aud string) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := s.now()
	return jwt.Signed(s.signer).Claims(jwt.Claims{
		Issuer:   s.clientID,
		Subject:  s.clientID,
		Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:       base64.RawURLEncoding.EncodeToString(jti),
	}).Serialize()
}

// transportFailure is the *Error of a token or discovery request that got
// no usable answer: KindTransient with err's cause token, and err without
// the *url.Error that quotes the URL. A detail (a request we could not
// build) is KindOther.
func transportFailure(op string, status int, err error) *Error {
	if _, ok := err.(*detail); ok {
		return &Error{Op: op, Status: status, Kind: KindOther, Err: err}
	}
	err = stripURL(err)
	return &Error{Op: op, Status: status, Kind: KindTransient, Err: err, cause: transportCause(err)}
}

// get fetches url with a plain GET and returns a bounded body.
func get(ctx context.Context, hc *http.Client, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, because("bad URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, tokenBodyLimit))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	return body, resp.StatusCode, nil
}

// JWKS returns the JSON Web Key Set of the public halves of keys, for the
// adapter to serve at /.well-known/jwks.json (the URL an EHR administrator
// registers). Pass the old and the new key while rotating.
func JWKS(keys ...SigningKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for i, k := range keys {
		if k.Key == nil {
			return nil, fmt.Errorf("ehr: JWKS: key %d is nil", i)
		}
		alg, err := keyAlgorithm(k.Key)
		if err != nil {
			return nil, fmt.Errorf("ehr: JWKS: key %d: %w", i, err)
		}
		kid := k.ID
		if kid == "" {
			if kid, err = thumbprint(k.Key); err != nil {
				return nil, fmt.Errorf("ehr: JWKS: key %d: %w", i, err)
			}
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"})
	}
	return json.Marshal(set)
}

// keyAlgorithm is the JWS algorithm SMART Backend Services allows for key.
func keyAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key has %d bits; at least 2048 are required", k.N.BitLen())
		}
		return jose.RS384, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return "", fmt.Errorf("EC key is on %s; SMART's ES384 needs P-384", k.Curve.Params().Name)
		}
		return jose.ES384, nil
	}
	return "", fmt.Errorf("key type %T is not supported (RSA or EC P-384)", key)
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of key's public half.
func thumbprint(key crypto.Signer) (string, error) {
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// LoadPrivateKey reads a PEM private key (PKCS #8 "PRIVATE KEY", PKCS #1
// "RSA PRIVATE KEY" or SEC 1 "EC PRIVATE KEY") from path and checks that
// SMART Backend Services can sign with it: RSA of at least 2048 bits, or EC
// on P-384. Other PEM blocks in the file (a certificate) are skipped.
// Errors name the path, never the key material.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ehr: private key: %w", err)
	}
	return parsePrivateKey(data, path)
}

// ParsePrivateKey is LoadPrivateKey for PEM held in memory (a key given
// through an environment variable). Errors never include key material.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	return parsePrivateKey(data, "(from memory)")
}

func parsePrivateKey(data []byte, path string) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("ehr: private key %s: no PEM private key block", path)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("ehr: private key %s: encrypted keys are not supported; store it unencrypted with file permissions 0600", path)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ehr: private key %s: cannot parse %s block", path, block.Type)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("ehr: private key %s: unsupported key type %T", path, key)
		}
		if _, err := keyAlgorithm(signer); err != nil {
			return nil, fmt.Errorf("ehr: private key %s: %w", path, err)
		}
		return signer, nil
	}
}
