package ehr

import "time"

// SetClock replaces the SMART backend's clock, so tests can move past a
// token's renewal time without sleeping.
func SetClock(s *SMARTBackend, now func() time.Time) { s.now = now }
