// Package telemetrytest lets a package prove, in its own tests, that the
// patient data it handles reaches none of the adapter's telemetry.
//
// New returns a Capture: a logger made by telemetry.NewLogger that writes
// to memory, a tracer provider that hands every ended span to an in-memory
// exporter, and a meter provider read by a manual reader. Give these to
// the code under test in place of the real ones, run it on input that
// holds distinctive planted values ("MRN-PLANTED-7731", "Jane
// Planted-Doe"), then call AssertNoneOf with those values. It searches the
// log output, every span's name, attributes, events, links, status and
// resource, and every metric's name, description, unit and attribute
// values, and fails the test naming each place a planted value turned up.
//
// The search is case-insensitive and also looks for the JSON- and
// Go-quoted forms of each value, because a leak that changed case or
// picked up escaping on the way out is still a leak.
package telemetrytest
