package fhirapi

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// An export is written to disk as the clients are read, never held in
// memory: each NDJSON file goes to a temporary file in the export's
// directory, renamed to its name ({Type}.ndjson) only once the whole
// export is written, so a failed export leaves no file that looks
// complete. Identified lines are written as they come. De-identified lines
// are sorted by their key (patient pseudonym, then resource id) so that a
// file's order says nothing of the program's client ids: they are gathered
// in memory up to sortRunBytes, sorted, spilled to a run file in the same
// directory, and the runs merged (container/heap) into the output.
// Temporary files are named by os.CreateTemp from a fixed prefix and a
// random number: never from anything about a patient.

// sortRunBytes bounds the de-identified lines one file's sorter holds in
// memory before it spills them to a run.
const sortRunBytes = 4 << 20

// sortFanIn is how many runs of one size a sorter keeps before it merges
// them into one run the next size up: the runs open at once stay few
// (sortFanIn for each size, the sizes growing sortFanIn-fold), and each
// line is rewritten once a size.
const sortFanIn = 16

// tempPrefix starts the name of every temporary file an export writes.
const tempPrefix = ".ipsfhir-export-"

// exportFiles writes one export's files into dir.
type exportFiles struct {
	dir      string
	maxBytes int64 // 0: no limit
	size     int64
	runBytes int // sortRunBytes; tests set it smaller
	fanIn    int // sortFanIn; tests set it smaller
	files    map[string]*exportOut
}

// exportOut is one output file while it is written.
type exportOut struct {
	typ   string
	count int
	f     *os.File // the temporary file
	w     *bufio.Writer
	sort  *lineSorter // de-identified files: lines are sorted first
}

func newExportFiles(dir string, maxBytes int64) *exportFiles {
	return &exportFiles{dir: dir, maxBytes: maxBytes, runBytes: sortRunBytes, fanIn: sortFanIn, files: map[string]*exportOut{}}
}

// file is typ's output, created on its first line.
func (x *exportFiles) file(typ string, sorted bool) (*exportOut, error) {
	if o := x.files[typ]; o != nil {
		return o, nil
	}
	f, err := os.CreateTemp(x.dir, tempPrefix+"*.tmp")
	if err != nil {
		return nil, err
	}
	o := &exportOut{typ: typ, f: f, w: bufio.NewWriterSize(f, 64<<10)}
	if sorted {
		o.sort = &lineSorter{dir: x.dir, budget: x.runBytes, fanIn: x.fanIn}
	}
	x.files[typ] = o
	return o, nil
}

// grow counts a line of n bytes against the size limit.
func (x *exportFiles) grow(n int) error {
	if x.size += int64(n) + 1; x.maxBytes > 0 && x.size > x.maxBytes {
		return errTooLarge
	}
	return nil
}

// add writes an identified line.
func (x *exportFiles) add(typ string, line []byte) error {
	if err := x.grow(len(line)); err != nil {
		return err
	}
	o, err := x.file(typ, false)
	if err != nil {
		return err
	}
	o.count++
	if _, err := o.w.Write(line); err != nil {
		return err
	}
	return o.w.WriteByte('\n')
}

// addSorted adds a de-identified line, written in key order at finish.
func (x *exportFiles) addSorted(l deidLine) error {
	if err := x.grow(len(l.data)); err != nil {
		return err
	}
	o, err := x.file(l.typ, true)
	if err != nil {
		return err
	}
	o.count++
	return o.sort.add(l.sortKey, l.data)
}

// finish completes every file, in recordTypes order, and renames each to
// its name in the directory, replacing a file of that name. On an error
// nothing is renamed (the caller removes the temporary files with
// discard).
func (x *exportFiles) finish() ([]output, error) {
	var outs []output
	for _, t := range recordTypes {
		o := x.files[t]
		if o == nil {
			continue
		}
		if o.sort != nil {
			if err := o.sort.writeTo(o.w); err != nil {
				return nil, err
			}
		}
		if err := o.w.Flush(); err != nil {
			return nil, err
		}
		if err := o.f.Sync(); err != nil {
			return nil, err
		}
		fi, err := o.f.Stat()
		if err != nil {
			return nil, err
		}
		if err := o.f.Close(); err != nil {
			return nil, err
		}
		outs = append(outs, output{typ: t, name: t + ".ndjson", count: o.count, size: fi.Size()})
	}
	// What would stop a rename, found before the first: a directory in
	// a file's place.
	for _, out := range outs {
		if fi, err := os.Lstat(filepath.Join(x.dir, out.name)); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("export: %s is a directory; nothing was replaced", filepath.Join(x.dir, out.name))
		}
	}
	for _, out := range outs {
		o := x.files[out.typ]
		if err := os.Rename(o.f.Name(), filepath.Join(x.dir, out.name)); err != nil {
			return nil, err
		}
		o.f = nil
	}
	x.discard()
	return outs, nil
}

// discard closes and removes whatever temporary files are left.
func (x *exportFiles) discard() {
	for _, o := range x.files {
		if o.sort != nil {
			o.sort.discard()
		}
		if o.f != nil {
			_ = o.f.Close()
			_ = os.Remove(o.f.Name())
			o.f = nil
		}
	}
}

// ---------------------------------------------------------------- sorting

// lineSorter sorts lines by key, within a memory budget: stable, so lines
// of equal keys keep the order they were added in.
type lineSorter struct {
	dir    string
	budget int
	fanIn  int
	held   int
	lines  []keyedLine
	runs   []sortRun // oldest first; their levels never grow along it
}

