package server

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// mountInventory adds the denial report and the CSV export to the API
// listener, for auditors.
func (rt *Routes) mountInventory(r chi.Router) {
	rt.operatorRoute(r, http.MethodGet, "/v1/certificates.csv", policy.RoleAuditor, rt.exportCertificates)
	rt.operatorRoute(r, http.MethodGet, "/v1/denials", policy.RoleAuditor, rt.listDenials)
}

// MaxExportRows bounds one CSV export; narrow the filters for more.
const MaxExportRows = 2_000_000

// CSVColumns are the header of GET /v1/certificates.csv, in order.
var CSVColumns = []string{
	"serial", "spiffe_id", "dns_names", "issuer_id", "status", "not_before", "not_after", "created_at",
	"revoked_at", "revocation_reason", "policy_rule", "policy_version", "renewed_from",
	"token_issuer", "subject", "repository", "ref", "sha", "run_id", "public_key_sha256",
}

// provenanceFields are the provenance columns of the export.
type provenanceFields struct {
	TokenIssuer string            `json:"token_issuer"`
	Sub         string            `json:"sub"`
	Claims      map[string]string `json:"claims"`
}

// exportCertificates is GET /v1/certificates.csv: the inventory with the
// filters of GET /v1/certificates (limit and cursor excepted), streamed page
// by page in the same newest-first keyset order, so memory stays flat at any
// size. A failure after the first byte cannot become a problem answer: the
// connection is cut so the client sees a truncated download, never a short
// file that looks complete.
func (rt *Routes) exportCertificates(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Operators.Store == nil {
		return errOperatorsNotConfigured
	}
	q := r.URL.Query()
	for _, k := range []string{"limit", "cursor"} {
		if q.Has(k) {
			return badQuery(k, "is not accepted by the export (it always covers every match)")
		}
	}
	now := rt.d.Clock.Now()
	f, err := ParseCertificateQuery(q, now)
	if err != nil {
		return err
	}
	f.Limit = store.MaxListLimit
	// The first page is read before answering, so that an error is still a
	// problem answer.
	page, next, err := rt.d.Operators.Store.ListCertificates(r.Context(), f)
	if err != nil {
		return fmt.Errorf("exporting certificates: %w", err)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="certificates-`+now.UTC().Format("20060102T150405Z")+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	cw := csv.NewWriter(w)
	_ = cw.Write(CSVColumns)
	rows := 0
	flusher, _ := w.(http.Flusher)
	for {
		for _, c := range page {
			_ = cw.Write(csvRow(c, now))
		}
		rows += len(page)
		cw.Flush()
		if err := cw.Error(); err != nil {
			return nil // the client went away
		}
		if flusher != nil {
			flusher.Flush()
		}
		if next == "" || rows >= MaxExportRows {
			break
		}
		f.Cursor = next
		// Each page gets the request timeout afresh: a large export
		// streams for longer than one request deadline (deadline.go).
		pctx, cancel := stepContext(r.Context())
		page, next, err = rt.d.Operators.Store.ListCertificates(pctx, f)
		cancel()
		if err != nil {
			rt.d.Log.ErrorContext(r.Context(), "CSV export cut short", "request_id", RequestID(r.Context()), "rows", rows, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	rt.d.Log.InfoContext(r.Context(), "CSV export", "request_id", RequestID(r.Context()), "rows", rows)
	return nil
}

func csvRow(c store.Certificate, now time.Time) []string {
	var p provenanceFields
	if len(c.Provenance) > 0 {
		_ = json.Unmarshal(c.Provenance, &p)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	revokedAt := ""
	if c.Status == store.CertRevoked {
		revokedAt = ts(c.RevokedAt)
	}
	row := []string{
		c.Serial, c.SPIFFEID, strings.Join(c.DNSNames, " "), c.IssuerID, string(c.EffectiveStatus(now)),
		ts(c.NotBefore), ts(c.NotAfter), ts(c.CreatedAt), revokedAt, c.RevocationReason, c.PolicyRule,
		c.PolicyVersion, c.RenewedFrom, or(p.TokenIssuer, c.TokenIssuer), or(p.Sub, c.Subject), or(c.Repository, p.Claims["repository"]), p.Claims["ref"],
		p.Claims["sha"], p.Claims["run_id"], c.PublicKeySHA256,
	}
	for i, v := range row {
		row[i] = spreadsheetSafe(v)
	}
	return row
}

// or is a, or b when a is empty: a renewal's provenance has no token
// fields, its lineage's columns do.
func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// spreadsheetSafe defuses formula injection: a cell a spreadsheet would
// evaluate (=, +, -, @, tab, CR first) gets a leading apostrophe.
func spreadsheetSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
