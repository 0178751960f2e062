//go:build !unix

package fhirapi

import (
	"io/fs"
	"os"
)

// Outside Unix there is no flock here: a server's lock is the open lock
// file alone, and a sweep never takes another server's directory for stale.

func tryLock(*os.File) (bool, error) { return true, nil }

func ownedByUs(fs.FileInfo) bool { return false }
