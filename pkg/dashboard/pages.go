package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// expiryLabels name store.ExpiryBuckets for the chart.
var expiryLabels = []string{"< 1 h", "1–6 h", "6–24 h", "1–3 d", "3–7 d"}

// bar is one bar of the server-drawn SVG expiry chart (attributes only: the
// CSP forbids inline styles).
type bar struct {
	Label        string
	Count        int64
	X, Y, W, H   int
	LabelY, NumY int
}

type issuerRow struct {
	store.Issuer
	CRL        *store.CRL
	CRLAge     string
	CRLStale   bool
	OCSPOldest string
}

func (db *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := db.clock.Now()
	stats, err := db.d.Store.CertificateStats(ctx, now, now.Add(-24*time.Hour))
	if err != nil {
		db.internal(w, r, "reading certificate stats", err)
		return
	}
	issuers, err := db.d.Store.ListIssuers(ctx)
	if err != nil {
		db.internal(w, r, "listing issuers", err)
		return
	}
	seq, err := db.d.Store.LatestBundleSequence(ctx)
	if err != nil {
		db.internal(w, r, "reading the bundle sequence", err)
		return
	}
	var rows []issuerRow
	for _, is := range issuers {
		row := issuerRow{Issuer: is, CRLAge: "no CRL yet", OCSPOldest: "none"}
		if is.Kind == store.KindIntermediate {
			if c, err := db.d.Store.CRLInfo(ctx, is.ID); err == nil {
				row.CRL = &c
				row.CRLAge = now.Sub(c.ThisUpdate).Round(time.Second).String() + " old"
				row.CRLStale = !now.Before(c.NextUpdate)
			} else if !errors.Is(err, store.ErrNotFound) {
				db.internal(w, r, "reading CRL info", err)
				return
			}
			if at, ok, err := db.d.Store.OCSPOldest(ctx, is.ID, now); err == nil && ok {
				row.OCSPOldest = now.Sub(at).Round(time.Second).String() + " old"
			}
		}
		rows = append(rows, row)
	}
	var total int64
	for _, n := range stats.Expiring {
		total += n
	}
	db.render(w, r, http.StatusOK, "overview", "overview", "Overview", map[string]any{
		"Active": stats.ByStatus[store.CertActive], "Expired": stats.ByStatus[store.CertExpired],
		"Revoked": stats.ByStatus[store.CertRevoked], "Bars": expiryBars(stats.Expiring), "Within24h": sumTo(stats.Expiring, 3), "Within7d": total,
		"Issuers": rows, "BundleSequence": seq,
		"IssuedPerHour": fmt.Sprintf("%.1f", float64(stats.IssuedSince)/24), "DeniedPerHour": fmt.Sprintf("%.1f", float64(stats.DeniedSince)/24),
	})
}

func sumTo(v []int64, n int) int64 {
	var s int64
	for i := 0; i < n && i < len(v); i++ {
		s += v[i]
	}
	return s
}

func expiryBars(counts []int64) []bar {
	const height, width, gap, top = 160, 90, 20, 20
	var peak int64 = 1
	for _, c := range counts {
		peak = max(peak, c)
	}
	bars := make([]bar, 0, len(counts))
	for i, c := range counts {
		h := int(c * height / peak)
		if c > 0 && h < 2 {
			h = 2
		}
		x := gap + i*(width+gap)
		bars = append(bars, bar{Label: expiryLabels[i], Count: c, X: x, Y: top + height - h, W: width, H: h,
			LabelY: top + height + 18, NumY: top + height - h - 4})
	}
	return bars
}

