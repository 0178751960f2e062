package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
)

// session is one signed-in browser: the caller whose key signed in, the
// CSRF token of its forms, and when it began and was last used. The key
// itself is never kept, only who it names.
type session struct {
	caller  api.Key
	csrf    string
	created time.Time
	seen    time.Time
}

// sessions is the server-side session store: in memory, keyed by the
// SHA-256 of each session id (the id itself is only in the browser's
// cookie). A session ends when idle longer than idle, older than max, or
// signed out; a restart ends every one.
type sessions struct {
	mu   sync.Mutex
	m    map[[sha256.Size]byte]*session
	idle time.Duration
	max  time.Duration
	now  func() time.Time
}

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[sha256.Size]byte]*session{}, idle: idle, max: max, now: now}
}

// token returns 256 random bits, base64url-encoded.
func token() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for caller and returns its id.
func (s *sessions) create(caller api.Key) (string, *session) {
	id := token()
	now := s.now()
	sess := &session{caller: caller, csrf: token(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, old := range s.m { // drop the expired, so the map does not grow
		if s.expired(old, now) {
			delete(s.m, k)
		}
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// get returns the live session of id and marks it used, or nil.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[k]
	if sess == nil {
		return nil
	}
	if s.expired(sess, now) {
		delete(s.m, k)
		return nil
	}
	sess.seen = now
	return sess
}

// end forgets the session of id.
func (s *sessions) end(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.seen) > s.idle || now.Sub(sess.created) > s.max
}

// sameToken compares two tokens in constant time; an empty one never
// matches.
func sameToken(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
