package ips

// SetMaxCaseloadBytes lowers Decode's bound for one test, which must not
// run in parallel with another that decodes; it returns the restore.
func SetMaxCaseloadBytes(n int) (restore func()) {
	old := maxCaseloadBytes
	maxCaseloadBytes = n
	return func() { maxCaseloadBytes = old }
}
