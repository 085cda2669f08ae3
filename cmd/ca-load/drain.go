package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the embedded default's database, read for the backlog
)

// An enrollment costs two token signatures: the leaf, and its OCSP response,
// which the publisher pre-signs in the background after the run's requests
// have been answered. A closed-loop run that stops while that work is queued
// would count only half of what it cost; so every enroll run is followed by
// a wait until each unexpired certificate has a pre-signed response, that
// wait is reported, and the enrollment target is judged on the sustained
// rate: answered enrollments / (run time + drain time).

// dbProbe reads the server's database: the OCSP backlog (unexpired
// certificates without a pre-signed response) and the number of recorded
// certificates (to check that every answered certificate is recorded and
// nothing else was).
type dbProbe interface {
	ocspBacklog(ctx context.Context) (int, error)
	certificates(ctx context.Context) (int, error)
	close()
}

// pgProbe reads a Postgres database over one connection.
type pgProbe struct{ conn *pgx.Conn }

func newPGProbe(ctx context.Context, dbURL string) (*pgProbe, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the bench database: %w", err)
	}
	return &pgProbe{conn: conn}, nil
}

func (p *pgProbe) ocspBacklog(ctx context.Context) (int, error) {
	var n int
	err := p.conn.QueryRow(ctx, `
		SELECT count(*) FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.not_after > now() AND r.serial IS NULL`).Scan(&n)
	return n, err
}

func (p *pgProbe) certificates(ctx context.Context) (int, error) {
	var n int
	err := p.conn.QueryRow(ctx, `SELECT count(*) FROM certificates`).Scan(&n)
	return n, err
}

func (p *pgProbe) close() { _ = p.conn.Close(context.Background()) }

// sqliteProbe reads the embedded default's SQLite file, query-only (WAL lets
// it read while the server writes).
type sqliteProbe struct{ db *sql.DB }

func newSQLiteProbe(path string) (*sqliteProbe, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &sqliteProbe{db: db}, nil
}

func (p *sqliteProbe) ocspBacklog(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRowContext(ctx, `
		SELECT count(*) FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.not_after > ? AND r.serial IS NULL`, time.Now().UnixMicro()).Scan(&n)
	return n, err
}

func (p *sqliteProbe) certificates(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM certificates`).Scan(&n)
	return n, err
}

func (p *sqliteProbe) close() { _ = p.db.Close() }

// waitOCSPDrained polls the server's database until the backlog is empty and
// returns how long that took.
func waitOCSPDrained(ctx context.Context, db dbProbe, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		n, err := db.ocspBacklog(ctx)
		if err != nil {
			return 0, fmt.Errorf("counting the OCSP backlog: %w", err)
		}
		if n == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%d certificates still without a pre-signed OCSP response after %v", n, limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
