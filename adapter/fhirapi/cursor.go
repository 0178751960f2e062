package fhirapi

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ipsfhir/ipsfhir/adapter/api"
)

// Paging cursors. A search's self and next links carry one parameter,
// _cursor, and nothing else: the search's parameters (patient identifiers
// among them) and the position of the page are sealed inside it with
// XChaCha20-Poly1305 under a server key, so the link reveals nothing, and a
// cursor that was altered, made under another key, for another resource type
// or another API key, or has expired, is refused rather than followed.
//
// XChaCha20-Poly1305 and not AES-GCM: its 192-bit nonces can be drawn at
// random for as many cursors as a long-lived configured key ever seals;
// AES-GCM's 96-bit random nonces are safe only up to 2^32 messages per key.

// cursorVersion is the first byte of every cursor: a later format gets
// another, and cursors of this one are then refused as foreign.
const cursorVersion = 1

// MinCursorKeyBytes is the shortest Options.CursorKey accepted.
const MinCursorKeyBytes = 32

// DefaultCursorTTL is how long a paging link stays valid when
// Options.CursorTTL is zero.
const DefaultCursorTTL = time.Hour

// maxCursorChars bounds the _cursor a request may carry: a search's
// parameters fit in a POST _search body of maxFormBytes, and the sealed
// cursor is their base64 plus a little.
const maxCursorChars = maxFormBytes*4/3 + 1024

// cursorInfo is the HKDF context of the cursor key: a configured secret
// may serve other purposes too, and this keeps the derived keys apart.
const cursorInfo = "ipsfhir fhirapi search cursor v1"

// cursor is where a page starts: the client, when the store last saved it
// (the page's position in _lastUpdated order), and how many of its matching
// resources the earlier pages held. The zero cursor is the first page.
type cursor struct {
	client string
	at     time.Time
	offset int
}

// first reports whether c is the first page.
func (c cursor) first() bool { return c.client == "" }

// sealedSearch is what a cursor holds: the search, the page, what the
// search ignored and the expiry.
type sealedSearch struct {
	Query   string   `json:"q"`           // the search parameters, URL-encoded, _count included
	Client  string   `json:"c,omitempty"` // the position (cursor)
	At      int64    `json:"t,omitempty"` // Unix nanoseconds
	Offset  int      `json:"o,omitempty"`
	Notes   []string `json:"n,omitempty"` // the warnings about ignored parameters, which name no value
	Expires int64    `json:"e"`           // Unix seconds
}

// cursorSealer seals and opens cursors under one key.
type cursorSealer struct {
	aead cipher.AEAD
	ttl  time.Duration
}

// newCursorSealer derives the cursor key from secret, or from a random
// secret when secret is nil: cursors then work only in this process.
func newCursorSealer(secret []byte, ttl time.Duration) (*cursorSealer, error) {
	if secret == nil {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // crypto/rand never fails (Go 1.24+)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, cursorInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("fhirapi: derive the cursor key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("fhirapi: cursor cipher: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultCursorTTL
	}
	return &cursorSealer{aead: aead, ttl: ttl}, nil
}

// binding is the additional data a cursor is sealed with: the resource type
// it pages and the API key that searched. A cursor used on another type, or
// by another caller, fails to open.
func binding(typ string, caller api.Key) []byte {
	b := []byte(fmt.Sprintf("ipsfhir-cursor|%d|%s|%s|", cursorVersion, typ, caller.Name))
	return append(b, caller.SHA256...)
}

// seal returns the cursor of the page at pos of the search q, which
// ignored what notes say.
func (cs *cursorSealer) seal(typ string, caller api.Key, q url.Values, pos cursor, notes []string, now time.Time) (string, error) {
	st := sealedSearch{Query: q.Encode(), Client: pos.client, Offset: pos.offset, Notes: notes, Expires: now.Add(cs.ttl).Unix()}
	if !pos.first() {
		st.At = pos.at.UnixNano()
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("marshal cursor: %w", err)
	}
	nonce := make([]byte, 1+cs.aead.NonceSize(), 1+cs.aead.NonceSize()+len(plain)+cs.aead.Overhead())
	nonce[0] = cursorVersion
	_, _ = rand.Read(nonce[1:])
	sealed := cs.aead.Seal(nonce, nonce[1:], plain, binding(typ, caller))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Why a cursor is refused.
var (
	errCursorForeign = errors.New("cursor not sealed by this server for this search and caller")
	errCursorExpired = errors.New("cursor expired")
)

// open returns the search, position and notes a cursor holds. It fails with
// errCursorForeign for anything this server did not seal for this type and
// caller under its current key (tampered, made up, another replica's or an
// earlier process's without a configured key), and errCursorExpired for a
// cursor past its expiry.
func (cs *cursorSealer) open(typ string, caller api.Key, s string, now time.Time) (url.Values, cursor, []string, error) {
	if len(s) > maxCursorChars {
		return nil, cursor{}, nil, errCursorForeign
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 1+cs.aead.NonceSize()+cs.aead.Overhead() || raw[0] != cursorVersion {
		return nil, cursor{}, nil, errCursorForeign
	}
	n := 1 + cs.aead.NonceSize()
	plain, err := cs.aead.Open(nil, raw[1:n], raw[n:], binding(typ, caller))
	if err != nil {
		return nil, cursor{}, nil, errCursorForeign
	}
	var st sealedSearch
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, cursor{}, nil, errCursorForeign // sealed by us, so a bug; refused all the same
	}
	if !now.Before(time.Unix(st.Expires, 0)) {
		return nil, cursor{}, nil, errCursorExpired
	}
	q, err := url.ParseQuery(st.Query)
	if err != nil || st.Offset < 0 || (st.Client != "" && !fhirID.MatchString(st.Client)) {
		return nil, cursor{}, nil, errCursorForeign
	}
	pos := cursor{client: st.Client, offset: st.Offset}
	if st.Client != "" {
		pos.at = time.Unix(0, st.At)
	}
	return q, pos, st.Notes, nil
}
