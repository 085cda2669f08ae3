package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// OpenObserved is Open with every statement the store runs, and every
// connection it opens, told to obs (store.Observer): a pgx tracer on the
// pool's connections, so that no store method needs code of its own to be
// timed. A nil obs is Open.
func OpenObserved(ctx context.Context, dsn string, obs store.Observer) (*Store, error) {
	return open(ctx, dsn, false, obs)
}

// tracer tells an Observer of each query (Exec, Query, QueryRow, including
// pgx's BEGIN, COMMIT and ROLLBACK), batch, COPY and connection attempt. A
// query's start lives in its connection's custom data, not in a context
// value, so that timing one allocates nothing: a pgx connection runs one
// query or batch at a time. A pool's wait for a free connection is not
// part of any statement.
type tracer struct{ obs store.Observer }

var (
	_ pgx.QueryTracer    = tracer{}
	_ pgx.BatchTracer    = tracer{}
	_ pgx.CopyFromTracer = tracer{}
	_ pgx.ConnectTracer  = tracer{}
)

// traceKey names the connection's *traceState in pgconn's CustomData.
const traceKey = "workload-ca/store.trace"

// traceState is the statement a connection is running.
type traceState struct {
	op    string
	start time.Time
}

func connState(conn *pgx.Conn) *traceState {
	data := conn.PgConn().CustomData()
	st, _ := data[traceKey].(*traceState)
	if st == nil {
		st = &traceState{}
		data[traceKey] = st
	}
	return st
}

func (t tracer) begin(conn *pgx.Conn, op string) {
	st := connState(conn)
	st.op, st.start = op, time.Now()
}

func (t tracer) end(conn *pgx.Conn, err error) {
	st := connState(conn)
	t.obs.ObserveStatement(st.op, time.Since(st.start), observedErr(err))
}

// observedErr is err as the store would return it: ErrNotFound for no row,
// ErrConflict and ErrUnavailable recognisable.
func observedErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNotFound
	}
	return mapErr(err)
}

func (t tracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	t.begin(conn, sqlstore.Summary(data.SQL))
	return ctx
}

func (t tracer) TraceQueryEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	t.end(conn, data.Err)
}

// TraceBatchStart times a batch as one statement, summarised by its first
// query past a BEGIN ("BATCH INSERT certificates"): a pipeline's queries
// have no time of their own.
func (t tracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	op := "BATCH"
	if data.Batch != nil {
		for _, q := range data.Batch.QueuedQueries {
			if s := sqlstore.Summary(q.SQL); s != "BEGIN" && s != "START" {
				op = sqlstore.BatchSummary(s)
				break
			}
		}
	}
	t.begin(conn, op)
	return ctx
}

func (tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t tracer) TraceBatchEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	t.end(conn, data.Err)
}

func (t tracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	table := ""
	if n := len(data.TableName); n > 0 {
		table = data.TableName[n-1]
	}
	t.begin(conn, sqlstore.TableSummary("COPY", table))
	return ctx
}

func (t tracer) TraceCopyFromEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	t.end(conn, data.Err)
}

// connectStart carries a connection attempt's start (rare: a context value
// is fine here).
type connectStart struct{}

func (tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return context.WithValue(ctx, connectStart{}, time.Now())
}

func (t tracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	start, ok := ctx.Value(connectStart{}).(time.Time)
	if !ok {
		return
	}
	t.obs.ObserveStatement("CONNECT", time.Since(start), observedErr(data.Err))
}
