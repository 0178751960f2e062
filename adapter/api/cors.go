package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CORS lets browser apps served from other origins call an API (config
// server.corsOrigins). Only the listed origins get CORS headers, each its
// own origin back, never "*"; every other origin gets none, so the browser
// keeps its pages from reading the answers. Callers still authenticate with
// an API key in the Authorization header: CORS decides only which web pages
// may make the call from a browser, not who may call.
type CORS struct {
	// Origins are the allowed origins, scheme://host[:port], as browsers
	// send them in the Origin header (compared without regard to case).
	Origins []string
	// Methods are the methods a preflight allows (GET and HEAD need none).
	Methods []string
	// Headers are the request headers a preflight allows.
	Headers []string
	// Expose are the response headers a page may read besides the
	// CORS-safelisted ones.
	Expose []string
	// MaxAge is how long a browser may keep a preflight's answer.
	MaxAge time.Duration
	// PreflightRoute is the route template the access log gives an
	// answered preflight ("/fhir/{preflight}"); "" leaves it unmatched.
	PreflightRoute string
}

// CORSHeaders are the request headers the records API and the FHIR facade
// take from browsers: the API key, bodies, FHIR's Prefer (respond-async,
// handling) and conditional requests; and X-Medplum, which Medplum's
// client sends on every request (and the facade ignores).
var CORSHeaders = []string{"Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Match", "X-Medplum"}

// CORSExpose are the response headers a browser app needs to read: where
// an export is polled or a created record is (Content-Location, Location),
// versions (ETag, Last-Modified), an export's progress and when to poll
// again (X-Progress, Retry-After), when its files expire (Expires), and
// the authentication challenge.
var CORSExpose = []string{"Content-Location", "Location", "ETag", "Last-Modified", "X-Progress", "Retry-After", "Expires", "WWW-Authenticate"}

// DefaultCORSMaxAge is the preflight cache time when CORS.MaxAge is zero.
const DefaultCORSMaxAge = 10 * time.Minute

// Handler wraps next. With no origins it returns next as it is.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) from
// a listed origin is answered here, 204, before authentication (browsers
// send preflights without credentials), with the methods and headers
// allowed. Every other request goes to next; a listed origin's answer gets
// Access-Control-Allow-Origin (its origin), Access-Control-Allow-Credentials
// (browser clients such as Medplum's fetch with credentials: include, which
// a browser allows only with it and an exact origin) and
// Access-Control-Expose-Headers. Every answer says Vary: Origin, since
// whether it carries CORS headers depends on the Origin.
func (c CORS) Handler(next http.Handler) http.Handler {
	if len(c.Origins) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(c.Origins))
	for _, o := range c.Origins {
		allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	methods := strings.Join(c.Methods, ", ")
	headers := strings.Join(c.Headers, ", ")
	expose := strings.Join(c.Expose, ", ")
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultCORSMaxAge
	}
	age := strconv.Itoa(int(maxAge / time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !allowed[strings.ToLower(origin)] {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", headers)
			h.Set("Access-Control-Max-Age", age)
			if c.PreflightRoute != "" {
				RecordOf(r.Context()).Route = c.PreflightRoute
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", expose)
		next.ServeHTTP(w, r)
	})
}
