package mappings

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"google.golang.org/protobuf/proto"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// The jsonformat codecs are built once: they hold only configuration and are
// safe for concurrent use.
var (
	prettyMarshaller = sync.OnceValues(func() (*jsonformat.Marshaller, error) {
		return jsonformat.NewPrettyMarshaller(fhirversion.R4)
	})
	compactMarshaller = sync.OnceValues(func() (*jsonformat.Marshaller, error) {
		return jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	})
	validatingUnmarshaller = sync.OnceValues(func() (*jsonformat.Unmarshaller, error) {
		return jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	})
)

// MarshalPretty writes a resource (or a ContainedResource) as indented FHIR
// JSON with keys in a stable order, for files people read and golden tests.
func MarshalPretty(r proto.Message) ([]byte, error) {
	m, err := prettyMarshaller()
	if err != nil {
		return nil, err
	}
	return marshal(m, r)
}

// MarshalCompact writes a resource (or a ContainedResource) as compact FHIR
// JSON, for the wire.
func MarshalCompact(r proto.Message) ([]byte, error) {
	m, err := compactMarshaller()
	if err != nil {
		return nil, err
	}
	return marshal(m, r)
}

// marshal picks jsonformat's entry point: MarshalResource given a
// ContainedResource would write the oneof wrapper ({"goal": {…}}) with no
// resourceType, which no FHIR server accepts.
func marshal(m *jsonformat.Marshaller, r proto.Message) ([]byte, error) {
	if cr, ok := r.(*bpb.ContainedResource); ok {
		return m.Marshal(cr)
	}
	return m.MarshalResource(r)
}

// ErrNotBundle is returned by ParseBundle for valid FHIR that is not a Bundle.
var ErrNotBundle = errors.New("FHIR resource is not a Bundle")

// ParseBundle reads a Bundle from FHIR JSON, checking it against base R4 on
// the way in. The error says where the JSON is wrong without quoting values.
func ParseBundle(data []byte) (*bpb.Bundle, error) {
	u, err := validatingUnmarshaller()
	if err != nil {
		return nil, err
	}
	m, err := u.Unmarshal(data)
	if err != nil {
		// jsonformat keeps values out of Error(): path and details only.
		return nil, fmt.Errorf("parse FHIR JSON: %w", err)
	}
	b := m.(*bpb.ContainedResource).GetBundle()
	if b == nil {
		return nil, ErrNotBundle
	}
	return b, nil
}

// ParseResource reads one FHIR resource from JSON, checking it against base
// R4. The error names the path and problem, never values.
func ParseResource(data []byte) (*bpb.ContainedResource, error) {
	u, err := validatingUnmarshaller()
	if err != nil {
		return nil, err
	}
	m, err := u.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("parse FHIR JSON: %w", err)
	}
	return m.(*bpb.ContainedResource), nil
}
