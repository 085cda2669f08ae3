// Package sqlite is the embedded default store.Store: one SQLite file
// (modernc.org/sqlite, no cgo) in the data directory, for a single `ca serve`
// process. Writes go through one connection, so they are serialised in the
// process; reads use a small pool of read-only connections alongside (WAL).
package sqlite
