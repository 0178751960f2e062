package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrSecret marks a secret that cannot be read (a variable not set, a file
// missing or empty): the configuration's fault, which the CLI reports as a
// usage error (exit 2), not a failure of the run. Its text is "config".
var ErrSecret = errors.New("config")

// Secret says where a secret is kept: in an environment variable or in a
// file. It never holds the secret itself, so a Config can be printed,
// logged or compared without leaking anything; Resolve reads the secret
// when it is needed.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IsZero reports whether no reference is given.
func (s Secret) IsZero() bool { return s == Secret{} }

// String names the reference ("env IPSFHIR_TOKEN", "file /etc/ipsfhir/k.pem"),
// which is safe to print.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "env " + s.Env
	case s.File != "":
		return "file " + s.File
	}
	return "no reference"
}

// Resolve returns the secret. It logs nothing, and its errors name the
// reference (variable or file name) but never anything read from it. A
// file's leading and trailing white space is dropped: files written by
// editors and secret managers end in a newline that is not part of a token.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Env != "" && s.File != "":
		return "", fmt.Errorf("%w: a secret reference names both env and file", ErrSecret)
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("%w: environment variable %s is not set", ErrSecret, s.Env)
		}
		if v == "" {
			return "", fmt.Errorf("%w: environment variable %s is empty", ErrSecret, s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return "", fmt.Errorf("%w: read secret file %s: %w", ErrSecret, s.File, pe.Err)
			}
			return "", fmt.Errorf("%w: read secret file %s: %w", ErrSecret, s.File, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: secret file %s is empty", ErrSecret, s.File)
		}
		return v, nil
	}
	return "", fmt.Errorf("%w: no secret reference given", ErrSecret)
}

// Value is a setting given either in the file (Plain) or by reference
// (Ref), for settings that may or may not hold a secret: a PostgreSQL DSN
// without a password may be written out, one with a password must be a
// reference.
type Value struct {
	Plain string
	Ref   Secret
}

// IsZero reports whether the value is not given at all.
func (v Value) IsZero() bool { return v.Plain == "" && v.Ref.IsZero() }

// String prints a plain value's kind, never its text, and a reference's
// name: even a "plain" DSN can carry a host name worth keeping out of logs.
func (v Value) String() string {
	if !v.Ref.IsZero() {
		return v.Ref.String()
	}
	if v.Plain != "" {
		return "(given in the file)"
	}
	return "(not given)"
}

// Resolve returns the value, reading the reference if there is one; like
// Secret.Resolve it logs nothing and errors never carry the value.
func (v Value) Resolve() (string, error) {
	if !v.Ref.IsZero() {
		return v.Ref.Resolve()
	}
	if v.Plain == "" {
		return "", errors.New("config: no value given")
	}
	return v.Plain, nil
}
