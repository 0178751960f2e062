//go:build !unix

package peer

import (
	"os"
	"os/exec"
	"sync"
)

// Outside Unix there are no process groups or flock here: the server is
// killed directly (it starts no children), and the npm lock only serializes
// within one process.

func setProcessGroup(*exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, _ bool) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

var localLock sync.Mutex

func tryLock(*os.File) error {
	if !localLock.TryLock() {
		return errLocked
	}
	return nil
}

func unlock(*os.File) { localLock.Unlock() }
