package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// historyIssuer records a P-256 CA (the embedded default's key type) to
// generate history under.
func historyIssuer(t testing.TB, st store.Store) store.Issuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "workload-ca intermediate 2026-12", Organization: []string{"example.org"}},
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(400 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: []byte("0123456789abcdefghij"),
	}, &x509.Certificate{Subject: pkix.Name{CommonName: "workload-ca root"}, SubjectKeyId: []byte("root-ski-0123456789")}, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Issuer{ID: "int-history", Kind: store.KindRoot, KeyURI: "softkey:int-history", CertDER: der,
		SubjectKeyID: []byte("0123456789abcdefghij"), NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(400 * 24 * time.Hour),
		State: store.IssuerActive, CreatedAt: now, UpdatedAt: now}
	if err := st.InsertIssuer(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func historyStores() []struct {
	name string
	url  func(testing.TB) string
} {
	return []struct {
		name string
		url  func(testing.TB) string
	}{{"sqlite", testkit.SQLiteURL}, {"postgres", testkit.PostgresURL}}
}

func TestGendataHistoryIsWhatTheServerRecords(t *testing.T) {
	for _, b := range historyStores() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := storeopen.Open(ctx, b.url(t))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			is := historyIssuer(t, st)
			p := historyPlan{workloads: 3, renewEvery: time.Hour, span: 10 * time.Hour, ttl: 2 * time.Hour,
				reauth: 4 * time.Hour, ocspValid: 24 * time.Hour, batch: 7, seed: 1}
			if err := genHistory(ctx, st, p, is, "http://127.0.0.1:8080", "example.org", io.Discard); err != nil {
				t.Fatal(err)
			}
			certs, _, err := st.ListCertificates(ctx, store.CertificateFilter{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 30 {
				t.Fatalf("%d certificates, want 3 workloads x 10 hours", len(certs))
			}
			enrollments := 0
			for _, c := range certs {
				full, err := st.GetCertificate(ctx, c.Serial)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(full.Origin), `"token_claims"`) || strings.Contains(string(full.Provenance), `"origin"`) {
					t.Errorf("%s: origin %s provenance %s; want the lineage's enrollment kept once", c.Serial, full.Origin, full.Provenance)
				}
				if _, err := x509.ParseCertificate(full.DER); err != nil || !full.NotAfter.Equal(full.CreatedAt.Truncate(time.Second).Add(2*time.Hour)) {
					t.Errorf("%s: DER %v, not_after %v created %v", c.Serial, err, full.NotAfter, full.CreatedAt)
				}
				if full.RenewedFrom == "" {
					enrollments++
					continue
				}
				prev, err := st.GetCertificate(ctx, full.RenewedFrom)
				if err != nil || prev.SupersededBy != full.Serial || prev.Lineage != full.Lineage {
					t.Errorf("%s renews %s superseded by %q in lineage %q (%v)", full.Serial, full.RenewedFrom, prev.SupersededBy, prev.Lineage, err)
				}
				r, err := st.GetOCSPResponse(ctx, full.Serial)
				if err != nil {
					t.Fatal(err)
				}
				if resp, err := ocsp.ParseResponse(r.DER, nil); err != nil || resp.SerialNumber.Text(16) != full.Serial || resp.Status != ocsp.Good {
					t.Errorf("%s: OCSP response %v", full.Serial, err)
				}
			}
			if enrollments != 9 { // each workload enrolls at 0h, 4h and 8h
				t.Errorf("%d enrollments, want 9 (reauthenticate_after 4h over 10h)", enrollments)
			}
			entries, err := st.AuditEntries(ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var prev []byte
			for i, e := range entries {
				if e.Seq != int64(i+1) || string(e.PrevHash) != string(prev) || string(store.AuditHash(prev, e)) != string(e.Hash) {
					t.Fatalf("audit entry %d does not chain", e.Seq)
				}
				prev = e.Hash
			}
			if len(entries) != 30 {
				t.Errorf("%d audit entries, want one per certificate", len(entries))
			}
		})
	}
}
