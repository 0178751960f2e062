//go:build !linux

package faultsuite

import "os/exec"

func setChildAttrs(*exec.Cmd) {}

// procSample needs /proc; elsewhere the soak reports no samples.
func procSample(int) (int64, int, bool) { return 0, 0, false }
