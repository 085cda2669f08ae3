package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// auditLogExposer tells how the connected database role could change the
// audit log; *postgres.Store fits (SQLite has no roles).
type auditLogExposer interface {
	AuditLogExposure(ctx context.Context) (postgres.AuditLogExposure, error)
}

var _ auditLogExposer = (*postgres.Store)(nil)

// checkAuditLogRole runs once at `ca serve` start: when the database role can
// alter or delete audit entries (owner, superuser, UPDATE, DELETE, TRUNCATE
// or TRIGGER on audit_log) it logs a warning that says how to fix it. It
// returns the value /readyz reports as checks.audit_log.
func checkAuditLogRole(ctx context.Context, st any, log *slog.Logger) string {
	e, ok := st.(auditLogExposer)
	if !ok {
		return server.AuditLogNoRoles
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	exp, err := e.AuditLogExposure(ctx)
	if err != nil {
		log.Warn("cannot tell whether the database role could alter the audit log", "err", err)
		return server.AuditLogUnknown
	}
	if exp.Alterable() {
		log.Warn("the database role can alter or delete audit entries: the append-only audit log binds only others; "+
			"run ca serve as a runtime role (ca migrate up --grant-runtime ROLE, as the migration owner)",
			"role", exp.Role, "because", exp.String())
		return server.AuditLogAlterable
	}
	log.Info("the database role may only append to the audit log", "role", exp.Role)
	return server.AuditLogAppendOnly
}
