package main

import (
	"log/slog"

	"github.com/workload-ca/workload-ca/pkg/config"
)

// localAdminSignIn decides whether the dashboard offers the local-admin
// sign-in (every role, no IdP, browsers on loopback only): only with the
// development policy in use and dashboard.local_admin (or
// CA_DASHBOARD_LOCAL_ADMIN) set. Asked for anywhere else it stays off, with
// a warning; in the development setup without the setting, the log says how
// to turn it on.
func localAdminSignIn(cfg *config.Config, log *slog.Logger) bool {
	switch {
	case cfg.LocalAdminAllowed():
		log.Warn("dashboard: the local-admin sign-in is on for browsers on loopback (development policy, dashboard.local_admin)")
		return true
	case cfg.Dashboard.LocalAdmin:
		log.Warn("dashboard.local_admin is ignored: the local-admin sign-in needs the development policy (software keys, SQLite and no policy_file)",
			"policy_file", cfg.PolicyFile, "database", cfg.DatabaseDriver(), "pkcs11", cfg.PKCS11.Module != "")
	case cfg.DevelopmentMode() && cfg.PolicyFile == "":
		log.Info("dashboard: the local-admin sign-in is off; set dashboard.local_admin: true (or " + config.LocalAdminEnv + "=true) to use it in this development setup")
	}
	return false
}
