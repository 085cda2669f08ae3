package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// withinDeadline runs fn with a context that expires after d and fails the
// test if fn takes much longer than that (a hang).
func withinDeadline(t *testing.T, d time.Duration, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	if el := time.Since(start); el > d+2*time.Second {
		t.Errorf("call took %v with a %v deadline", el, d)
	}
	return err
}

func TestOpenOnAClosedPortIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = withinDeadline(t, 5*time.Second, func(ctx context.Context) error {
		_, err := postgres.Open(ctx, "postgres://postgres:pw-not-shown@"+addr+"/ca?sslmode=disable")
		return err
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open on a closed port: %v; want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "pw-not-shown") {
		t.Errorf("error quotes the password: %v", err)
	}
}

func TestOpenOnASilentServerIsUnavailableAtTheDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() { // accept and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	err = withinDeadline(t, 2*time.Second, func(ctx context.Context) error {
		_, err := postgres.Open(ctx, "postgres://postgres@"+ln.Addr().String()+"/ca?sslmode=disable")
		return err
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open on a server that never answers: %v; want ErrUnavailable", err)
	}
}

// proxy forwards loopback TCP connections to Postgres and can be cut and
// restored on the same address, like a network outage.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, addr: "127.0.0.1:0", target: target}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr, p.conns = ln, ln.Addr().String(), map[net.Conn]bool{}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// stop closes the listener and every forwarded connection.
func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	p.wg.Wait()
}

func TestOutageIsUnavailableAndRecovers(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.addr
	ctx := context.Background()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open through the proxy: %v", err)
	}
	defer s.Close()
	issuer := store.Issuer{ID: "root", Kind: store.KindRoot, KeyURI: "k", State: store.IssuerActive,
		CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
	if err := s.InsertIssuer(ctx, issuer); err != nil {
		t.Fatal(err)
	}

	p.stop()
	calls := map[string]func(ctx context.Context) error{
		"Ping":      s.Ping,
		"GetIssuer": func(ctx context.Context) error { _, err := s.GetIssuer(ctx, "root"); return err },
		"AppendAudit": func(ctx context.Context) error {
			_, err := s.AppendAudit(ctx, store.AuditEntry{Time: time.Unix(2, 0)})
			return err
		},
		"NextCRLNumber": func(ctx context.Context) error { _, err := s.NextCRLNumber(ctx, "root"); return err },
		"MarkTokenUsed": func(ctx context.Context) error {
			return s.MarkTokenUsed(ctx, "iss|outage", time.Unix(7200, 0), time.Unix(2, 0))
		},
	}
	for name, call := range calls {
		err := withinDeadline(t, 3*time.Second, call)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s during the outage: %v; want ErrUnavailable", name, err)
		}
	}

	p.start() // same address
	recovered := false
	for i := 0; i < 5 && !recovered; i++ { // dead pooled connections are dropped one by one
		err := withinDeadline(t, 3*time.Second, func(ctx context.Context) error { _, err := s.GetIssuer(ctx, "root"); return err })
		switch {
		case err == nil:
			recovered = true
		case !errors.Is(err, store.ErrUnavailable):
			t.Fatalf("GetIssuer after the outage: %v", err)
		}
	}
	if !recovered {
		t.Fatal("the store did not recover after the database came back")
	}
	if _, err := s.AppendAudit(ctx, store.AuditEntry{Time: time.Unix(3, 0)}); err != nil {
		t.Errorf("AppendAudit after recovery: %v", err)
	}
	// The mark that failed in the outage left nothing: the token is free.
	if err := s.MarkTokenUsed(ctx, "iss|outage", time.Unix(7200, 0), time.Unix(3, 0)); err != nil {
		t.Errorf("MarkTokenUsed after recovery: %v", err)
	}
}

func TestTerminatedBackendsAreUnavailableThenRecover(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, testkit.PostgresAdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	u, _ := url.Parse(dbURL)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, u.Path[1:]).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no backend to terminate")
	}
	recovered := false
	for i := 0; i < 5 && !recovered; i++ {
		err := withinDeadline(t, 3*time.Second, func(ctx context.Context) error { _, err := s.ListIssuers(ctx); return err })
		switch {
		case err == nil:
			recovered = true
		case !errors.Is(err, store.ErrUnavailable):
			t.Fatalf("call on a terminated backend: %v; want nil or ErrUnavailable", err)
		default:
			t.Logf("call %d on a terminated backend: %v", i, err)
		}
	}
	if !recovered {
		t.Fatal("the pool did not reconnect after its backends were terminated")
	}
}
