package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

type healthBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// healthz is liveness: the process answers. It checks nothing else, so that
// an unreachable database does not get the process restarted.
func (rt *Routes) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// readyz is readiness: the database and the key store both answer a ping
// within ReadyTimeout each. A failure is a 503 problem whose reason names the
// dependency (store_unavailable, hsm_unavailable).
func (rt *Routes) readyz(w http.ResponseWriter, r *http.Request) error {
	checks := []struct {
		name   string
		dep    Pinger
		reason Reason
		detail string
	}{
		{"store", rt.d.Store, ReasonStoreUnavailable, "the database does not answer"},
		{"hsm", rt.d.Keys, ReasonHSMUnavailable, "the key store does not answer"},
	}
	for _, c := range checks {
		ctx, cancel := context.WithTimeout(r.Context(), rt.d.ReadyTimeout)
		err := c.dep.Ping(ctx)
		cancel()
		if errors.Is(err, hsm.ErrPINRefused) {
			return err // 503 hsm_pin_refused (classify): no login until a reload
		}
		if err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Reason: c.reason, Detail: c.detail, Err: err}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	ok := map[string]string{"store": "ok", "hsm": "ok"}
	if rt.d.AuditLogRole != "" {
		ok["audit_log"] = rt.d.AuditLogRole // informative; never fails readiness
	}
	return writeJSON(w, http.StatusOK, healthBody{Status: "ready", Checks: ok})
}
