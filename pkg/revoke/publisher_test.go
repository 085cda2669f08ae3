package revoke

import (
	"bytes"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestCRLLifecycleOnRealComponents(t *testing.T) {
	for _, b := range allBackends {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, b, shortConfig())
			reg := prometheus.NewRegistry()
			d := f.deps()
			d.Metrics = reg
			p, err := NewPublisher(d, f.cfg)
			if err != nil {
				t.Fatal(err)
			}
			rv := f.revoker(p)

			long1, long2, short, good := f.leaf("long1", 3*time.Hour), f.leaf("long2", 3*time.Hour), f.leaf("short", 20*time.Minute), f.leaf("good", 3*time.Hour)
			rep := f.refresh(p)
			if !rep.Leader || len(rep.CRLs) != 1 || rep.CRLs[0].Number != 1 || rep.CRLs[0].Entries != 0 {
				t.Fatalf("first tick = %+v; want CRL 1 with no entries", rep)
			}
			if rl := f.storedCRL(); len(rl.RevokedCertificateEntries) != 0 || !bytes.Equal(rl.AuthorityKeyId, f.inter.SubjectKeyId) {
				t.Fatalf("first CRL has %d entries, AKI %x (want 0, %x)", len(rl.RevokedCertificateEntries), rl.AuthorityKeyId, f.inter.SubjectKeyId)
			}
			if rep := f.refresh(p); len(rep.CRLs) != 0 {
				t.Fatalf("a tick with nothing due published %+v", rep.CRLs)
			}

			revokedAt := f.clk.Now()
			for _, r := range []struct {
				serial, reason string
			}{{long1.Serial, "keyCompromise"}, {long2.Serial, "superseded"}, {short.Serial, "cessationOfOperation"}} {
				cert, already, err := rv.Revoke(f.ctx, strings.ToUpper(r.serial), r.reason, "operator@example.org", "req-revoke")
				if err != nil || already || cert.Status != store.CertRevoked || cert.RevocationReason != r.reason {
					t.Fatalf("Revoke(%s) = %+v, %v, %v", r.serial, cert, already, err)
				}
			}
			select {
			case <-p.kick:
			default:
				t.Error("Revoke did not kick the publisher")
			}
			rep = f.refresh(p)
			if len(rep.CRLs) != 1 || rep.CRLs[0].Number != 2 || rep.CRLs[0].Entries != 3 {
				t.Fatalf("tick after 3 revocations = %+v; want CRL 2 with 3 entries", rep)
			}
			rl := f.storedCRL()
			want := map[string]int{long1.Serial: 1, long2.Serial: 4, short.Serial: 5}
			for _, e := range rl.RevokedCertificateEntries {
				code, ok := want[e.SerialNumber.Text(16)]
				if !ok || e.ReasonCode != code || !e.RevocationTime.Equal(revokedAt) {
					t.Errorf("entry %s reason %d at %s; want one of %v at %s", e.SerialNumber.Text(16), e.ReasonCode, e.RevocationTime, want, revokedAt)
				}
				delete(want, e.SerialNumber.Text(16))
			}
			if len(want) != 0 {
				t.Errorf("CRL lacks %v", want)
			}
			if rl.Number.Cmp(big.NewInt(2)) != 0 || !rl.ThisUpdate.Equal(f.clk.Now()) || !rl.NextUpdate.Equal(f.clk.Now().Add(time.Hour)) {
				t.Errorf("CRL number %v, window %s..%s", rl.Number, rl.ThisUpdate, rl.NextUpdate)
			}

			cert, already, err := rv.Revoke(f.ctx, long1.Serial, "affiliationChanged", "someone-else", "req-2")
			if err != nil || !already || cert.RevocationReason != "keyCompromise" {
				t.Errorf("revoking again = %+v, %v, %v; want the first revocation unchanged and alreadyRevoked", cert.RevocationReason, already, err)
			}
			if rep := f.refresh(p); len(rep.CRLs) != 0 {
				t.Errorf("a repeated revocation regenerated the CRL: %+v", rep.CRLs)
			}

			// 31 minutes on: the short leaf has expired and the CRL is
			// within its margin (nextUpdate - 30m): regenerated without it.
			f.clk.Advance(31 * time.Minute)
			rep = f.refresh(p)
			if len(rep.CRLs) != 1 || rep.CRLs[0].Number != 3 || rep.CRLs[0].Entries != 2 {
				t.Fatalf("tick within the margin = %+v; want CRL 3 with the expired entry dropped", rep)
			}
			for _, e := range f.storedCRL().RevokedCertificateEntries {
				if e.SerialNumber.Text(16) == short.Serial {
					t.Error("the expired certificate is still listed")
				}
			}

			if n := gaugeValue(t, p.metrics.crlNumber.WithLabelValues(f.interID)); n != 3 {
				t.Errorf("ca_crl_number = %v, want 3", n)
			}
			if n := gaugeValue(t, p.metrics.crlEntries.WithLabelValues(f.interID)); n != 2 {
				t.Errorf("ca_crl_entries = %v, want 2", n)
			}
			f.clk.Advance(10 * time.Second)
			if _, err := p.RefreshOnce(f.ctx); err != nil {
				t.Fatal(err)
			}
			if age := gaugeValue(t, p.metrics.crlAge.WithLabelValues(f.interID)); age != 10 {
				t.Errorf("ca_crl_age_seconds = %v, want 10", age)
			}
			if age := gaugeValue(t, p.metrics.ocspAge.WithLabelValues(f.interID)); age < 10 {
				t.Errorf("ca_ocsp_response_oldest_age_seconds = %v, want >= 10", age)
			}
			_ = good
		})
	}
}

