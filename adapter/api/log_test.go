package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/api"
)

// TestAccessLogPanics: a panic becomes onPanic's 500 (unless the headers
// were written) and two log lines that hold neither the panic value nor the
// path; http.ErrAbortHandler is panicked again.
func TestAccessLogPanics(t *testing.T) {
	const secret = "SECRET-PANIC-VALUE"
	for _, tc := range []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantBody   string
	}{
		{"before headers", func(w http.ResponseWriter, r *http.Request) {
			api.RecordOf(r.Context()).Route = "/x/{id}"
			api.RecordOf(r.Context()).Caller = api.Key{Name: "ops"}
			panic(secret)
		}, http.StatusInternalServerError, "on panic"},
		{"after headers", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			panic(secret)
		}, http.StatusAccepted, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			mw := api.AccessLog(slog.New(slog.NewJSONHandler(&logs, nil)), "test request", "test panic",
				func(w http.ResponseWriter) {
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = w.Write([]byte("on panic"))
				})
			rr := httptest.NewRecorder()
			mw(tc.handler).ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/x/client-42?after=client-41", nil))
			if rr.Code != tc.wantStatus || rr.Body.String() != tc.wantBody {
				t.Errorf("response %d %q, want %d %q", rr.Code, rr.Body, tc.wantStatus, tc.wantBody)
			}
			for _, bad := range []string{secret, "client-42", "client-41"} {
				if strings.Contains(logs.String(), bad) {
					t.Errorf("log holds %q:\n%s", bad, logs.String())
				}
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("got %d log lines, want 2:\n%s", len(lines), logs.String())
			}
			var panicLine, reqLine map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &panicLine); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(lines[1]), &reqLine); err != nil {
				t.Fatal(err)
			}
			if panicLine["msg"] != "test panic" || panicLine["level"] != "ERROR" {
				t.Errorf("panic line %v", panicLine)
			}
			if reqLine["msg"] != "test request" || reqLine["status"] != float64(tc.wantStatus) || reqLine["method"] != "GET" {
				t.Errorf("request line %v", reqLine)
			}
		})
	}

	t.Run("ErrAbortHandler", func(t *testing.T) {
		mw := api.AccessLog(slog.New(slog.DiscardHandler), "test request", "test panic",
			func(http.ResponseWriter) { t.Error("onPanic called on ErrAbortHandler") })
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	})
}

// TestAccessLogRoute: the route template and caller are logged, "unmatched"
// when no route filled the record in.
func TestAccessLogRoute(t *testing.T) {
	var logs bytes.Buffer
	mw := api.AccessLog(slog.New(slog.NewJSONHandler(&logs, nil)), "test request", "test panic", nil)
	mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/matched" {
			rec := api.RecordOf(r.Context())
			rec.Route, rec.Caller = "/matched", api.Key{Name: "ops"}
		}
		w.WriteHeader(http.StatusNoContent)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/matched", nil))
	mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/other", nil))
	for _, want := range []string{`"route":"/matched","status":204`, `"caller":"ops"`, `"route":"unmatched","status":200`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if rec := api.RecordOf(t.Context()); rec == nil || rec.Route != "" {
		t.Errorf("RecordOf outside AccessLog = %+v, want a throwaway empty record", rec)
	}
}
