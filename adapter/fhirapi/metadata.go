package fhirapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"runtime/debug"
	"slices"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
)

// serverStatementPath is the published CapabilityStatement of the facade.
var serverStatementPath = path.Join(artifacts.DirCapabilities, "ipsfhir-server.json")

func serverStatement() ([]byte, error) {
	data, err := fs.ReadFile(artifacts.FS(), serverStatementPath)
	if err != nil {
		return nil, fmt.Errorf("fhirapi: read the CapabilityStatement: %w", err)
	}
	if _, err := parseObject(data); err != nil {
		return nil, fmt.Errorf("fhirapi: %s: %w", serverStatementPath, err)
	}
	return data, nil
}

// metadata serves GET /fhir/metadata: the published statement, made the
// statement of this running instance (kind instance, the software version,
// the base URL). Without Options.Reports, MeasureReport is left out, since
// it is not served.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	body, err := s.instanceStatement(s.baseURL)
	if err != nil {
		s.internalError(w, r, "build the CapabilityStatement", err)
		return
	}
	writeFHIR(w, http.StatusOK, body)
}

func (s *Server) instanceStatement(base string) ([]byte, error) {
	cs, err := parseObject(s.statement)
	if err != nil {
		return nil, err
	}
	str := func(v string) json.RawMessage { b, _ := json.Marshal(v); return b }
	cs.set("kind", str("instance"))
	sw, _ := json.Marshal(map[string]string{"name": "ipsfhir", "version": s.version})
	cs.set("software", sw)
	impl, _ := json.Marshal(map[string]string{
		"description": "ipsfhir FHIR facade of IPS program " + s.mapping.Program,
		"url":         base,
	})
	cs.setAfter("implementation", "software", impl)
	if s.reports == nil {
		if cs, err = withoutResource(cs, "MeasureReport"); err != nil {
			return nil, err
		}
	}
	if s.audit == nil {
		if cs, err = withoutResource(cs, "AuditEvent"); err != nil {
			return nil, err
		}
	}
	if s.cors {
		if cs, err = withCORS(cs); err != nil {
			return nil, err
		}
	}
	out, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// withCORS says security.cors true in every rest entry: this instance
// answers CORS requests from its configured origins.
func withCORS(cs object) (object, error) {
	var rests []object
	if err := json.Unmarshal(cs.get("rest"), &rests); err != nil {
		return nil, fmt.Errorf("rest: %w", err)
	}
	for i, rest := range rests {
		var sec object
		if raw := rest.get("security"); raw != nil {
			if err := json.Unmarshal(raw, &sec); err != nil {
				return nil, fmt.Errorf("rest.security: %w", err)
			}
		}
		sec.set("cors", json.RawMessage("true"))
		b, err := json.Marshal(sec)
		if err != nil {
			return nil, err
		}
		rests[i].setAfter("security", "mode", b)
	}
	b, err := json.Marshal(rests)
	if err != nil {
		return nil, err
	}
	cs.set("rest", b)
	return cs, nil
}

// withoutResource drops a resource type from every rest entry.
func withoutResource(cs object, typ string) (object, error) {
	var rests []object
	if err := json.Unmarshal(cs.get("rest"), &rests); err != nil {
		return nil, fmt.Errorf("rest: %w", err)
	}
	for i, rest := range rests {
		var resources []json.RawMessage
		if err := json.Unmarshal(rest.get("resource"), &resources); err != nil {
			return nil, fmt.Errorf("rest.resource: %w", err)
		}
		kept := resources[:0]
		for _, res := range resources {
			var head struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(res, &head); err != nil {
				return nil, err
			}
			if head.Type != typ {
				kept = append(kept, res)
			}
		}
		b, err := json.Marshal(kept)
		if err != nil {
			return nil, err
		}
		rests[i].set("resource", b)
	}
	b, err := json.Marshal(rests)
	if err != nil {
		return nil, err
	}
	cs.set("rest", b)
	return cs, nil
}

// Version is the software version /fhir/metadata reports. Set it when
// building a release:
//
//	go build -ldflags "-X github.com/ipsfhir/ipsfhir/adapter/fhirapi.Version=1.4.0" ./cmd/ipsfhir
//
// Left empty, it comes from the binary's build information: the module
// version, else 0.0.0+{first 12 digits of the VCS revision} (".dirty"
// when the checkout had uncommitted changes), else "dev".
var Version string

// buildVersion is the version of the software the binary was built from
// (see Version).
func buildVersion() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(bi)
}

func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "0.0.0+" + rev[:min(12, len(rev))]
	if modified == "true" {
		v += ".dirty"
	}
	return v
}

// ---------------------------------------------------------------- ordered JSON

// object is a JSON object whose members keep their order, so a published
// resource is served with its members where its authors put them
// (resourceType first). Values stay raw.
type object []member

type member struct {
	key   string
	value json.RawMessage
}

func parseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var o object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("not a JSON object")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return o, nil
}

// UnmarshalJSON lets objects nest in json.Unmarshal.
func (o *object) UnmarshalJSON(data []byte) error {
	p, err := parseObject(data)
	*o = p
	return err
}

func (o object) get(key string) json.RawMessage {
	for _, m := range o {
		if m.key == key {
			return m.value
		}
	}
	return nil
}

// set replaces a member in place, or appends it.
func (o *object) set(key string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].key == key {
			(*o)[i].value = v
			return
		}
	}
	*o = append(*o, member{key, v})
}

// setAfter replaces a member in place, or inserts it after another one
// (at the end if that one is absent).
func (o *object) setAfter(key, after string, v json.RawMessage) {
	if o.get(key) != nil {
		o.set(key, v)
		return
	}
	for i := range *o {
		if (*o)[i].key == after {
			*o = slices.Insert(*o, i+1, member{key, v})
			return
		}
	}
	*o = append(*o, member{key, v})
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
