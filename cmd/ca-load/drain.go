package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// An enrollment costs two token signatures: the leaf, and its OCSP response,
// which the publisher pre-signs in the background after the run's requests
// have been answered. A closed-loop run that stops while that work is queued
// would count only half of what it cost; so every enroll run is followed by
// a wait until each unexpired certificate has a pre-signed response, that
// wait is reported, and the enrollment target is judged on the sustained
// rate: answered enrollments / (run time + drain time).

// ocspBacklog counts the unexpired certificates that have no pre-signed OCSP
// response yet.
func ocspBacklog(ctx context.Context, conn *pgx.Conn) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `
		SELECT count(*) FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.not_after > now() AND r.serial IS NULL`).Scan(&n)
	return n, err
}

// waitOCSPDrained polls the server's database until the backlog is empty and
// returns how long that took.
func waitOCSPDrained(ctx context.Context, dbURL string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("connecting to the bench database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		n, err := ocspBacklog(ctx, conn)
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
