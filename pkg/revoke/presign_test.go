package revoke

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// presignConfig has a tick far longer than the test, so that every
// response the test sees was signed by the pre-signer.
func presignConfig() Config {
	return Config{CRLValidity: time.Hour, OCSPValidity: time.Hour, Tick: 20 * time.Minute}
}

func TestIssuedLeavesGetTheirOCSPResponseWithoutATick(t *testing.T) {
	for _, b := range allBackends {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, b, presignConfig())
			p := f.publisher()
			f.refresh(p) // the leader's first tick issues the responder
			ctx, cancel := context.WithCancel(f.ctx)
			done := make(chan struct{})
			go func() { defer close(done); p.presignLoop(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			leaves := p.Presigning(f.iss)
			var issued []*issuer.Issued
			for i := range 40 {
				k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				got, err := leaves.Issue(f.ctx, issuer.Request{
					PublicKey: k.Public(), SPIFFEID: fmt.Sprintf("spiffe://example.org/presign/%d", i), TTL: 2 * time.Hour,
					PolicyRule: "test", PolicyVersion: "v1", Actor: "test", RequestID: "req",
				})
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				issued = append(issued, got)
			}
			for _, l := range issued {
				var stored store.OCSPResponse
				testkit.Eventually(t, 20*time.Second, "the pre-signed response for "+l.Serial, func() (err error) {
					stored, err = f.st.GetOCSPResponse(f.ctx, l.Serial)
					return err
				})
				parsed, err := ocsp.ParseResponseForCert(stored.DER, l.Certificate, f.inter)
				if err != nil {
					t.Fatalf("stored response for %s: %v", l.Serial, err)
				}
				if parsed.Status != ocsp.Good || stored.Revoked || !parsed.NextUpdate.Equal(parsed.ThisUpdate.Add(time.Hour)) {
					t.Errorf("response for %s: status %d, revoked %v, window %s..%s", l.Serial, parsed.Status, stored.Revoked, parsed.ThisUpdate, parsed.NextUpdate)
				}
				checkResponderCert(t, parsed.Certificate, f.inter)
			}
			// The leader's next tick finds nothing to sign.
			if rep := f.refresh(p); rep.OCSPSigned != 0 {
				t.Errorf("the tick after pre-signing signed %d responses, want 0", rep.OCSPSigned)
			}
		})
	}
}

func TestALatePreSignNeverReplacesARevocation(t *testing.T) {
	f := newFixture(t, sqliteBackend, presignConfig())
	p := f.publisher()
	f.refresh(p)
	l := f.leaf("revoked-first", 2*time.Hour)
	if _, _, err := f.revoker(p).Revoke(f.ctx, l.Serial, "keyCompromise", "test", "req"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	p.presign(f.ctx, []store.RevocationStatus{{Serial: l.Serial, IssuerID: l.IssuerID, NotAfter: l.NotAfter}})
	stored, err := f.st.GetOCSPResponse(f.ctx, l.Serial)
	if err != nil {
		t.Fatalf("GetOCSPResponse: %v", err)
	}
	parsed, err := ocsp.ParseResponseForCert(stored.DER, l.Certificate, f.inter)
	if err != nil || !stored.Revoked || parsed.Status != ocsp.Revoked {
		t.Fatalf("after a late pre-sign the stored response is revoked=%v status=%v (%v); want revoked", stored.Revoked, parsed, err)
	}
}

func TestPreSigningWaitsForTheResponderAndNeverBlocksIssuance(t *testing.T) {
	f := newFixture(t, sqliteBackend, presignConfig())
	p := f.publisher()
	// Before the leader's first tick there is no responder: nothing is
	// signed, and the tick signs it later.
	l := f.leaf("before-responder", 2*time.Hour)
	p.presign(f.ctx, []store.RevocationStatus{{Serial: l.Serial, IssuerID: l.IssuerID, NotAfter: l.NotAfter}})
	if _, err := f.st.GetOCSPResponse(f.ctx, l.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a response was stored without a responder: %v", err)
	}
	if rep := f.refresh(p); rep.OCSPSigned != 1 {
		t.Errorf("the first tick signed %d responses, want 1", rep.OCSPSigned)
	}
	// With nothing draining the queue, Issued drops notes past its bound
	// instead of blocking the issuing request.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range presignQueue + 100 {
			p.Issued(l.IssuerID, l.Serial, l.NotAfter)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Issued blocked on a full queue")
	}
	if n := len(p.issued); n != presignQueue {
		t.Errorf("queue holds %d notes, want its bound %d", n, presignQueue)
	}
}

func TestTheLeaderScansForOCSPWorkOnItsIntervalAfterAKickOrARevocationElsewhere(t *testing.T) {
	cfg := shortConfig()
	cfg.OCSPScanInterval = 10 * time.Minute
	f := newFixture(t, sqliteBackend, cfg)
	p := f.publisher()
	f.refresh(p)                                     // first scan: the responder
	elsewhere, err := NewRevoker(f.deps(), cfg, nil) // another replica's revoker
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		before func()
		want   int
	}{
		{"a tick within the interval does not scan", func() {}, 0},
		{"a tick after the interval scans", func() { f.clk.Advance(10 * time.Minute) }, 2}, // this leaf and the last
		{"a kick brings the scan forward", func() { p.Kick() }, 1},
		{"so does a revocation through another replica", func() {
			victim := f.leaf("victim", 2*time.Hour)
			if _, _, err := elsewhere.Revoke(f.ctx, victim.Serial, "superseded", "test", "req"); err != nil {
				t.Fatal(err)
			}
		}, 1}, // the new leaf; the victim's revoked response was stored by the revoker
		{"and then the ticks are quiet again", func() {}, 0},
	}
	for i, s := range steps {
		f.leaf(fmt.Sprintf("step-%d", i), 2*time.Hour) // issued without Issued: only a scan signs it
		s.before()
		if rep := f.refresh(p); rep.OCSPSigned != s.want {
			t.Errorf("%s: the tick signed %d responses, want %d", s.name, rep.OCSPSigned, s.want)
		}
	}
	// What the quiet tick left is signed by the next scan.
	f.clk.Advance(10 * time.Minute)
	if rep := f.refresh(p); rep.OCSPSigned != 1 {
		t.Errorf("the scan after the quiet tick signed %d responses, want 1", rep.OCSPSigned)
	}
}

func TestABacklogBeyondTheTickLimitGoesOnAtTheNextTick(t *testing.T) {
	cfg := shortConfig()
	cfg.OCSPScanInterval, cfg.OCSPBatch, cfg.OCSPTickLimit = 10*time.Minute, 2, 3
	f := newFixture(t, sqliteBackend, cfg)
	p := f.publisher()
	for i := range 7 {
		f.leaf(fmt.Sprintf("backlog-%d", i), 2*time.Hour)
	}
	for i, want := range []int{4, 3, 0} { // two batches pass the limit of 3; then the rest; then nothing
		if rep := f.refresh(p); rep.OCSPSigned != want {
			t.Errorf("tick %d signed %d responses, want %d", i+1, rep.OCSPSigned, want)
		}
	}
}