// sortRun is a sorted run on disk: level 0 spilled from memory, level n+1
// merged from fanIn runs of level n.
type sortRun struct {
	f     *os.File
	level int
}

type keyedLine struct{ key, data []byte }

// lineOverhead is what a held line costs beside its bytes: its slice
// headers.
const lineOverhead = 48

func (s *lineSorter) add(key string, data []byte) error {
	s.lines = append(s.lines, keyedLine{key: []byte(key), data: data})
	// data's capacity, not its length, is what it holds (an encoder's
	// buffer may be twice the line).
	if s.held += len(key) + cap(data) + lineOverhead; s.held >= s.budget {
		return s.spill()
	}
	return nil
}

func (s *lineSorter) sortHeld() {
	slices.SortStableFunc(s.lines, func(a, b keyedLine) int { return strings.Compare(string(a.key), string(b.key)) })
}

// spill writes the held lines, sorted, to a new run.
func (s *lineSorter) spill() error {
	if len(s.lines) == 0 {
		return nil
	}
	s.sortHeld()
	f, w, err := s.newRun(0)
	if err != nil {
		return err
	}
	for _, l := range s.lines {
		if err := writeRecord(w, l.key, l.data); err != nil {
			return err
		}
	}
	if err := s.endRun(f, w); err != nil {
		return err
	}
	clear(s.lines)
	s.lines, s.held = s.lines[:0], 0
	for {
		n := len(s.runs)
		if n < s.fanIn || s.runs[n-s.fanIn].level != s.runs[n-1].level {
			return nil
		}
		if err := s.compact(n - s.fanIn); err != nil {
			return err
		}
	}
}

func (s *lineSorter) newRun(level int) (*os.File, *bufio.Writer, error) {
	f, err := os.CreateTemp(s.dir, tempPrefix+"run-*.tmp")
	if err != nil {
		return nil, nil, err
	}
	s.runs = append(s.runs, sortRun{f: f, level: level})
	return f, bufio.NewWriterSize(f, 64<<10), nil
}

func (s *lineSorter) endRun(f *os.File, w *bufio.Writer) error {
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// compact merges the runs from the from'th on, the newest, which are of
// one level, into one run of the next: the runs keep their order, so equal
// keys still come out in the order they were added.
func (s *lineSorter) compact(from int) error {
	old := slices.Clone(s.runs[from:])
	s.runs = s.runs[:from]
	f, w, err := s.newRun(old[0].level + 1)
	if err == nil {
		err = merge(old, func(key, data []byte) error { return writeRecord(w, key, data) })
	}
	for _, r := range old {
		_ = r.f.Close()
		_ = os.Remove(r.f.Name())
	}
	if err != nil {
		return err
	}
	return s.endRun(f, w)
}

// writeTo writes every line, in key order, one a line.
func (s *lineSorter) writeTo(w *bufio.Writer) error {
	line := func(_, data []byte) error {
		if _, err := w.Write(data); err != nil {
			return err
		}
		return w.WriteByte('\n')
	}
	if len(s.runs) == 0 {
		s.sortHeld()
		for _, l := range s.lines {
			if err := line(l.key, l.data); err != nil {
				return err
			}
		}
		s.lines = nil
		return nil
	}
	if err := s.spill(); err != nil {
		return err
	}
	return merge(s.runs, line)
}

func (s *lineSorter) discard() {
	for _, r := range s.runs {
		_ = r.f.Close()
		_ = os.Remove(r.f.Name())
	}
	s.runs, s.lines = nil, nil
}

// A run is a sequence of records: the key's length (uvarint), the key, the
// line's length (uvarint), the line.

func writeRecord(w *bufio.Writer, key, data []byte) error {
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))]); err != nil {
		return err
	}
	if _, err := w.Write(key); err != nil {
		return err
	}
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(data)))]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// runReader reads one run's records in turn.
type runReader struct {
	r         *bufio.Reader
	idx       int // the run's place: equal keys come out oldest run first
	key, data []byte
}

// next reads the next record; io.EOF at the end.
func (r *runReader) next() error {
	k, err := readChunk(r.r, r.key[:0])
	if err != nil {
		return err
	}
	d, err := readChunk(r.r, r.data[:0])
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("export sort: a run ends in the middle of a line: %w", io.ErrUnexpectedEOF)
		}
		return err
	}
	r.key, r.data = k, d
	return nil
}

func readChunk(r *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > 1<<30 {
		return nil, errors.New("export sort: a run holds a line longer than 1 GiB")
	}
	buf = slices.Grow(buf, int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// runHeap orders the runs by their current key, then by their place.
type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := strings.Compare(string(h[i].key), string(h[j].key)); c != 0 {
		return c < 0
	}
	return h[i].idx < h[j].idx
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// merge emits the records of the sorted runs, in key order (equal keys in
// the runs' order), reading each from its start.
func merge(runs []sortRun, emit func(key, data []byte) error) error {
	h := make(runHeap, 0, len(runs))
	for i, run := range runs {
		if _, err := run.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		r := &runReader{r: bufio.NewReaderSize(run.f, 16<<10), idx: i}
		switch err := r.next(); {
		case errors.Is(err, io.EOF):
			continue
		case err != nil:
			return err
		}
		h = append(h, r)
	}
	heap.Init(&h)
	for len(h) > 0 {
		r := h[0]
		if err := emit(r.key, r.data); err != nil {
			return err
		}
		switch err := r.next(); {
		case errors.Is(err, io.EOF):
			heap.Pop(&h)
		case err != nil:
			return err
		default:
			heap.Fix(&h, 0)
		}
	}
	return nil
}
