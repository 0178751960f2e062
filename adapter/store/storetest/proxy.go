package storetest

import (
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresProxy forwards TCP connections to a PostgreSQL server until Stop,
// so that a test can take the database away from a Store the way an outage
// would (open connections cut, new ones refused) without stopping the
// server, which other tests and people share.
type PostgresProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]bool
	stopped bool
	wg      sync.WaitGroup
}

// StartPostgresProxy starts a proxy on 127.0.0.1 in front of the server dsn
// names and returns it with dsn rewritten to connect through it. It is
// stopped when t ends.
func StartPostgresProxy(t testing.TB, dsn string) (*PostgresProxy, string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("proxy: parse the DSN: %v", err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Fatalf("proxy: the DSN names a Unix socket; a TCP server is needed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &PostgresProxy{ln: ln, target: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.Stop)

	addr := ln.Addr().(*net.TCPAddr)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("proxy: %s is not a valid URL", PostgresEnv)
		}
		u.Host = addr.String()
		return p, u.String()
	}
	// In a key=value string a later setting overrides an earlier one.
	return p, dsn + " host=127.0.0.1 port=" + strconv.Itoa(addr.Port)
}

func (p *PostgresProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // stopped
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		p.wg.Go(func() { p.pipe(c, s) })
		p.wg.Go(func() { p.pipe(s, c) })
	}
}

// track registers a forwarded pair, or closes it if the proxy has stopped.
func (p *PostgresProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if p.stopped {
			c.Close()
			continue
		}
		p.conns[c] = true
	}
	return !p.stopped
}

// pipe copies one direction; when it ends, the pair is cut both ways.
func (p *PostgresProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Stop closes the listener, so that new connections are refused, and cuts
// every forwarded connection. Calling it again does nothing.
func (p *PostgresProxy) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		p.ln.Close()
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
