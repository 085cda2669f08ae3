package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sumCounter adds up the counter family name's series whose labels include
// want.
func sumCounter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func TestUnauthenticatedDenialFloodsAreAuditedWithinTheLimitAndSaySoLater(t *testing.T) {
	jf := newJWTFixture(t, true)
	anon := jf.rs.client()
	post := func(c *http.Client, path, bearer, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, jf.rs.apiURL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", path, res.StatusCode, want)
		}
	}
	// 150 refusals nobody authenticated for, at one instant: a garbage
	// token, no client certificate for renew and jwt.
	_, csr := csrPEM(t)
	enrollBody, _ := json.Marshal(map[string]string{"csr": csr})
	for range 35 {
		post(anon, "/v1/enroll", "not-a-token", string(enrollBody), http.StatusUnauthorized)
		post(anon, "/v1/enroll", "", string(enrollBody), http.StatusUnauthorized)
	}
	for range 40 {
		post(anon, "/v1/renew", "", `{"csr": ""}`, http.StatusUnauthorized)
		post(anon, "/v1/jwt", "", `{"audience": ["x"]}`, http.StatusUnauthorized)
	}
	if n := len(jf.records.denials()); n != denialBurst {
		t.Fatalf("%d denials audited out of 150 at one instant, want the burst of %d", n, denialBurst)
	}
	for action, want := range map[string]float64{"enroll": 70, "renew": 40} {
		if got := sumCounter(t, jf.reg, "ca_enroll_decisions_total", map[string]string{"action": action, "decision": "deny"}); got != want {
			t.Errorf("ca_enroll_decisions_total{action=%s,decision=deny} = %v, want %v: metrics count every denial", action, got, want)
		}
	}
	if got := sumCounter(t, jf.reg, "ca_jwt_decisions_total", map[string]string{"decision": "deny"}); got != 40 {
		t.Errorf("ca_jwt_decisions_total{decision=deny} = %v, want 40", got)
	}
	if got := sumCounter(t, jf.reg, "ca_denials_unaudited_total", nil); got != 50 {
		t.Errorf("ca_denials_unaudited_total = %v, want 50", got)
	}

	// A second later the budget has refilled a little; the next audited
	// denial says how many were skipped.
	jf.clock.Advance(time.Second)
	post(anon, "/v1/enroll", "not-a-token", `{"csr": ""}`, http.StatusBadRequest) // unauthenticated too
	ds := jf.records.denials()
	last := ds[len(ds)-1]
	var details map[string]any
	if err := json.Unmarshal(last.Details, &details); err != nil {
		t.Fatal(err)
	}
	if last.Action != "enroll" || details["unaudited_before"] != float64(50) {
		t.Errorf("first audited denial after the flood: action %s, details %s; want unaudited_before 50", last.Action, last.Details)
	}

	// Spend the rest of the budget; a workload that authenticated with its
	// current certificate is still audited when it is refused.
	for range 2 * denialRate {
		post(anon, "/v1/jwt", "", `{"audience": ["x"]}`, http.StatusUnauthorized)
	}
	before := len(jf.records.denials())
	post(jf.rs.client(jf.workload), "/v1/jwt", "", `{"audience": []}`, http.StatusBadRequest)
	if n := len(jf.records.denials()) - before; n != 1 {
		t.Errorf("an authenticated workload's refusal with the budget spent: %d audit entries, want 1", n)
	}
}