// certificates is the searchable, filterable, paginated inventory. The
// search box takes a SPIFFE ID prefix, a repository (owner/name) or a serial
// (which opens it).
func (db *Dashboard) certificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.CertificateFilter{Now: db.clock.Now(), Limit: 50, Cursor: q.Get("cursor")}
	search := strings.TrimSpace(q.Get("q"))
	switch {
	case search == "":
	case strings.HasPrefix(search, "spiffe://"):
		f.IdentityPrefix = search
	case isSerial(search):
		if _, err := db.d.Store.GetCertificate(r.Context(), strings.ToLower(search)); err == nil {
			http.Redirect(w, r, "/ui/certificates/"+url.PathEscape(strings.ToLower(search)), http.StatusSeeOther)
			return
		}
		f.Repository = search
	default:
		f.Repository = search
	}
	switch s := store.CertStatus(q.Get("status")); s {
	case store.CertActive, store.CertRevoked, store.CertExpired:
		f.Status = s
	}
	if d, err := time.ParseDuration(q.Get("expiring")); err == nil && d > 0 && d <= 30*24*time.Hour {
		f.ExpiringWithin = d
	}
	page, next, err := db.d.Store.ListCertificates(r.Context(), f)
	if errors.Is(err, store.ErrInvalidQuery) {
		db.fail(w, r, nil, http.StatusBadRequest, "That page link is not valid; start from the first page.")
		return
	}
	if err != nil {
		db.internal(w, r, "listing certificates", err)
		return
	}
	type row struct {
		store.Certificate
		Effective store.CertStatus
	}
	rows := make([]row, 0, len(page))
	for _, c := range page {
		rows = append(rows, row{c, c.EffectiveStatus(f.Now)})
	}
	nextURL := ""
	if next != "" {
		v := url.Values{}
		for _, k := range []string{"q", "status", "expiring"} {
			if q.Get(k) != "" {
				v.Set(k, q.Get(k))
			}
		}
		v.Set("cursor", next)
		nextURL = "/ui/certificates?" + v.Encode()
	}
	exportQ := url.Values{}
	if f.IdentityPrefix != "" {
		exportQ.Set("identity_prefix", f.IdentityPrefix)
	}
	if f.Repository != "" {
		exportQ.Set("repository", f.Repository)
	}
	if f.Status != "" {
		exportQ.Set("status", string(f.Status))
	}
	if f.ExpiringWithin > 0 {
		exportQ.Set("expiring_within", f.ExpiringWithin.String())
	}
	db.render(w, r, http.StatusOK, "certificates", "certificates", "Certificates", map[string]any{
		"Rows": rows, "Q": search, "Status": q.Get("status"), "Expiring": q.Get("expiring"), "Next": nextURL,
		"Paged": f.Cursor != "", "Export": "/v1/certificates.csv?" + exportQ.Encode(),
	})
}

