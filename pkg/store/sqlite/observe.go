package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"time"

	"modernc.org/sqlite"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// OpenObserved is Open with every statement the store runs, and every
// connection it opens, told to obs (store.Observer): the driver's
// connections are wrapped at the database/sql driver level, so that no
// store method needs code of its own to be timed. A nil obs is Open.
func OpenObserved(ctx context.Context, path string, obs store.Observer) (*Store, error) {
	return open(ctx, path, obs)
}

// openDB is sql.Open of the modernc driver, its connections observed by obs
// when obs is not nil.
func openDB(dsn string, obs store.Observer) (*sql.DB, error) {
	if obs == nil {
		return sql.Open("sqlite", dsn)
	}
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(observedConnector{c, obs}), nil
}

// observedConnector opens the driver's connections wrapped in observedConn.
type observedConnector struct {
	driver.Connector
	obs store.Observer
}

func (c observedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	start := time.Now()
	conn, err := c.Connector.Connect(ctx)
	c.obs.ObserveStatement("CONNECT", time.Since(start), observedErr(err))
	if err != nil {
		return nil, err
	}
	dc, ok := conn.(driverConn)
	if !ok {
		return conn, nil // not the modernc connection this was written for: unobserved
	}
	return &observedConn{dc, c.obs}, nil
}

// driverConn is what database/sql uses of a modernc connection; observedConn
// passes all of it through, timing the statements.
type driverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// observedConn times ExecContext, QueryContext (until its rows are closed),
// the statements it prepares, BEGIN, COMMIT and ROLLBACK.
type observedConn struct {
	driverConn
	obs store.Observer
}

// observedErr is err as the store would return it (mapErr).
func observedErr(err error) error {
	if err == nil {
		return nil
	}
	return mapErr(err)
}

func (c *observedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	start := time.Now()
	res, err := c.driverConn.ExecContext(ctx, query, args)
	if !errors.Is(err, driver.ErrSkip) {
		c.obs.ObserveStatement(sqlstore.Summary(query), time.Since(start), observedErr(err))
	}
	return res, err
}

func (c *observedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	start := time.Now()
	rows, err := c.driverConn.QueryContext(ctx, query, args)
	return observeRows(c.obs, sqlstore.Summary(query), start, rows, err)
}

func (c *observedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.driverConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ds, ok := st.(driverStmt)
	if !ok {
		return st, nil
	}
	return &observedStmt{ds, sqlstore.Summary(query), c.obs}, nil
}

func (c *observedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	start := time.Now()
	tx, err := c.driverConn.BeginTx(ctx, opts)
	c.obs.ObserveStatement("BEGIN", time.Since(start), observedErr(err))
	if err != nil {
		return nil, err
	}
	return &observedTx{tx, c.obs}, nil
}

// driverStmt is what database/sql uses of a modernc prepared statement.
type driverStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// observedStmt times a prepared statement's executions.
type observedStmt struct {
	driverStmt
	op  string // sqlstore.Summary of its query, once
	obs store.Observer
}

func (s *observedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	start := time.Now()
	res, err := s.driverStmt.ExecContext(ctx, args)
	s.obs.ObserveStatement(s.op, time.Since(start), observedErr(err))
	return res, err
}

func (s *observedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	start := time.Now()
	rows, err := s.driverStmt.QueryContext(ctx, args)
	return observeRows(s.obs, s.op, start, rows, err)
}

// observedTx times COMMIT and ROLLBACK.
type observedTx struct {
	driver.Tx
	obs store.Observer
}

func (t *observedTx) Commit() error {
	start := time.Now()
	err := t.Tx.Commit()
	t.obs.ObserveStatement("COMMIT", time.Since(start), observedErr(err))
	return err
}

func (t *observedTx) Rollback() error {
	start := time.Now()
	err := t.Tx.Rollback()
	t.obs.ObserveStatement("ROLLBACK", time.Since(start), observedErr(err))
	return err
}

// driverRows is a modernc result set, column types included.
type driverRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// observeRows observes a query that failed at once, or returns its rows
// wrapped so that it is observed when they are closed.
func observeRows(obs store.Observer, op string, start time.Time, rows driver.Rows, err error) (driver.Rows, error) {
	if errors.Is(err, driver.ErrSkip) {
		return rows, err
	}
	dr, ok := rows.(driverRows)
	if err != nil || !ok {
		obs.ObserveStatement(op, time.Since(start), observedErr(err))
		return rows, err
	}
	return &observedRows{driverRows: dr, op: op, start: start, obs: obs}, nil
}

// observedRows observes its query on Close, with the first error of Next.
type observedRows struct {
	driverRows
	op    string
	start time.Time
	obs   store.Observer
	err   error
	done  bool
}

func (r *observedRows) Next(dest []driver.Value) error {
	err := r.driverRows.Next(dest)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return err
}

func (r *observedRows) Close() error {
	err := r.driverRows.Close()
	if !r.done {
		r.done = true
		if r.err == nil {
			r.err = err
		}
		r.obs.ObserveStatement(r.op, time.Since(r.start), observedErr(r.err))
	}
	return err
}
