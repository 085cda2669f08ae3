// Package sqlstore writes each store operation once over a small Dialect value,
// so that the Postgres and SQLite stores share every rule (the bundle append,
// the key state changes, ...) and a fix lands in one place.
//
// Why a dialect value and not one SQL driver: Postgres stays on pgx natively
// (pgxpool, batches, advisory locks) and SQLite on database/sql with modernc and
// its single writer; each store package adapts its own connections to the small
// Querier, Writer and Tx interfaces here and fills a Dialect with what really
// differs (time encoding, error mapping, row locking, a few SQL spellings).
// This package imports no driver (internal/archtest checks it).
package sqlstore
