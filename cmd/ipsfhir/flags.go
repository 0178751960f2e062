package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ipsfhir/ipsfhir/ips"
)

// newFlags makes a subcommand's flag set that prints its help to stdout when
// asked for (--help is not an error) and to stderr on a mistake.
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: ipsfhir %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; done reports that the command should stop now with
// code (after --help, or on a usage error).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	// flag.Parse prints the usage itself, to the error output, also for
	// --help; print it once, and where it belongs, here instead.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		usage()
		return exitOK, true
	}
	if err != nil {
		usage()
		return exitUsage, true
	}
	return 0, false
}

// maxInputBytes bounds every input a command reads whole (a caseload, a
// Bundle, a CapabilityStatement, MeasureReports): ips.Decode's bound,
// applied before the input is held in memory. A variable for tests.
var maxInputBytes int64 = ips.MaxCaseloadBytes

// errTooBig is readInput's answer to an input over maxInputBytes.
var errTooBig = errors.New("larger than " + strconv.FormatInt(ips.MaxCaseloadBytes>>20, 10) + " MiB, the most ipsfhir reads")

// readInput reads a named file, or standard input for "-", with a bound:
// a regular file larger than maxInputBytes is refused by its size before
// anything is read, and anything else (stdin, a pipe) is read to
// maxInputBytes+1 bytes at most; either way the error is an *os.PathError
// (its Op "read", its Path the name) wrapping errTooBig. What a command
// reads whole must not hold a runaway file in memory before the check
// that refuses it.
func readInput(name string, stdin io.Reader) ([]byte, error) {
	tooBig := &os.PathError{Op: "read", Path: "standard input", Err: errTooBig}
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		tooBig.Path = name
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > maxInputBytes {
			return nil, tooBig
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxInputBytes {
		return nil, tooBig
	}
	return data, nil
}

// writeOutput writes data to a file atomically (a temporary file renamed into
// place, so a failed run never leaves half a file), or to stdout for "" or "-".
func writeOutput(name string, data []byte, stdout io.Writer) error {
	if name == "" || name == "-" {
		_, err := stdout.Write(data)
		return err
	}
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, ".ipsfhir-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// fileError describes a failure to read or write a file without echoing
// anything from inside it.
func fileError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %s: %v", pe.Op, pe.Path, pe.Err)
	}
	return err.Error()
}
