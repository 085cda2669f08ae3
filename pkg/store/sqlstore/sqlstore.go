package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Queries are written once, with Postgres placeholders ($1, $2, ... a number
// may repeat); a dialect whose driver spells them otherwise rewrites them in
// its Querier. No query here has a '$' in a string literal.

// Dialect is what differs between the engines for the operations here.
type Dialect struct {
	// Name prefixes every error message: "postgres", "sqlite".
	Name string
	// Time encodes t as a query argument (Postgres: a timestamptz in UTC
	// truncated to microseconds; SQLite: unix microseconds). Ops.time maps
	// a zero t to NULL first. Columns read back through NullTime, which
	// takes either encoding.
	Time func(t time.Time) any
	// MapErr wraps a driver error so that store.ErrConflict and
	// store.ErrUnavailable are recognisable; nil stays nil.
	MapErr func(error) error
	// IsNoRows tells a single-row query that found no row.
	IsNoRows func(error) bool
	// IsForeignKeyViolation tells a reference to a missing row.
	IsForeignKeyViolation func(error) bool
	// ForUpdate follows a SELECT of a row the transaction then changes:
	// " FOR UPDATE" on Postgres; "" on SQLite, whose single writer
	// (BEGIN IMMEDIATE) already serialises the transaction.
	ForUpdate string
	// ForShare follows a SELECT of a row the transaction reads and must not
	// see change before it commits (a writer's ForUpdate waits for it):
	// " FOR SHARE" on Postgres; "" on SQLite, for the same reason as
	// ForUpdate.
	ForShare string
	// Least and Greatest name the two-argument scalar minimum and maximum
	// ("LEAST"/"GREATEST" on Postgres, "min"/"max" on SQLite).
	Least, Greatest string
	// AddMicros is the SQL for a time parameter plus a column of
	// microseconds.
	AddMicros func(timeParam, micros string) string
	// HasPrefix is the SQL for a text column starting with the pattern
	// param holds, which PrefixPattern makes of a literal prefix so that
	// the match is a range of the column's index (Postgres: LIKE 'p%' on a
	// COLLATE "C" column; SQLite: GLOB 'p*', case-sensitive as LIKE is not).
	HasPrefix     func(column, param string) string
	PrefixPattern func(prefix string) string
	// Text casts a parameter to the key columns' text type where the engine
	// cannot infer it (a recursive query's seed): Postgres
	// $1::text COLLATE "C"; SQLite needs none.
	Text func(param string) string
	// CertColumns is the select list of a certificates row that ScanCert
	// reads, followed by any extra destinations.
	CertColumns string
	ScanCert    func(row Row, extra ...any) (store.Certificate, error)
	// InBatch is the SQL for column in the rows a LIMITed subquery selects:
	// Postgres column = ANY (ARRAY(subquery)), which runs the subquery once
	// and then probes the key; SQLite column IN (subquery).
	InBatch func(column, subquery string) string
	// SkipLocked follows the SELECT of a prune batch: " FOR UPDATE SKIP
	// LOCKED" on Postgres, so that a batch never waits for a writer; "" on
	// SQLite.
	SkipLocked string
	// RowID names a row's physical address ("ctid", "rowid") for a table
	// without a key.
	RowID string
	// InArray is the SQL for column in the text array param holds, which
	// Array makes of a Go slice: Postgres column = ANY ($n) over a text[];
	// SQLite column IN (SELECT value FROM json_each($n)) over a JSON array.
	InArray func(column, param string) string
	Array   func(v []string) any
	// ArchiveWindow is how RemoveAuditPrefix lets the audit log's
	// append-only guard (migration 13) pass a DELETE of the entries up to
	// through: open before the deletes, close after them.
	ArchiveWindow func(through int64) (open, close Stmt)
}

// CheckPrune refuses a prune batch without a cut-off or a positive limit
// (store.ErrInvalidQuery).
func (d Dialect) CheckPrune(what string, before time.Time, limit int) error {
	if before.IsZero() || limit <= 0 {
		return fmt.Errorf("%s: %s: want a cut-off and a positive limit: %w", d.Name, what, store.ErrInvalidQuery)
	}
	return nil
}

// Row is one result row: pgx.Row, *sql.Row.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set; Close may be called more than once.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs statements: a connection pool or a transaction. Errors are the
// driver's, unmapped.
type Querier interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Writer is where writes go (SQLite: its one write connection).
type Writer interface {
	Querier
	// InTx runs fn in a transaction and commits it if fn returns nil. fn
	// returns mapped errors; the dialect maps begin and commit errors.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// ExecAll runs stmts as one atomic unit and returns how many rows each
	// changed (Postgres: one pipeline with a single Sync, an implicit
	// transaction, one round trip; SQLite: one write transaction). Its
	// errors are mapped. When a statement failed, counts holds the counts
	// of those before it, so that stmts[len(counts)] is the one; counts is
	// nil, or as long as stmts, when the unit failed as a whole (begin,
	// commit).
	ExecAll(ctx context.Context, stmts []Stmt) (counts []int64, err error)
}

// Lock names a lock a transaction takes for the operations of one kind
// across replicas.
type Lock int

// The locks.
const (
	// LockRotation serialises RecordRotation and AbandonIssuers.
	LockRotation Lock = 1
	// LockAuditArchive serialises RemoveAuditPrefix calls (not appends).
	LockAuditArchive Lock = 2
)

// Stmt is one statement of a Batch.
type Stmt struct {
	Query string
	Args  []any
}

// Tx is a write transaction.
type Tx interface {
	Querier
	// Lock takes l until the transaction ends (Postgres: an advisory lock;
	// SQLite: nothing, BEGIN IMMEDIATE already serialises writers). The
	// error is the driver's, unmapped.
	Lock(ctx context.Context, l Lock) error
	// Batch runs stmts in order (Postgres pipelines them); the first
	// error, unmapped.
	Batch(ctx context.Context, stmts []Stmt) error
	// AppendAudit appends e to the audit hash chain inside the
	// transaction; its errors are mapped.
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// Ops implements the store operations written once here. A store embeds it.
type Ops struct {
	d Dialect
	r Querier // reads outside a transaction
	w Writer  // writes
}

// New returns the operations over d, reading through r and writing through w
// (Postgres passes its pool as both).
func New(d Dialect, r Querier, w Writer) *Ops {
	return &Ops{d: d, r: r, w: w}
}

// time encodes t for a nullable column: NULL when t is zero.
func (o *Ops) time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return o.d.Time(t)
}

// forUpdateOf locks the rows of one table of a join ("" where ForUpdate is).
func (o *Ops) forUpdateOf(table string) string {
	if o.d.ForUpdate == "" {
		return ""
	}
	return o.d.ForUpdate + " OF " + table
}

// scanCert reads a CertColumns row.
func (o *Ops) scanCert(row Row) (store.Certificate, error) { return o.d.ScanCert(row) }

// errorf formats an error prefixed with the dialect's name.
func (o *Ops) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", o.d.Name, fmt.Errorf(format, args...))
}

// NullTime scans a nullable time column in either encoding (a time.Time from
// Postgres, unix microseconds from SQLite): UTC, zero if NULL.
type NullTime struct {
	Time  time.Time
	Valid bool // not NULL
}

// Scan implements sql.Scanner, which pgx honours as well.
func (t *NullTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		t.Time, t.Valid = time.Time{}, false
	case time.Time:
		t.Time, t.Valid = v.UTC(), true
	case int64:
		t.Time, t.Valid = time.UnixMicro(v).UTC(), true
	default:
		return fmt.Errorf("sqlstore: cannot scan %T into a time", src)
	}
	return nil
}

// Collect reads every row of rows with scan and closes rows, as
// pgx.CollectRows does. It returns nil for no rows, and the first error of
// scan or of the iteration unwrapped: mapping it is the caller's.
func Collect[T any](rows Rows, scan func(Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var list []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return list, nil
}

// queryAll runs a query on q and collects its rows with scan; errors mapped.
func queryAll[T any](ctx context.Context, o *Ops, q Querier, scan func(Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, o.d.MapErr(err)
	}
	list, err := Collect(rows, scan)
	if err != nil {
		return nil, o.d.MapErr(err)
	}
	return list, nil
}
