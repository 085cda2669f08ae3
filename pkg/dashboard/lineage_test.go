package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// The certificate page shows where a certificate sits in its lineage: the
// lineage's first serial, the certificate it renews and its renewal.
func TestTheCertificatePageShowsTheLineage(t *testing.T) {
	db := &Dashboard{}
	if err := db.parseTemplates(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	render := func(c store.Certificate) string {
		t.Helper()
		var b strings.Builder
		err := db.pages["certificate"].Execute(&b, page{Title: "Certificate " + c.Serial, Nav: "certificates", Data: map[string]any{
			"C": c, "Status": c.EffectiveStatus(at), "Prov": provenanceView{}, "Chain": []store.Certificate(nil),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	renewal := store.Certificate{Serial: "b2", RenewedFrom: "a1", Lineage: "a1", LineageStartedAt: at.Add(-time.Hour),
		SupersededBy: "c3", NotAfter: at.Add(time.Hour), Status: store.CertActive, CreatedAt: at}
	html := render(renewal)
	for _, want := range []string{
		`id="cert-lineage"><a href="/ui/certificates/a1">a1</a>`,
		`id="cert-renewed-from"><a href="/ui/certificates/a1">a1</a>`,
		`id="cert-superseded-by"><a href="/ui/certificates/c3">c3</a>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the page of a renewal lacks %s", want)
		}
	}
	html = render(store.Certificate{Serial: "a9", Lineage: "a9", LineageStartedAt: at, NotAfter: at.Add(time.Hour), Status: store.CertActive, CreatedAt: at})
	if !strings.Contains(html, `id="cert-renewed-from">— (an enrollment)`) || !strings.Contains(html, `id="cert-superseded-by">— (not renewed)`) {
		t.Errorf("the page of an enrollment that was not renewed:\n%s", html)
	}
}
