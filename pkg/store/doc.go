// Package store is the CA's persistence behind one interface, with two
// implementations that pass the same conformance suite: Postgres through pgx for
// production and SQLite (modernc.org/sqlite, no cgo) for the embedded default.
// It never imports the layers above it.
package store
