package telemetry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
)

// MinHashKeyLen is the shortest key HashID accepts: the key is all that
// stands between a hashed MRN and a dictionary of candidate MRNs, so it
// must be as long as the HMAC's own output.
const MinHashKeyLen = 32

// hashedIDBytes is how much of the HMAC is kept. 64 bits keep collisions
// improbable across a program's caseload while staying short enough to
// read in a log line; the shape is what the "hashed_id" rule accepts.
const hashedIDBytes = 8

// A Hasher turns identifiers into stable pseudonyms for logs and traces.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher keyed with a copy of key. Replicas that share
// a key produce the same pseudonym for the same identifier, so one record
// can be followed across them.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinHashKeyLen {
		return nil, errors.New("telemetry: hash key shorter than 32 bytes")
	}
	return &Hasher{key: append([]byte(nil), key...)}, nil
}

// HashID returns "h:" and 16 hex digits of HMAC-SHA256(key, id). It is not
// reversible without the key, and a plain hash would not do: MRNs and
// dates are few enough to hash them all.
func (h *Hasher) HashID(id string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(id)) // hash.Hash.Write never fails.
	return "h:" + hex.EncodeToString(m.Sum(nil)[:hashedIDBytes])
}

// processHasher is the Hasher behind the package-level HashID. It is
// process-wide so that every package pseudonymises the same identifier the
// same way without a Hasher threaded through each constructor; it is set
// once at start (SetHashKey) or lazily given a random key.
var processHasher atomic.Pointer[Hasher]

// HashID pseudonymises id with the process key; log the result under
// "hashed_id". Without SetHashKey the key is random, so pseudonyms are
// stable within one process and mean nothing outside it.
func HashID(id string) string {
	h := processHasher.Load()
	if h == nil {
		key := make([]byte, MinHashKeyLen)
		rand.Read(key) // Never returns an error; it crashes the program instead.
		processHasher.CompareAndSwap(nil, &Hasher{key: key})
		h = processHasher.Load()
	}
	return h.HashID(id)
}

// SetHashKey makes HashID use key, so that replicas sharing it agree.
// Call it while wiring, before anything is logged: pseudonyms logged
// earlier were made with the random key and will not match later ones.
func SetHashKey(key []byte) error {
	h, err := NewHasher(key)
	if err != nil {
		return err
	}
	processHasher.Store(h)
	return nil
}
