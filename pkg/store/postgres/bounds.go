package postgres

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds on talking to a database that stopped answering (issue 18). A
// network partition neither refuses nor resets connections, so each layer
// gets its own bound: connecting (defaultConnectTimeout), waiting for a
// pooled connection and for each round trip (the caller's context, which
// pgx enforces by setting a deadline on the socket), each statement on the
// server (statement_timeout), and noticing a peer that vanished, on both
// sides (TCP keepalives and TCP_USER_TIMEOUT), so that Postgres ends the
// session of a replica cut off mid-transaction and frees its locks instead
// of holding them for the kernel's default two hours.
const (
	// defaultStatementTimeout is the server-side bound of one statement.
	defaultStatementTimeout = 30 * time.Second
	// defaultIdleInTxTimeout ends a session idle inside a transaction, a
	// client that vanished between statements, releasing its locks.
	defaultIdleInTxTimeout = time.Minute
	// Keepalive probes: the first after keepaliveIdle without traffic,
	// then one every keepaliveInterval; keepaliveCount unanswered ones end
	// the connection (about 30 s for an idle connection).
	keepaliveIdle     = 15 * time.Second
	keepaliveInterval = 5 * time.Second
	keepaliveCount    = 3
	// userTimeout ends a connection whose sent data stays unacknowledged
	// this long (TCP_USER_TIMEOUT, Linux): keepalives do not probe while
	// data is in flight, which is exactly the state of a query sent into
	// a partition.
	userTimeout = 30 * time.Second
)

// boundSessions applies the bounds above to cfg, leaving any the database
// URL sets itself (statement_timeout=..., tcp_keepalives_idle=... as URL
// parameters are session settings) as they are.
func boundSessions(cfg *pgxpool.Config) {
	params := cfg.ConnConfig.RuntimeParams
	setDefault := func(k, v string) {
		if _, ok := params[k]; !ok {
			params[k] = v
		}
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
	setDefault("statement_timeout", ms(defaultStatementTimeout))
	setDefault("idle_in_transaction_session_timeout", ms(defaultIdleInTxTimeout))
	// Server side: Postgres probes the client with these on its socket.
	setDefault("tcp_keepalives_idle", secs(keepaliveIdle))
	setDefault("tcp_keepalives_interval", secs(keepaliveInterval))
	setDefault("tcp_keepalives_count", strconv.Itoa(keepaliveCount))
	setDefault("tcp_user_timeout", ms(userTimeout))

	// Client side.
	d := &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: keepaliveIdle, Interval: keepaliveInterval, Count: keepaliveCount,
		},
		Control: setUserTimeout(userTimeout),
	}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}
