package fhirapi

import (
	"context"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// legacyExport is the export as it was written before it streamed to disk
// (every file's bytes held in memory, the de-identified lines sorted by
// slices.SortFunc at the end), kept as the reference the streamed files
// must match byte for byte (TestStreamedExportMatchesLegacy). It returns
// each type's file content.
func (s *Server) legacyExport(ctx context.Context, j *exportJob) (map[string][]byte, error) {
	type legacyOut struct {
		data  []byte
		keyed []deidLine
	}
	files := map[string]*legacyOut{}
	file := func(typ string) *legacyOut {
		f := files[typ]
		if f == nil {
			f = &legacyOut{}
			files[typ] = f
		}
		return f
	}
	err := s.eachClient(ctx, "", func(st store.Stored) (bool, error) {
		if st.UpdatedAt.After(j.txTime) || (!j.since.IsZero() && !st.UpdatedAt.After(j.since)) || !s.allowsHIE(st.Client) {
			return true, nil
		}
		es, err := s.entries(st)
		if err != nil {
			return false, err
		}
		if j.deidentified {
			lines, err := j.deid.entries(es)
			if err != nil {
				return false, err
			}
			for _, l := range lines {
				if j.wants(l.typ) {
					f := file(l.typ)
					f.keyed = append(f.keyed, l)
				}
			}
			return true, nil
		}
		for _, e := range es {
			if !j.wants(e.ResourceType) {
				continue
			}
			line, err := mappings.MarshalCompact(e.Resource)
			if err != nil {
				return false, err
			}
			f := file(e.ResourceType)
			f.data = append(append(f.data, line...), '\n')
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for typ, f := range files {
		if f.keyed != nil {
			slices.SortFunc(f.keyed, func(a, b deidLine) int { return strings.Compare(a.sortKey, b.sortKey) })
			for _, l := range f.keyed {
				f.data = append(append(f.data, l.data...), '\n')
			}
		}
		out[typ] = f.data
	}
	return out, nil
}
