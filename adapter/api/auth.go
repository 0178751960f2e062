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
	permAdmin // connections, plans, dead letters, conflicts, metrics
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
// HIE operators get de-identified outcomes elsewhere and no records here.
func (r Role) may(p permission) bool {
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
// the caller for authorization and the access log. Keys are compared as
// SHA-256 sums in constant time, against every configured key (no early
// exit), so timing tells nothing about which keys exist.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ipsfhir"`)
			writeIssues(w, http.StatusUnauthorized, issue("login", "", "an API key is required: Authorization: Bearer KEY"))
			return
		}
		sum := sha256.Sum256([]byte(presented))
		var found *Key
		for i := range a.keys {
			if subtle.ConstantTimeCompare(sum[:], a.keys[i].SHA256) == 1 {
				found = &a.keys[i]
			}
		}
		if found == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ipsfhir", error="invalid_token"`)
			writeIssues(w, http.StatusUnauthorized, issue("login", "", "the API key is not valid"))
			return
		}
		recordOf(r.Context()).caller = *found
		next.ServeHTTP(w, r)
	})
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
