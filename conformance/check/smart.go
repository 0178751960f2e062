package check

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// smartSecurity is the system of the restful-security-service codes.
const (
	smartSecurity = "http://terminology.hl7.org/CodeSystem/restful-security-service"
	oauthURIs     = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
)

// smart checks the SMART Backend Services configuration, for connections
// that authenticate with it (and, offline, what the statement declares).
func (r *runner) smart(ctx context.Context) {
	const g = GroupSMART
	if r.live && r.o.Auth.Type != AuthSMARTBackend {
		r.add(g, "smart", Omit, false, "the connection does not use smart-backend auth")
		return
	}
	if r.st.declaresSMART() {
		r.add(g, "smart.declared", Pass, false, "the statement's rest.security declares SMART-on-FHIR")
	} else {
		r.add(g, "smart.declared", Fail, false, "the statement's rest.security does not declare SMART-on-FHIR; the live SMART configuration decides")
	}
	ids := []string{"smart.discovery", "smart.token-endpoint", "smart.client-credentials", "smart.private-key-jwt", "smart.signing-alg"}
	if !r.live {
		for _, id := range ids {
			r.add(g, id, Skip, false, "offline")
		}
		return
	}
	if !r.https && !r.loopback {
		for _, id := range ids {
			r.add(g, id, Skip, false, "not sent: plain http to a remote host (see connectivity.tls)")
		}
		return
	}
	// Discovery is what finds the token endpoint unless one is configured.
	needed := r.o.Auth.TokenURL == ""
	body, err := r.client.SmartConfiguration(ctx)
	var conf struct {
		TokenEndpoint string   `json:"token_endpoint"`
		Grants        []string `json:"grant_types_supported"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		Algs          []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	}
	ok := false
	switch {
	case err != nil:
		hint := ""
		if !needed {
			hint = " (the configured token URL is used instead)"
		}
		r.add(g, "smart.discovery", verdict(err), needed, ".well-known/smart-configuration answered %s%s", describe(err), hint)
	case json.Unmarshal(body, &conf) != nil:
		r.add(g, "smart.discovery", Fail, needed, ".well-known/smart-configuration is not a JSON object")
	default:
		ok = true
		r.add(g, "smart.discovery", Pass, needed, ".well-known/smart-configuration answered a JSON document")
	}
	if !ok {
		for _, id := range ids[1:] {
			r.add(g, id, Skip, false, "no SMART configuration")
		}
		return
	}

	u, perr := url.Parse(conf.TokenEndpoint)
	switch {
	case conf.TokenEndpoint == "":
		r.add(g, "smart.token-endpoint", Fail, needed, "no token_endpoint; set tokenUrl (--token-url)")
	case perr != nil || !u.IsAbs() || u.RawQuery != "":
		r.add(g, "smart.token-endpoint", Fail, needed, "token_endpoint is not an absolute URL without a query")
	case !strings.EqualFold(u.Scheme, "https") && !isLoopback(u.Hostname()):
		r.add(g, "smart.token-endpoint", Fail, needed, "token_endpoint is not https: ipsfhir sends no credentials over plain http")
	case needed && !ehr.SameOrigin(conf.TokenEndpoint, r.o.BaseURL):
		// Origins are addresses of the EHR, not patient data.
		theirs, _ := ehr.Origin(conf.TokenEndpoint)
		ours, _ := ehr.Origin(r.o.BaseURL)
		r.add(g, "smart.token-endpoint", Fail, true,
			"token_endpoint %s is on origin %s, not the FHIR base's %s: ipsfhir sends its client assertion only to the FHIR base's origin, unless the token URL is configured; if the EHR's vendor documents this endpoint, set tokenUrl (--token-url) to it",
			conf.TokenEndpoint, theirs, ours)
	case !needed && r.o.Auth.TokenURL != conf.TokenEndpoint:
		r.add(g, "smart.token-endpoint", Pass, false, "token_endpoint %s (the configured token URL differs and is used)", conf.TokenEndpoint)
	default:
		r.add(g, "smart.token-endpoint", Pass, needed, "token_endpoint %s", conf.TokenEndpoint)
	}
	listed := func(id, field, want, what string, have []string) {
		switch {
		case len(have) == 0:
			r.add(g, id, Fail, false, "%s is missing; SMART servers list %s there (auth.token shows whether it works anyway)", field, want)
		case slices.ContainsFunc(have, func(s string) bool { return strings.EqualFold(s, want) }):
			r.add(g, id, Pass, false, "%s lists %s", field, want)
		default:
			r.add(g, id, Fail, false, "%s does not list %s: %s", field, want, what)
		}
	}
	listed("smart.client-credentials", "grant_types_supported", "client_credentials", "SMART Backend Services needs the client_credentials grant", conf.Grants)
	listed("smart.private-key-jwt", "token_endpoint_auth_methods_supported", "private_key_jwt", "ipsfhir authenticates with a signed JWT assertion", conf.AuthMethods)
	alg := r.o.Auth.Alg
	switch {
	case alg != "":
		listed("smart.signing-alg", "token_endpoint_auth_signing_alg_values_supported", alg,
			"the key signs "+alg+"; register a key of an algorithm the EHR lists (RS384: RSA, ES384: EC P-384)", conf.Algs)
	case slices.Contains(conf.Algs, "RS384") || slices.Contains(conf.Algs, "ES384"):
		r.add(g, "smart.signing-alg", Pass, false, "token_endpoint_auth_signing_alg_values_supported lists RS384 or ES384")
	default:
		r.add(g, "smart.signing-alg", Fail, false, "token_endpoint_auth_signing_alg_values_supported lists neither RS384 nor ES384, the algorithms ipsfhir signs with")
	}
}

// declaresSMART reports whether rest.security names SMART-on-FHIR or
// carries the oauth-uris extension.
func (s *statement) declaresSMART() bool {
	sec := s.Rest[s.server].Security
	if sec == nil {
		return false
	}
	for _, sv := range sec.Service {
		for _, c := range sv.Coding {
			if c.Code == "SMART-on-FHIR" && (c.System == "" || c.System == smartSecurity) {
				return true
			}
		}
	}
	return slices.ContainsFunc(sec.Extension, func(e stExtension) bool { return e.URL == oauthURIs })
}
