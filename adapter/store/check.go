package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// The helpers here are shared by every implementation: argument checks (so
// all stores refuse the same bad input with ErrInvalid) and the client
// document codec (so all stores hold the same JSON).

// ErrInvalid wraps errors about arguments a caller must fix (a nil client, an
// empty connection name); the API maps it to 400, not 500.
var ErrInvalid = errors.New("invalid argument")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// EncodeBatch checks a SaveClients batch and encodes it. It returns the JSON
// documents in input order and the input indexes in client-id order, the
// order in which implementations take row locks so that concurrent saves of
// overlapping batches cannot deadlock.
func EncodeBatch(clients []Stored) (docs [][]byte, order []int, err error) {
	seen := make(map[string]bool, len(clients))
	docs = make([][]byte, len(clients))
	order = make([]int, len(clients))
	for i, c := range clients {
		if c.Client == nil {
			return nil, nil, invalid("client %d of %d is nil", i+1, len(clients))
		}
		id := c.Client.ID
		if id == "" {
			return nil, nil, invalid("client %d of %d has no id", i+1, len(clients))
		}
		if c.Version < 0 {
			return nil, nil, invalid("client %s: negative version", id)
		}
		if seen[id] {
			return nil, nil, invalid("client %s appears twice in one save", id)
		}
		seen[id] = true
		b, err := json.Marshal(c.Client)
		if err != nil {
			// json's messages name types and unsupported values such as
			// NaN, never field content.
			return nil, nil, fmt.Errorf("client %s: encode: %w", id, err)
		}
		docs[i] = b
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(clients[a].Client.ID, clients[b].Client.ID) })
	return docs, order, nil
}

// Connections drops duplicate connection names and refuses empty ones.
func Connections(connections []string) ([]string, error) {
	var out []string
	for _, c := range connections {
		if c == "" {
			return nil, invalid("empty connection name")
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// DecodeClient decodes a stored document. Its error names the client and at
// most the JSON field, never the content.
func DecodeClient(id string, doc []byte) (*ips.Client, error) {
	var c ips.Client
	if err := json.Unmarshal(doc, &c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("client %s: stored document does not decode at field %q", id, te.Field)
		}
		return nil, fmt.Errorf("client %s: stored document does not decode", id)
	}
	return &c, nil
}

// Unavailable returns an error that is ErrUnavailable for errors.Is, with
// reason, a short constant phrase such as "connection refused", as all of
// its text: implementations use it in place of a driver's error, whose
// message may name the server's address, user, database or file.
func Unavailable(reason string) error { return &unavailableError{reason: reason} }

type unavailableError struct{ reason string }

func (e *unavailableError) Error() string        { return ErrUnavailable.Error() + ": " + e.reason }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// LogSafe lets the log handler print the reason (telemetry.LogSafer): it
// is a constant phrase, never data.
func (e *unavailableError) LogSafe() string { return e.Error() }

// CheckLease checks Lease's arguments.
func CheckLease(connection, owner string, n int, lease time.Duration) error {
	switch {
	case connection == "":
		return invalid("empty connection name")
	case owner == "":
		return invalid("empty owner")
	case n <= 0:
		return invalid("n must be positive")
	case lease < time.Microsecond:
		return invalid("lease must be at least a microsecond")
	}
	return nil
}

// CheckConflict checks a conflict before it is recorded.
func CheckConflict(c Conflict) error {
	if c.Connection == "" || c.ClientID == "" || c.Key == "" || c.Field == "" {
		return invalid("connection, client, key and field are required")
	}
	if c.Winner != "ips" && c.Winner != "ehr" {
		return invalid(`winner must be "ips" or "ehr"`)
	}
	return nil
}

// PatientKey is the key under which a store keeps a client's patient
// identifier unique ("system|value"), or nil when the client has none.
func PatientKey(c *ips.Client) *string {
	if c.Patient.Value == "" {
		return nil
	}
	k := c.Patient.System + "|" + c.Patient.Value
	return &k
}

// PatientConflict is the error for a client whose patient identifier another
// client holds. It names both clients by their program ids, never the
// patient identifier.
func PatientConflict(id, other string) error {
	return fmt.Errorf("client %s: client %s already has this patient identifier: %w", id, other, ErrConflict)
}
