package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// runEmbedded measures `ca serve`'s embedded default: no CA_DATABASE_URL and
// no PKCS#11 module, so SQLite and software keys in a data directory. It
// runs the enroll concurrencies, the overload run, renewal over mTLS and
// JWT-SVID minting.
func runEmbedded(ctx context.Context, o options, dir string, ti *tokenIssuer, rep *report, logf func(string, ...any)) error {
	dataDir := filepath.Join(dir, "embedded-data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	vars := map[string]string{
		"CA_DATA_DIR": dataDir, "CA_POLICY_FILE": ti.policyPath, "CA_TRUST_DOMAIN": benchTrustDomain,
	}
	srv, err := startServer(ctx, o, vars, "serve-embedded")
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("embedded ca serve pid %d: api %s, public %s", srv.pid(), srv.apiURL, srv.publicURL)
	db, err := newSQLiteProbe(filepath.Join(dataDir, "ca.db"))
	if err != nil {
		return err
	}
	defer db.close()
	b := &bench{backend: "embedded", o: o, srv: srv, ti: ti, rep: rep, logf: logf, db: db, metricsClient: plainClient(1)}
	return b.embeddedScenarios(ctx)
}

func (b *bench) embeddedScenarios(ctx context.Context) error {
	o, srv := b.o, b.srv
	api := srv.apiClient(o.overloadConc)
	keep, w, _, err := b.warmUp(ctx, api, 1500)
	if err != nil {
		return err
	}
	b.logf("embedded warm-up: %.0f enrollments/s", w.Throughput)
	inputsFor := func(rate float64) int { return int(rate*o.duration.Seconds()*2.5) + 500 }
	rate := max(w.Throughput, 400)
	for _, c := range o.embeddedConc {
		in, err := b.ti.enrollInputs(inputsFor(rate * 1.5))
		if err != nil {
			return err
		}
		r, err := b.measure(ctx, "enroll", c, 0, srv.pid(), true, func() (*recorder, time.Duration) {
			return closedLoop(ctx, c, o.duration, enrollFn(api, srv.apiURL, in, keep))
		})
		if err != nil {
			return err
		}
		rate = max(rate, r.Throughput)
	}
	if o.enrollOnly {
		return nil
	}
	in, err := b.ti.enrollInputs(inputsFor(rate*2) + int(rate*4))
	if err != nil {
		return err
	}
	// Open the overload run's connections first (unmeasured): the clients
	// keep theirs alive, as in the other runs.
	closedLoop(ctx, o.overloadConc, 2*time.Second, enrollFn(api, srv.apiURL, in, nil))
	if _, err := waitOCSPDrained(ctx, b.db, 3*time.Minute); err != nil {
		return err
	}
	if _, err := b.measure(ctx, "enroll overload", o.overloadConc, 0, srv.pid(), true, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.overloadConc, o.duration, enrollFn(api, srv.apiURL, in, nil))
	}); err != nil {
		return err
	}

	certs := keep.all()
	if len(certs) < o.conc {
		return fmt.Errorf("only %d certificates kept for renewal", len(certs))
	}
	var minters []*http.Client
	for _, c := range certs[o.conc:min(len(certs), 2*o.conc)] {
		minters = append(minters, srv.apiClient(4, c.tlsCrt))
	}
	csrs, err := parallelMake(inputsFor(rate), newCSR)
	if err != nil {
		return err
	}
	if _, err := b.measure(ctx, "renew (mTLS)", o.conc, 0, srv.pid(), true, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, renewFn(srv, renewers(certs[:o.conc]), &pool[csrKey]{items: csrs}))
	}); err != nil {
		return err
	}
	if len(minters) == 0 {
		return fmt.Errorf("only %d certificates kept for JWT-SVID minting", len(certs))
	}
	if _, err := b.measure(ctx, "JWT-SVID (mTLS)", o.conc, 0, srv.pid(), false, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, jwtFn(minters, srv.apiURL))
	}); err != nil {
		return err
	}
	return nil
}

// jwtFn mints a JWT-SVID over mTLS with one of the clients (round robin).
func jwtFn(clients []*http.Client, apiURL string) requestFunc {
	var next atomic.Int64
	body, _ := json.Marshal(map[string]any{"audience": []string{"bench-audience"}})
	return func(ctx context.Context) error {
		c := clients[int(next.Add(1))%len(clients)]
		_, err := postJSON(ctx, c, apiURL+"/v1/jwt", "", body, http.StatusOK)
		return err
	}
}
