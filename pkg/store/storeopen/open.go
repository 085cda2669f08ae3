package storeopen

import (
	"context"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

// Open opens the store the URL names: postgres:// or postgresql:// for
// Postgres, sqlite:PATH or sqlite://PATH for a SQLite file (created 0600 if
// missing). It refuses a database whose schema is not exactly
// migrations.Version, or is dirty, with an error wrapping
// store.ErrSchemaMismatch that says to run `ca migrate up`; an unreachable
// database gives store.ErrUnavailable; an unknown scheme gives ErrBadURL.
func Open(ctx context.Context, rawURL string) (store.Store, error) {
	return OpenObserved(ctx, rawURL, nil)
}

// OpenObserved is Open with every statement the store sends to its
// database, and every connection it opens, told to obs (store.Observer;
// pkg/telemetry times them). A nil obs is Open.
func OpenObserved(ctx context.Context, rawURL string, obs store.Observer) (store.Store, error) {
	t, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case Postgres:
		s, err := postgres.OpenObserved(ctx, t.dsn, obs)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		s, err := sqlite.OpenObserved(ctx, t.dsn, obs)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// OpenReadOnly is Open for tools that must not change the database (`ca
// audit verify`): it never creates a SQLite file (a missing one is an
// error wrapping os.ErrNotExist) and never migrates, and the database
// refuses writes through the store (SQLite query_only, Postgres
// default_transaction_read_only). A schema that is not exactly
// migrations.Version is store.ErrSchemaMismatch, as for Open.
func OpenReadOnly(ctx context.Context, rawURL string) (store.Store, error) {
	t, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case Postgres:
		s, err := postgres.OpenReadOnly(ctx, t.dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		s, err := sqlite.OpenReadOnly(ctx, t.dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}
