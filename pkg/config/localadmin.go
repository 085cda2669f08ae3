package config

import "strconv"

// LocalAdminEnv overrides dashboard.local_admin: "true" or "false" (any
// strconv.ParseBool spelling); anything else is a configuration error.
const LocalAdminEnv = "CA_DASHBOARD_LOCAL_ADMIN"

func (c *Config) applyLocalAdminEnv(env Env) error {
	v, ok := env(LocalAdminEnv)
	if !ok || v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fieldErr(LocalAdminEnv, "must be true or false, not %q", v)
	}
	c.Dashboard.LocalAdmin = b
	return nil
}

// LocalAdminAllowed reports whether the dashboard may offer the local-admin
// sign-in: dashboard.local_admin is set AND the development policy is in use
// (the development setup, software keys and SQLite, with no policy_file).
// A real policy file, Postgres or a PKCS#11 module each turn it off,
// whatever the setting says.
func (c *Config) LocalAdminAllowed() bool {
	return c.Dashboard.LocalAdmin && c.DevelopmentMode() && c.PolicyFile == ""
}
