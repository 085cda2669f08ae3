package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// tokenKeys lists the key labels on the shared SoftHSM token, read by this
// process as a third client of the token.
func (p *pubE2E) tokenKeys(t *testing.T) []string {
	t.Helper()
	// The replicas write the same SoftHSM token files meanwhile (their OCSP
	// responder keys), and SoftHSM, which rereads them at login, can fail a
	// login that meets a rewrite with CKR_GENERAL_ERROR: a failed open or
	// listing is tried again, a wrong list of keys is not.
	var labels []string
	testkit.Eventually(t, 15*time.Second, "opening the token and listing its keys", func() error {
		ks, err := hsm.OpenPKCS11(hsm.PKCS11Config{
			Module: p.vars["CA_PKCS11_MODULE"], TokenLabel: p.vars["CA_PKCS11_TOKEN"], PIN: p.vars["CA_PKCS11_PIN"],
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			return fmt.Errorf("open the token: %w", err)
		}
		defer ks.Close()
		labels, err = ks.KeyLabels(context.Background())
		return err
	})
	return labels
}

// Three rotations at once on two `ca serve` replicas of one Postgres and one
// SoftHSM token: exactly one prepares a generation, the others are refused
// with 409 rotation_in_progress and leave no key on the token. Abandoning it
// (REST and CLI) retires it, deletes its keys and unblocks rotation; an
// unsafe rollback is refused until forced.
func TestConcurrentRotationsAbandonAndUnsafeRollbackWithTheRealBinary(t *testing.T) {
	p := newPubE2E(t)
	a, b := p.serve(t, "A"), p.serve(t, "B")
	keysBefore := p.tokenKeys(t)

	nodes := []*pubNode{a, b, a}
	statuses := make([]int, len(nodes))
	bodies := make([][]byte, len(nodes))
	errs := make([]error, len(nodes))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, n.s.apiURL+"/v1/issuers/rotate", strings.NewReader(`{"root":true}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+p.admin)
			<-start
			res, err := n.e.client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			statuses[i] = res.StatusCode
			bodies[i], errs[i] = io.ReadAll(res.Body)
		}()
	}
	close(start)
	wg.Wait()
	var won []int
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("rotation %d: %v", i, errs[i])
		}
		switch statuses[i] {
		case http.StatusAccepted:
			won = append(won, i)
		case http.StatusConflict:
			var pr server.Problem
			if err := json.Unmarshal(bodies[i], &pr); err != nil || pr.Reason != server.ReasonRotationInProgress {
				t.Errorf("refused rotation %d: %s", i, bodies[i])
			}
		default:
			t.Errorf("rotation %d: %d %s", i, statuses[i], bodies[i])
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of 3 concurrent rotations succeeded (%v); want exactly one", len(won), statuses)
	}
	var rot server.RotateResponse
	if err := json.Unmarshal(bodies[won[0]], &rot); err != nil || rot.Root == nil {
		t.Fatalf("rotation answer %s", bodies[won[0]])
	}
	prepared := 0
	for id, s := range p.issuerStates(t, b) {
		if s == "prepared" {
			prepared++
			if id != rot.Root.ID && id != rot.Intermediate.ID && id != rot.CrossCertificate.ID {
				t.Errorf("prepared issuer %s is not of the winning rotation", id)
			}
		}
	}
	if prepared != 3 {
		t.Errorf("%d prepared issuers; want the one generation's three", prepared)
	}
	// Exactly the winner's two keys are new on the token: the refused
	// rotations generated none.
	if got := p.tokenKeys(t); len(got) != len(keysBefore)+2 {
		t.Errorf("token keys %v (before %v); want exactly the winner's new root and intermediate keys", got, keysBefore)
	}

	// Abandon over REST on the other replica.
	status, raw := b.operator(t, p.admin, http.MethodPost, "/v1/issuers/abandon", `{"id":"`+rot.Root.ID+`"}`)
	var ab server.AbandonResponse
	if err := json.Unmarshal(raw, &ab); status != http.StatusOK || err != nil || len(ab.Abandoned) != 3 || len(ab.KeysDeleted) != 2 || len(ab.KeysLeft) != 0 {
		t.Fatalf("abandon: %d %s", status, raw)
	}
	if got := p.tokenKeys(t); len(got) != len(keysBefore) {
		t.Errorf("token keys after abandon %v; want the ones before the rotation %v", got, keysBefore)
	}
	if roots := awaitSequence(t, a.s, ab.BundleSequence); roots != 1 {
		t.Errorf("bundle after abandon has %d roots, want 1", roots)
	}

	// Rotation works again; the CLI abandons too.
	out, errOut, code := runCA(t, p.vars, "issuers", "rotate", "--root", "--actor", "e2e-admin")
	if code != 0 || !strings.Contains(out, "prepared") {
		t.Fatalf("ca issuers rotate --root after abandon: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := runCA(t, p.vars, "issuers", "abandon", "--id", "int-1"); code == 0 || !strings.Contains(errOut, "not prepared") {
		t.Errorf("ca issuers abandon --id int-1: %d %s", code, errOut)
	}
	out, errOut, code = runCA(t, p.vars, "issuers", "abandon", "--actor", "e2e-admin")
	if code != 0 || !strings.Contains(out, "abandoned") {
		t.Fatalf("ca issuers abandon: %d %s %s", code, out, errOut)
	}
	if got := p.tokenKeys(t); len(got) != len(keysBefore) {
		t.Errorf("token keys after the CLI abandon %v; want %v", got, keysBefore)
	}

	// The first version predates the first JWT-SVID key: rolling back to it
	// would drop the active key.
	first := p.bundleVersions(t, a)
	oldest := first[len(first)-1]
	if len(oldest.JWTKeyIDs) != 0 {
		t.Skipf("the first bundle version already has JWT keys %v", oldest.JWTKeyIDs)
	}
	to := jsonInt64(oldest.Sequence)
	status, raw = a.operator(t, p.admin, http.MethodPost, "/v1/bundle/rollback", `{"to_sequence":`+to+`}`)
	var pr server.Problem
	if err := json.Unmarshal(raw, &pr); status != http.StatusConflict || err != nil || pr.Reason != server.ReasonRollbackUnsafe || !strings.Contains(pr.Detail, "JWT-SVID key") {
		t.Errorf("unsafe rollback over REST: %d %s", status, raw)
	}
	if out, errOut, code := runCA(t, p.vars, "bundle", "rollback", "--to", to); code == 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("unsafe ca bundle rollback: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := runCA(t, p.vars, "bundle", "rollback", "--to", to, "--force", "--actor", "e2e-admin"); code != 0 || !strings.Contains(out, "republishes version "+to) {
		t.Errorf("ca bundle rollback --force: %d %s %s", code, out, errOut)
	}
}

func jsonInt64(n int64) string { b, _ := json.Marshal(n); return string(b) }
