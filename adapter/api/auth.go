package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// permission is what a route needs of the caller's role.
type permission int

const (
	permRead permission = iota + 1
	permWrite
	permAdmin  // connections, plans, dead letters, conflicts, metrics
	permPublic // the API's description: no key needed
)

func (p permission) verb() string {
	switch p {
	case permWrite:
		return "change IPS records"
	case permAdmin:
		return "administer the adapter"
	}
	return "read IPS records"
}

// may reports whether a role has a permission. Records are patient data:
// specialists keep them; clinicians and administrators may read them;
// HIE operators get de-identified outcomes elsewhere and no records here;
// program directors get the program's outcomes (the console, /fhir
// MeasureReport) and nothing here either.
func (r Role) may(p permission) bool {
	if p == permPublic {
		return true
	}
	switch r {
	case RoleSpecialist:
		return p == permRead || p == permWrite
	case RoleClinician:
		return p == permRead
	case RoleAdmin:
		return p == permRead || p == permAdmin
	}
	return false
}

// authenticate lets a request through only with a known API key, and notes
// the caller for authorization and the access log.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		found, aerr := Authenticate(a.keys, r)
		if aerr != nil {
			w.Header().Set("WWW-Authenticate", aerr.Challenge)
			writeIssues(w, http.StatusUnauthorized, issue("login", "", aerr.Message))
			return
		}
		RecordOf(r.Context()).Caller = found
		next.ServeHTTP(w, r)
	})
}

// AuthError is why Authenticate turned a request away. Both fields are
// patient-free: Message is for the 401 response body, Challenge for its
// WWW-Authenticate header.
type AuthError struct {
	Challenge string
	Message   string
}

func (e *AuthError) Error() string { return e.Message }

// Authenticate returns the caller whose API key the request presents
// ("Authorization: Bearer KEY"), or why there is none. Keys are compared as
// SHA-256 sums in constant time, against every configured key (no early
// exit), so timing tells nothing about which keys exist. The records API and
// the /fhir facade both use it, so one set of keys lets callers into both.
func Authenticate(keys []Key, r *http.Request) (Key, *AuthError) {
	presented, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return Key{}, &AuthError{Challenge: `Bearer realm="ipsfhir"`, Message: "an API key is required: Authorization: Bearer KEY"}
	}
	sum := sha256.Sum256([]byte(presented))
	var found *Key
	for i := range keys {
		if subtle.ConstantTimeCompare(sum[:], keys[i].SHA256) == 1 {
			found = &keys[i]
		}
	}
	if found == nil {
		return Key{}, &AuthError{Challenge: `Bearer realm="ipsfhir", error="invalid_token"`, Message: "the API key is not valid"}
	}
	return *found, nil
}

// bearer extracts the token of "Authorization: Bearer TOKEN" (the scheme
// is case-insensitive, RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
