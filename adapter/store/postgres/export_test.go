package postgres

// ListenerPID is the server process id of s's LISTEN connection, 0 while
// it has none.
func ListenerPID(s *Store) uint32 { return s.listenerPID.Load() }
