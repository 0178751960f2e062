//go:build unix

package fhirapi

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// tryLock takes f's exclusive lock if nobody holds it; it is released when
// f is closed or its process ends.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// ownedByUs reports whether this process's user owns the file.
func ownedByUs(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
