package telemetry_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

func TestStoreStatementsAreTimedBySummaryAndOutcomeOnPostgres(t *testing.T) {
	testStoreStatementsAreTimed(t, testkit.PostgresURL(t), "CONNECT")
}

func TestStoreStatementsAreTimedBySummaryAndOutcomeOnSQLite(t *testing.T) {
	testStoreStatementsAreTimed(t, testkit.SQLiteURL(t), "CONNECT")
}

// testStoreStatementsAreTimed opens the store at url observed by a
// StoreTimer: its statements are timed by their summary (keyword and
// table, never a value) and outcome, with no wrapper around the store.
func testStoreStatementsAreTimed(t *testing.T, url string, connect string) {
	reg := prometheus.NewRegistry()
	timer, err := telemetry.NewStoreTimer(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := storeopen.OpenObserved(ctx, url, timer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.GetCertificate(ctx, "abc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCertificate of nothing = %v, want ErrNotFound", err)
	}
	is := store.Issuer{ID: "root-x", Kind: store.KindRoot, KeyURI: "softkey:root-x", State: store.IssuerPrepared,
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := st.InsertIssuer(ctx, is); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertIssuer(ctx, is); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second InsertIssuer = %v, want ErrConflict", err)
	}
	if _, err := st.CertificateStats(ctx, time.Now(), time.Now()); err != nil {
		t.Fatalf("CertificateStats: %v", err)
	}
	if _, err := st.AppendAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: "test", Action: "test", Decision: "allow"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	// A statement that found no row went well; the store's ErrNotFound is
	// its own conclusion, not the statement's outcome.
	atLeast := map[string]uint64{
		`method="SELECT certificates",outcome="ok"`:  1,
		`method="INSERT issuers",outcome="ok"`:       1,
		`method="INSERT issuers",outcome="conflict"`: 1,
		`method="COMMIT",outcome="ok"`:               1,
		`method="` + connect + `",outcome="ok"`:      1,
	}
	for labels, n := range atLeast {
		if got := histogramCount(t, reg, "ca_store_call_duration_seconds", labels); got < n {
			t.Errorf("ca_store_call_duration_seconds{%s} count = %d, want at least %d", labels, got, n)
		}
	}
	if got := histogramCount(t, reg, "ca_store_call_duration_seconds", `method="INSERT issuers",outcome="conflict"`); got != 1 {
		t.Errorf("ca_store_call_duration_seconds{INSERT issuers, conflict} count = %d, want 1", got)
	}
	if text := gatherText(t, reg); strings.Contains(text, "abc") || strings.Contains(text, "root-x") || strings.Contains(text, "$1") {
		t.Errorf("a statement's values or placeholders are in the labels:\n%s", text)
	}
	// A second timer on the same registry shares the family.
	if _, err := telemetry.NewStoreTimer(reg); err != nil {
		t.Errorf("a second timer on one registry: %v", err)
	}
}

func TestSignaturesAreTimedByKeyNameAndTypeOnSoftHSM(t *testing.T) {
	reg := prometheus.NewRegistry()
	ks, err := telemetry.InstrumentKeys(testkit.SoftHSMKeyStore(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gen, err := ks.Generate(ctx, "telemetry-test", hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	found, err := ks.Find(ctx, gen.URI)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("hello"))
	for _, k := range []hsm.Key{gen, found} {
		if _, err := k.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	labels := `key="telemetry-test",key_type="ecdsa-p256",outcome="ok"`
	if got := histogramCount(t, reg, "ca_hsm_sign_duration_seconds", labels); got != 2 {
		t.Errorf("ca_hsm_sign_duration_seconds{%s} count = %d, want 2", labels, got)
	}
	if strings.Contains(gatherText(t, reg), "pin") {
		t.Error("the HSM metrics mention a PIN")
	}
}

func TestKeyNameIsTheObjectLabelOrTheSoftwareKeyName(t *testing.T) {
	tests := []struct{ name, uri, want string }{
		{"a PKCS#11 URI gives its object attribute", "pkcs11:token=ca;object=int-2;id=%01", "int-2"},
		{"a softkey URI gives its name", "softkey:root-1", "root-1"},
		{"anything else is unknown", "file:/etc/key.pem", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := telemetry.KeyName(tt.uri); got != tt.want {
				t.Errorf("KeyName(%q) = %q, want %q", tt.uri, got, tt.want)
			}
		})
	}
}

// issuerFunc is a LeafIssuer answering with a fixed error.
type issuerFunc func(issuer.Request) (*issuer.Issued, error)

func (f issuerFunc) Issue(_ context.Context, r issuer.Request) (*issuer.Issued, error) { return f(r) }

func TestIssuanceIsCountedByActionRuleOutcomeAndReason(t *testing.T) {
	tests := []struct {
		name   string
		req    issuer.Request
		err    error
		labels string
	}{
		{"an enrollment under a rule counts as issued", issuer.Request{Action: "issue", PolicyRule: "ci"}, nil,
			`action="issue",outcome="issued",reason="",rule="ci"`},
		{"a renewal refused by the HSM counts its reason", issuer.Request{Action: "renew", PolicyRule: "ci"}, hsm.ErrUnavailable,
			`action="renew",outcome="failed",reason="hsm_unavailable",rule="ci"`},
		{"the server certificate has no action or rule", issuer.Request{}, nil,
			`action="server",outcome="issued",reason="",rule="none"`},
		{"a store outage counts as store_unavailable", issuer.Request{Action: "issue", PolicyRule: "k8s"}, store.ErrUnavailable,
			`action="issue",outcome="failed",reason="store_unavailable",rule="k8s"`},
		{"a lint failure counts as lint", issuer.Request{Action: "issue", PolicyRule: "k8s"}, issuer.ErrLint,
			`action="issue",outcome="failed",reason="lint",rule="k8s"`},
		{"a renewal that lost to another renewal counts as superseded", issuer.Request{Action: "renew", PolicyRule: "ci"}, store.ErrSuperseded,
			`action="renew",outcome="failed",reason="superseded",rule="ci"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			iss, err := telemetry.InstrumentIssuer(issuerFunc(func(issuer.Request) (*issuer.Issued, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				return &issuer.Issued{}, nil
			}), reg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := iss.Issue(context.Background(), tt.req); !errors.Is(err, tt.err) {
				t.Fatalf("Issue = %v, want the wrapped error %v", err, tt.err)
			}
			text := gatherText(t, reg)
			if !strings.Contains(text, "ca_issuance_total{"+tt.labels+"} 1") {
				t.Errorf("no ca_issuance_total{%s} 1 in\n%s", tt.labels, text)
			}
		})
	}
}

func TestTheInventoryIsReadOncePerTTLAndKeptWhenTheStoreFails(t *testing.T) {
	st := testkit.Postgres(t)
	clk := clock.NewFake(time.Now())
	f := &flakyInventory{InventoryStore: st.(telemetry.InventoryStore)}
	inv := telemetry.NewInventory(f, clk, 30*time.Second, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(inv)

	text := gatherText(t, reg)
	for _, want := range []string{`ca_certificates{status="active"} 0`, `ca_bundle_sequence 0`, `ca_jwt_keys{state="active"} 0`,
		`ca_inventory_read_success 1`, `ca_certificates_expiring{within="1h0m0s"} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	gatherText(t, reg)
	if f.reads != 1 {
		t.Errorf("two scrapes within the TTL read the store %d times, want 1", f.reads)
	}
	clk.Advance(31 * time.Second)
	f.fail = true
	text = gatherText(t, reg)
	if f.reads != 2 || !strings.Contains(text, "ca_inventory_read_success 0") || !strings.Contains(text, `ca_certificates{status="active"} 0`) {
		t.Errorf("after the TTL with the store down: reads %d, want 2, failure flagged and the last reading kept:\n%s", f.reads, text)
	}
}

type flakyInventory struct {
	telemetry.InventoryStore
	reads int
	fail  bool
}

func (f *flakyInventory) CertificateStats(ctx context.Context, now, since time.Time) (store.CertificateStats, error) {
	f.reads++
	if f.fail {
		return store.CertificateStats{}, store.ErrUnavailable
	}
	return f.InventoryStore.CertificateStats(ctx, now, since)
}

func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				pairs = append(pairs, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := mf.GetName()
			if len(pairs) > 0 {
				name += "{" + strings.Join(pairs, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				b.WriteString(name + " " + fmt.Sprint(m.Counter.GetValue()) + "\n")
			case m.Gauge != nil:
				b.WriteString(name + " " + fmt.Sprint(m.Gauge.GetValue()) + "\n")
			case m.Histogram != nil:
				b.WriteString(name + " count " + fmt.Sprint(float64(m.Histogram.GetSampleCount())) + "\n")
			}
		}
	}
	return b.String()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, family, labels string) uint64 {
	t.Helper()
	text := gatherText(t, reg)
	var n uint64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, family+"{"+labels+"} count ") {
			_, _ = fmt.Sscan(strings.TrimPrefix(line, family+"{"+labels+"} count "), &n)
		}
	}
	return n
}
