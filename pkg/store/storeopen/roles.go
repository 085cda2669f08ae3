package storeopen

import (
	"context"
	"errors"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// ErrNoRoles means a database role operation was asked of SQLite, which has
// no roles: the embedded default's audit log is as safe as its file.
var ErrNoRoles = errors.New("storeopen: SQLite has no database roles (the runtime-role grants apply to Postgres only)")

// GrantRuntime gives role the runtime privileges on the Postgres database the
// URL names (postgres.GrantRuntime); the URL's user is the migration owner.
// ErrNoRoles for SQLite.
func GrantRuntime(ctx context.Context, rawURL, role string) error {
	t, err := parse(rawURL)
	if err != nil {
		return err
	}
	if t.kind != Postgres {
		return ErrNoRoles
	}
	if role == "" {
		return fmt.Errorf("%w: empty role name", postgres.ErrRuntimeRole)
	}
	return postgres.GrantRuntime(ctx, t.dsn, role)
}
