package check

import (
	"context"
	"errors"
	"net/http"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// invalidToken is what auth.invalid-token sends: no EHR issues it.
const invalidToken = "ipsfhir-check-invalid-token"

// auth checks that the configured credentials work. The probe is a read of
// a made-up id of a declared type: the EHR has nothing to answer but "not
// found", so no patient data comes back, and anything but 401 or 403 shows
// the credentials were accepted.
func (r *runner) auth(ctx context.Context) {
	const g = GroupAuth
	typ := r.o.Auth.Type
	if typ == "" {
		typ = AuthNone
	}
	if !r.live {
		r.authOK = true
		for _, id := range []string{"auth.token", "auth.accepted", "auth.invalid-token"} {
			r.add(g, id, Skip, true, "offline")
		}
		return
	}
	if !r.https && !r.loopback {
		for _, id := range []string{"auth.token", "auth.accepted", "auth.invalid-token"} {
			r.add(g, id, Skip, true, "not sent: plain http to a remote host (see connectivity.tls)")
		}
		return
	}
	for _, t := range ResourceTypes {
		if r.p.Allows(t, "read") {
			r.probeType = t
			break
		}
	}
	if r.probeType == "" {
		r.authOK = true
		r.add(g, "auth.token", Skip, true, "no type the check reads declares read: nothing to probe with")
		r.add(g, "auth.accepted", Skip, true, "no type the check reads declares read: nothing to probe with")
		r.add(g, "auth.invalid-token", Skip, false, "no type the check reads declares read: nothing to probe with")
		return
	}

	_, err := r.client.Read(ctx, r.probeType, probeID)
	var outer, inner *ehr.Error
	if errors.As(err, &outer) && outer.Err != nil {
		errors.As(outer.Err, &inner)
	}
	tokenFailed := inner != nil && (inner.Op == "token" || inner.Op == "smart-configuration")

	switch {
	case typ == AuthNone:
		r.add(g, "auth.token", Omit, true, "no authentication configured")
	case tokenFailed && errors.Is(inner, ehr.ErrTokenEndpointOrigin):
		r.add(g, "auth.token", Fail, true,
			"the SMART configuration names a token endpoint on another origin than the FHIR base (see smart.token-endpoint): the client assertion was not sent; set tokenUrl (--token-url) if that endpoint is the EHR's")
	case tokenFailed && inner.Op == "smart-configuration":
		r.add(g, "auth.token", verdict(inner), true,
			"could not discover the token endpoint: .well-known/smart-configuration answered %s; set tokenUrl (--token-url)", describe(inner))
	case tokenFailed:
		r.add(g, "auth.token", verdict(inner), true,
			"the token endpoint refused the client: %s; check the client id, that the EHR holds the public key (JWKS, kid) and the scopes", describe(inner))
	case typ == AuthBearer:
		r.add(g, "auth.token", Pass, true, "a static bearer token is configured (ipsfhir cannot renew it: replace it before it expires)")
	default:
		alg := r.o.Auth.Alg
		if alg == "" {
			alg = "RS384 or ES384"
		}
		r.add(g, "auth.token", Pass, true, "token obtained: client_credentials grant with a private_key_jwt assertion signed %s", alg)
	}

	switch {
	case tokenFailed:
		r.add(g, "auth.accepted", Skip, true, "no token (see auth.token)")
	case err == nil || !errors.Is(err, ehr.ErrAuth):
		if err != nil && verdict(err) == Error {
			r.add(g, "auth.accepted", Error, true, "read %s (a made-up id) answered %s: no verdict", r.probeType, describe(err))
			break
		}
		r.authOK = true
		answer := "HTTP 200"
		if err != nil {
			answer = describe(err)
		}
		if typ == AuthNone {
			r.add(g, "auth.accepted", Pass, true, "the EHR answers requests without credentials (read %s of a made-up id: %s)", r.probeType, answer)
		} else {
			r.add(g, "auth.accepted", Pass, true, "the EHR accepted the token (read %s of a made-up id: %s, not 401)", r.probeType, answer)
		}
	case typ == AuthNone:
		r.add(g, "auth.accepted", Fail, true, "the EHR refused a request without credentials (%s): configure bearer or smart-backend auth", describe(err))
	case status(err) == http.StatusForbidden:
		r.add(g, "auth.accepted", Fail, true, "the EHR refused the token (%s): the client lacks access; check its scopes and the EHR's app registration", describe(err))
	default:
		r.add(g, "auth.accepted", Fail, true, "the EHR refused the token even after a fresh one (%s): check the client registration and scopes", describe(err))
	}

	if typ == AuthNone {
		r.add(g, "auth.invalid-token", Omit, false, "no authentication configured")
		return
	}
	bad, err := ehr.New(ehr.Options{BaseURL: r.o.BaseURL, Connection: "check", Auth: ehr.Bearer(invalidToken), CAFile: r.o.CAFile,
		Timeout: r.o.Timeout, MaxAttempts: 2, MaxRetryAfter: r.o.Timeout / 4})
	if err != nil {
		r.add(g, "auth.invalid-token", Error, false, "%v", err)
		return
	}
	_, err = bad.Read(ctx, r.probeType, probeID)
	switch st := status(err); {
	case st == http.StatusUnauthorized:
		r.add(g, "auth.invalid-token", Pass, false, "an invalid token is answered 401, so ipsfhir notices an expired or revoked token and fetches a new one")
	case st == http.StatusForbidden:
		r.add(g, "auth.invalid-token", Fail, false, "an invalid token is answered 403, not 401: ipsfhir fetches a new token only after a 401, so a revoked token fails requests until it expires")
	case err != nil && verdict(err) == Error:
		r.add(g, "auth.invalid-token", Error, false, "a request with an invalid token answered %s: no verdict", describe(err))
	default:
		answer := "HTTP 200"
		if err != nil {
			answer = describe(err)
		}
		r.add(g, "auth.invalid-token", Fail, false, "the EHR did not refuse an invalid token (%s): it does not check tokens on FHIR requests, which only a test server may do", answer)
	}
}
