package telemetry

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

func TestHasher(t *testing.T) {
	keyA := bytes.Repeat([]byte("a"), MinHashKeyLen)
	keyB := bytes.Repeat([]byte("b"), MinHashKeyLen)
	a1, err := NewHasher(keyA)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := NewHasher(append([]byte(nil), keyA...))
	b, _ := NewHasher(keyB)

	const id = "MRN-PLANTED-7731"
	got := a1.HashID(id)
	if !regexp.MustCompile(`^h:[0-9a-f]{16}$`).MatchString(got) {
		t.Errorf("HashID = %q, want h: and 16 hex digits", got)
	}
	if strings.Contains(got, "7731") {
		t.Errorf("HashID %q contains part of the id", got)
	}
	if a2.HashID(id) != got {
		t.Error("replicas with the same key disagree")
	}
	if b.HashID(id) == got {
		t.Error("different keys give the same pseudonym")
	}
	if a1.HashID("MRN-PLANTED-7732") == got {
		t.Error("different ids give the same pseudonym")
	}
	// The log policy must accept what HashID makes.
	if a := sanitize(slog.String("hashed_id", got)); a.Value.String() != got {
		t.Errorf("hashed_id %q redacted by the log policy", got)
	}
}

func TestHasherCopiesKey(t *testing.T) {
	key := bytes.Repeat([]byte("k"), MinHashKeyLen)
	h, _ := NewHasher(key)
	before := h.HashID("x")
	key[0] = 'z'
	if h.HashID("x") != before {
		t.Error("changing the caller's key slice changed the hasher")
	}
}

func TestNewHasherRejectsShortKey(t *testing.T) {
	if _, err := NewHasher(make([]byte, MinHashKeyLen-1)); err == nil {
		t.Error("short key accepted")
	}
	if err := SetHashKey([]byte("short")); err == nil {
		t.Error("SetHashKey accepted a short key")
	}
}

// Not parallel: it sets the process key.
func TestProcessHashID(t *testing.T) {
	random := HashID("MRN-PLANTED-7731")
	if random != HashID("MRN-PLANTED-7731") {
		t.Error("process pseudonyms are not stable")
	}
	key := bytes.Repeat([]byte("r"), MinHashKeyLen)
	if err := SetHashKey(key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { processHasher.Store(nil) })
	want, _ := NewHasher(key)
	if got := HashID("MRN-PLANTED-7731"); got != want.HashID("MRN-PLANTED-7731") {
		t.Errorf("after SetHashKey, HashID = %s, want %s", got, want.HashID("MRN-PLANTED-7731"))
	}
}
