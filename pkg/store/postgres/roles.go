package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Two database roles (README, Production): the migration owner runs `ca
// migrate` and owns every table; the runtime role that `ca serve` connects as
// may read and write what the CA needs, but may only INSERT and SELECT on
// audit_log, so that the append-only rule (the audit_log_append_only and
// audit_log_no_truncate triggers) binds the CA too: a role that owns the
// table could ALTER TABLE ... DISABLE TRIGGER, one with UPDATE, DELETE,
// TRUNCATE or TRIGGER could change or drop entries once the trigger is gone.

// AuditLogExposure is how the connected role could alter or delete audit
// entries, if at all.
type AuditLogExposure struct {
	Role      string
	Superuser bool
	// Owner is set when the role owns audit_log or is a member of the role
	// that does (it may then ALTER TABLE ... DISABLE TRIGGER).
	Owner bool
	// Privileges are those of UPDATE, DELETE, TRUNCATE and TRIGGER the role
	// holds on audit_log.
	Privileges []string
}

// Alterable reports whether the role could alter or delete audit entries.
func (e AuditLogExposure) Alterable() bool {
	return e.Superuser || e.Owner || len(e.Privileges) > 0
}

// String names what makes the log alterable, or "append-only".
func (e AuditLogExposure) String() string {
	if !e.Alterable() {
		return "append-only"
	}
	var why []string
	if e.Superuser {
		why = append(why, "superuser")
	}
	if e.Owner {
		why = append(why, "owner of audit_log")
	}
	why = append(why, e.Privileges...)
	return strings.Join(why, ", ")
}

// AuditLogExposure reads the connected role's standing on audit_log from the
// catalog (pg_roles, pg_class's owner, has_table_privilege).
func (s *Store) AuditLogExposure(ctx context.Context) (AuditLogExposure, error) {
	var e AuditLogExposure
	var upd, del, trunc, trig bool
	err := s.pool.QueryRow(ctx, `
SELECT current_user::text,
       r.rolsuper,
       pg_has_role(current_user, c.relowner, 'MEMBER'),
       has_table_privilege(c.oid, 'UPDATE'),
       has_table_privilege(c.oid, 'DELETE'),
       has_table_privilege(c.oid, 'TRUNCATE'),
       has_table_privilege(c.oid, 'TRIGGER')
  FROM pg_class c, pg_roles r
 WHERE c.oid = to_regclass('audit_log') AND r.rolname = current_user`).
		Scan(&e.Role, &e.Superuser, &e.Owner, &upd, &del, &trunc, &trig)
	if err != nil {
		return AuditLogExposure{}, fmt.Errorf("postgres: reading the role's privileges on audit_log: %w", mapErr(err))
	}
	for _, p := range []struct {
		held bool
		name string
	}{{upd, "UPDATE"}, {del, "DELETE"}, {trunc, "TRUNCATE"}, {trig, "TRIGGER"}} {
		if p.held {
			e.Privileges = append(e.Privileges, p.name)
		}
	}
	return e, nil
}

// ErrRuntimeRole means GrantRuntime was asked for a role that cannot be a
// runtime role: unknown, a superuser, the connected (owning) role itself, or
// a member of the role that owns the tables.
var ErrRuntimeRole = errors.New("postgres: not a usable runtime role")

// GrantRuntime connects to dsn as the migration owner and gives role what
// `ca serve` needs in the current schema, and no more: USAGE on the schema;
// SELECT, INSERT, UPDATE and DELETE on every table except audit_log and
// audit_checkpoints (SELECT and INSERT only: both are append-only) and schema_migrations (SELECT only); USAGE and SELECT on
// its sequences. Earlier grants to role on those tables are revoked first,
// so running it again after a migration converges. Never TRUNCATE, TRIGGER,
// REFERENCES or ownership. One transaction: all or nothing.
func GrantRuntime(ctx context.Context, dsn, role string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errors.New("postgres: cannot parse the database URL")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", mapErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists, super, self, ownerMember bool
	var schema string
	err = conn.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), $1 = current_user::text, current_schema()::text`,
		role).Scan(&exists, &self, &schema)
	if err == nil && exists {
		err = conn.QueryRow(ctx, `
SELECT r.rolsuper, COALESCE((SELECT pg_has_role($1, c.relowner, 'MEMBER') FROM pg_class c WHERE c.oid = to_regclass('audit_log')), false)
  FROM pg_roles r WHERE r.rolname = $1`, role).Scan(&super, &ownerMember)
	}
	if err != nil {
		return fmt.Errorf("postgres: reading role %q: %w", role, mapErr(err))
	}
	switch {
	case !exists:
		return fmt.Errorf("%w: role %q does not exist (CREATE ROLE %s LOGIN first)", ErrRuntimeRole, role, role)
	case self:
		return fmt.Errorf("%w: %q is the role running the migration, which owns the tables; grant to a separate runtime role", ErrRuntimeRole, role)
	case super:
		return fmt.Errorf("%w: role %q is a superuser, which bypasses every grant and trigger", ErrRuntimeRole, role)
	case ownerMember:
		return fmt.Errorf("%w: role %q is a member of the role that owns audit_log, so it could disable its triggers", ErrRuntimeRole, role)
	}
	r := pgx.Identifier{role}.Sanitize()
	sc := pgx.Identifier{schema}.Sanitize()
	stmts := []string{
		`GRANT USAGE ON SCHEMA ` + sc + ` TO ` + r,
		`REVOKE ALL ON ALL TABLES IN SCHEMA ` + sc + ` FROM ` + r,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ` + sc + ` FROM ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + sc + ` TO ` + r,
		`REVOKE UPDATE, DELETE ON audit_log FROM ` + r,
		`REVOKE UPDATE, DELETE ON audit_checkpoints FROM ` + r, // append-only too (migration 10)
		`REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM ` + r,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ` + sc + ` TO ` + r,
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: grant: %w", mapErr(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres: grant to %q: %w", role, mapErr(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: grant to %q: %w", role, mapErr(err))
	}
	return nil
}
