package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ ResponderStore = store.Store(nil)

func TestOCSPResponderLifecycleOnRealComponents(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			keys, st := b.open(t)
			clk := clock.NewFake(time.Now())
			d := Deps{Keys: keys, Store: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
			res, err := Init(ctx, d, integrationConfig())
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			inter, err := x509.ParseCertificate(res.Intermediate.CertDER)
			if err != nil {
				t.Fatal(err)
			}
			rs := &Responders{Keys: keys, Store: st, Clock: clk, Config: ResponderConfig{Lifetime: 48 * time.Hour}}

			if _, err := rs.Load(ctx, res.Intermediate.ID); !errors.Is(err, ErrNoResponder) {
				t.Fatalf("Load before any responder: %v, want ErrNoResponder", err)
			}
			first, created, err := rs.Ensure(ctx, res.Intermediate.ID)
			if err != nil || !created {
				t.Fatalf("first Ensure = %v, %v; want a new responder", created, err)
			}
			checkResponderProfile(t, first.Certificate, inter)
			if !first.Certificate.NotAfter.Before(inter.NotAfter) {
				t.Errorf("responder expires %s, not before its issuer (%s)", first.Certificate.NotAfter, inter.NotAfter)
			}
			if got := first.Certificate.NotAfter.Sub(clk.Now()); got > 48*time.Hour || got < 47*time.Hour {
				t.Errorf("responder lifetime %s, want about 48h", got)
			}

			again, created, err := rs.Ensure(ctx, res.Intermediate.ID)
			if err != nil || created || again.Record.Serial != first.Record.Serial {
				t.Fatalf("Ensure with a fresh responder = %s, %v, %v; want the same one", again.Record.Serial, created, err)
			}
			loaded, err := rs.Load(ctx, res.Intermediate.ID)
			if err != nil || loaded.Record.Serial != first.Record.Serial {
				t.Fatalf("Load = %+v, %v", loaded.Record, err)
			}

			clk.Advance(33 * time.Hour) // 15h left < RenewBefore (16h)
			renewed, created, err := rs.Ensure(ctx, res.Intermediate.ID)
			if err != nil || !created || renewed.Record.Serial == first.Record.Serial {
				t.Fatalf("Ensure within RenewBefore = %v, %v; want a new responder", created, err)
			}
			checkResponderProfile(t, renewed.Certificate, inter)

			entries, err := st.AuditEntries(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range entries {
				if e.Action == "ocsp_responder" {
					n++
				}
			}
			if n != 2 {
				t.Errorf("%d ocsp_responder audit entries, want 2", n)
			}
		})
	}
}

func checkResponderProfile(t *testing.T, cert, parent *x509.Certificate) {
	t.Helper()
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Errorf("EKU = %v, want only OCSPSigning", cert.ExtKeyUsage)
	}
	noCheck := false
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDOCSPNoCheck) {
			noCheck = bytes.Equal(e.Value, asn1.NullBytes) && !e.Critical
		}
	}
	if !noCheck {
		t.Error("no non-critical id-pkix-ocsp-nocheck extension with a NULL value")
	}
	if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA %v, KeyUsage %v; want an end entity with digitalSignature", cert.IsCA, cert.KeyUsage)
	}
	if err := cert.CheckSignatureFrom(parent); err != nil {
		t.Errorf("responder not signed by the intermediate: %v", err)
	}
	if !bytes.Equal(cert.AuthorityKeyId, parent.SubjectKeyId) {
		t.Error("AKI does not match the intermediate's SKI")
	}
}

func TestResponderConfigRefusesNonsense(t *testing.T) {
	cases := []struct {
		name string
		cfg  ResponderConfig
	}{
		{"renewal window as long as the lifetime is refused", ResponderConfig{Lifetime: time.Hour, RenewBefore: time.Hour}},
		{"negative lifetime is refused", ResponderConfig{Lifetime: -time.Hour}},
		{"unknown key type is refused", ResponderConfig{KeyType: "dsa-1024"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("withDefaults(%+v) = %v, want ErrInvalidConfig", tc.cfg, err)
			}
		})
	}
}

// A responder for an issuer retired meanwhile (a rotation abandoned on
// another replica while this one's publisher was issuing it one) is refused
// by the store, and its freshly generated key does not stay on the token:
// CI once found ocsp-int-4's key left after `ca issuers abandon`.
func TestOCSPResponderForARetiredIssuerLeavesNoKey(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			keys, st := b.open(t)
			clk := clock.NewFake(time.Now())
			d := Deps{Keys: keys, Store: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
			res, err := Init(ctx, d, integrationConfig())
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			lister := keys.(interface {
				KeyLabels(context.Context) ([]string, error)
			})
			before, err := lister.KeyLabels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SetIssuerState(ctx, res.Intermediate.ID, store.IssuerActive, store.IssuerRetired, clk.Now()); err != nil {
				t.Fatalf("retire: %v", err)
			}
			rs := &Responders{Keys: keys, Store: st, Clock: clk}
			if _, _, err := rs.Ensure(ctx, res.Intermediate.ID); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Ensure for a retired issuer: %v, want store.ErrConflict", err)
			}
			after, err := lister.KeyLabels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(before, after) {
				t.Errorf("key labels after a refused responder %v; want %v", after, before)
			}
			if _, err := st.LatestOCSPResponder(ctx, res.Intermediate.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a responder was recorded for a retired issuer: %v", err)
			}
		})
	}
}
