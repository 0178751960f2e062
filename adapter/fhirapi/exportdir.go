package fhirapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Bulk Data jobs keep their files on disk, not in memory: under
// Options.ExportDir (os.TempDir() when unset) the server makes a directory
// of its own, ipsfhir-export-{random} (mode 0700, as every file in it is
// 0600), and in it one directory per job, named by the job's random id.
// A job's directory is removed when the job is deleted (by its owner or an
// administrator), expires (Limits.JobTTL after it finished), is dropped
// once its files were all fetched, fails, or is cancelled; the server's
// directory when the server closes. The server holds a lock on the file
// .lock in its directory while it runs (on Unix, flock), so that a server
// starting up removes what a server that stopped without closing (a crash,
// a kill) left: directories ipsfhir-export-* in the same place, of the same
// user, whose lock nobody holds.

// rootPrefix starts the name of a server's directory of jobs.
const rootPrefix = "ipsfhir-export-"

// staleGrace is how old a server's directory with no lock file must be
// before a sweep removes it: a server that just made its directory has not
// yet made its lock.
const staleGrace = time.Minute

// jobRoot is the server's directory of job files, made on first use.
func (s *Server) jobRoot() (string, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.jobsRoot != "" {
		return s.jobsRoot, nil
	}
	if s.rootClosed {
		return "", errors.New("export: the server is closed")
	}
	base := s.exportDir
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(base, rootPrefix)
	if err != nil {
		return "", err
	}
	lock, err := lockDir(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	s.jobsRoot, s.rootLock = dir, lock
	return dir, nil
}

// newJobDir makes a job's directory.
func (s *Server) newJobDir(id string) (string, error) {
	root, err := s.jobRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// removeJobDir removes a job's files.
func (s *Server) removeJobDir(dir string) {
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "export files not removed", slog.String("op", "export"), slog.String("error", err.Error()))
	}
}

// closeRoot removes the server's directory of jobs; no job is running.
func (s *Server) closeRoot() {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	s.rootClosed = true
	if s.jobsRoot == "" {
		return
	}
	s.removeJobDir(s.jobsRoot)
	if s.rootLock != nil {
		_ = s.rootLock.Close()
	}
	s.jobsRoot, s.rootLock = "", nil
}

// sweepStale removes the job directories servers that did not close left
// in base (see above). It returns how many it removed.
func sweepStale(base string, log *slog.Logger) int {
	if base == "" {
		base = os.TempDir()
	}
	dirs, err := filepath.Glob(filepath.Join(base, rootPrefix+"*"))
	if err != nil {
		return 0
	}
	removed := 0
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || !ownedByUs(fi) {
			continue // not a directory (a link, say), or another user's
		}
		stale, err := unlocked(dir, fi)
		if err != nil || !stale {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.LogAttrs(context.Background(), slog.LevelWarn, "stale export files not removed", slog.String("op", "export"), slog.String("error", err.Error()))
			continue
		}
		removed++
	}
	return removed
}

// unlocked reports whether no running server holds dir's lock.
func unlocked(dir string, fi fs.FileInfo) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Since(fi.ModTime()) > staleGrace, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	return tryLock(f)
}

// lockDir makes and locks dir's lock file, held until it is closed.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := tryLock(f)
	if err == nil && !ok {
		err = fmt.Errorf("export: %s is locked by another process", dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