func TestRevokeRefusesBadInput(t *testing.T) {
	f := newFixture(t, sqliteBackend, shortConfig())
	rv := f.revoker(nil)
	l := f.leaf("x", time.Hour)
	cases := []struct {
		name, serial, reason string
		want                 error
	}{
		{"a reason outside RFC 5280's operator list is refused", l.Serial, "certificateHold", ErrInvalidReason},
		{"an empty reason is refused", l.Serial, "", ErrInvalidReason},
		{"a reason in the wrong case is refused", l.Serial, "KeyCompromise", ErrInvalidReason},
		{"a serial that is not hex is refused", "xyz", "keyCompromise", ErrInvalidSerial},
		{"a serial of zeros is refused", "000", "keyCompromise", ErrInvalidSerial},
		{"a serial longer than 20 bytes is refused", strings.Repeat("a", 41), "keyCompromise", ErrInvalidSerial},
		{"an unknown serial is not found", "0123456789abcdef", "keyCompromise", store.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := rv.Revoke(f.ctx, tc.serial, tc.reason, "op", "req")
			if !errors.Is(err, tc.want) {
				t.Errorf("Revoke = %v, want %v", err, tc.want)
			}
		})
	}
	var re *ReasonError
	if _, _, err := rv.Revoke(f.ctx, l.Serial, "bogus", "op", "req"); !errors.As(err, &re) || re.Reason != "bogus" {
		t.Errorf("a bad reason's error is %v, want a *ReasonError naming it", err)
	}
	if c, err := f.st.GetCertificate(f.ctx, l.Serial); err != nil || c.Status != store.CertActive {
		t.Errorf("refused revocations changed the certificate: %+v, %v", c.Status, err)
	}
	// The accepted revocation is audited with actor, request ID and reason.
	if _, _, err := rv.Revoke(f.ctx, "00"+l.Serial, "privilegeWithdrawn", "op@example.org", "req-77"); err != nil {
		t.Fatal(err)
	}
	entries, err := f.st.AuditEntries(f.ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Action != "revoke" || last.Target != l.Serial || last.Actor != "op@example.org" || last.RequestID != "req-77" || !strings.Contains(string(last.Details), "privilegeWithdrawn") {
		t.Errorf("last audit entry = %+v", last)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
