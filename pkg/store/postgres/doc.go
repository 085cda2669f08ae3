// Package postgres is the production store.Store: Postgres through a pgx
// connection pool, shared safely by several CA replicas (audit appends and CRL
// numbers are serialised in the database, not in the process).
package postgres