func isSerial(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for _, c := range strings.ToLower(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// provenanceView is the provenance record shown on the detail page.
type provenanceView struct {
	TokenIssuer   string            `json:"token_issuer"`
	Iss           string            `json:"iss"`
	Sub           string            `json:"sub"`
	Shape         string            `json:"shape"`
	Claims        map[string]string `json:"claims"`
	PolicyRule    string            `json:"policy_rule"`
	PolicyVersion string            `json:"policy_version"`
	Kind          string            `json:"kind"`
}

// maxChain bounds how far back the renewal chain is followed.
const maxChain = 20

func (db *Dashboard) certificate(w http.ResponseWriter, r *http.Request) {
	c, ok := db.loadCert(w, r)
	if !ok {
		return
	}
	var prov provenanceView
	if len(c.Provenance) > 0 {
		_ = json.Unmarshal(c.Provenance, &prov)
	}
	// The renewal chain: the certificates this one renews, back to the
	// enrollment.
	var chain []store.Certificate
	for prev := c.RenewedFrom; prev != "" && len(chain) < maxChain; {
		p, err := db.d.Store.GetCertificate(r.Context(), prev)
		if err != nil {
			break
		}
		chain = append(chain, p)
		prev = p.RenewedFrom
	}
	s := sessionOf(r)
	db.render(w, r, http.StatusOK, "certificate", "certificates", "Certificate "+c.Serial, map[string]any{
		"C": c, "Status": c.EffectiveStatus(db.clock.Now()), "Prov": prov, "Chain": chain,
		"CanRevoke": s.has(policy.RoleRevoker) && db.d.Revoker != nil && c.Status != store.CertRevoked,
		"Revoked":   r.URL.Query().Get("revoked") == "1",
	})
}

func (db *Dashboard) loadCert(w http.ResponseWriter, r *http.Request) (store.Certificate, bool) {
	sn := strings.ToLower(strings.ReplaceAll(chi.URLParam(r, "serial"), ":", ""))
	if !isSerial(sn) {
		db.fail(w, r, nil, http.StatusBadRequest, "A serial number is 1 to 40 hex digits.")
		return store.Certificate{}, false
	}
	c, err := db.d.Store.GetCertificate(r.Context(), strings.TrimLeft(sn, "0"))
	if errors.Is(err, store.ErrNotFound) {
		db.fail(w, r, nil, http.StatusNotFound, "No certificate with that serial was issued here.")
		return c, false
	}
	if err != nil {
		db.internal(w, r, "reading a certificate", err)
		return c, false
	}
	return c, true
}

// revocationReasons are offered in the revoke form (RFC 5280 names).
var revocationReasons = []string{"keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "privilegeWithdrawn", "unspecified"}

func (db *Dashboard) revokeConfirm(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	if !s.has(policy.RoleRevoker) || db.d.Revoker == nil {
		db.fail(w, r, nil, http.StatusForbidden, "Revoking needs the revoker role.")
		return
	}
	c, ok := db.loadCert(w, r)
	if !ok {
		return
	}
	db.render(w, r, http.StatusOK, "revoke", "certificates", "Revoke "+c.Serial, map[string]any{
		"C": c, "Reasons": revocationReasons, "CSRF": s.CSRF,
	})
}

// revoke is the only state change of the dashboard: revoker role, CSRF
// token, explicit confirmation, a known reason; the Revoker audits it.
func (db *Dashboard) revoke(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	if !s.has(policy.RoleRevoker) || db.d.Revoker == nil {
		db.fail(w, r, nil, http.StatusForbidden, "Revoking needs the revoker role.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !checkCSRF(r, s) {
		db.fail(w, r, nil, http.StatusForbidden, "The form expired or did not come from this dashboard; reload and try again.")
		return
	}
	c, ok := db.loadCert(w, r)
	if !ok {
		return
	}
	reason := r.PostFormValue("reason")
	known := false
	for _, k := range revocationReasons {
		known = known || k == reason
	}
	if !known || r.PostFormValue("confirm") != c.Serial {
		db.fail(w, r, nil, http.StatusBadRequest, "Choose a reason and confirm the serial number.")
		return
	}
	var err error
	if reason == "keyCompromise" { // as the REST API: every renewal of a compromised certificate goes too
		_, err = db.d.Revoker.RevokeMany(r.Context(), store.RevokeScope{Serial: c.Serial, Descendants: true}, reason, s.Actor, db.d.RequestID(r.Context()))
	} else {
		_, _, err = db.d.Revoker.Revoke(r.Context(), c.Serial, reason, s.Actor, db.d.RequestID(r.Context()))
	}
	if err != nil && !errors.Is(err, store.ErrConflict) {
		db.internal(w, r, "revoking", err)
		return
	}
	http.Redirect(w, r, "/ui/certificates/"+c.Serial+"?revoked=1", http.StatusSeeOther)
}

func (db *Dashboard) denials(w http.ResponseWriter, r *http.Request) {
	window := 24 * time.Hour
	if d, err := time.ParseDuration(r.URL.Query().Get("window")); err == nil && d > 0 && d <= 90*24*time.Hour {
		window = d
	}
	since := db.clock.Now().Add(-window)
	groups, err := db.d.Store.Denials(r.Context(), store.DenialQuery{Since: since, Actions: []string{"enroll", "renew", "jwt"}, Limit: 200})
	if err != nil {
		db.internal(w, r, "reading denials", err)
		return
	}
	db.render(w, r, http.StatusOK, "denials", "denials", "Denials and renewal failures", map[string]any{
		"Groups": groups, "Since": since, "Window": window.String(),
	})
}

func (db *Dashboard) audit(w http.ResponseWriter, r *http.Request) {
	var after int64
	if _, err := fmt.Sscan(r.URL.Query().Get("after"), &after); err != nil || after < 0 {
		after = 0
	}
	entries, err := db.d.Store.AuditEntries(r.Context(), after, 100)
	if err != nil {
		db.internal(w, r, "reading the audit log", err)
		return
	}
	next := ""
	if len(entries) == 100 {
		next = fmt.Sprintf("/ui/audit?after=%d", entries[len(entries)-1].Seq)
	}
	db.render(w, r, http.StatusOK, "audit", "audit", "Audit log", map[string]any{"Entries": entries, "Next": next})
}
