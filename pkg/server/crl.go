package server

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/revoke"
)

// RevocationSource serves what relying parties check revocation with, from
// the store, without signing on the request path; *revoke.Responder fits.
type RevocationSource interface {
	// CRL returns an issuer's latest CRL; the error wraps store.ErrNotFound
	// for an unknown issuer or one without a CRL yet.
	CRL(ctx context.Context, issuerID string) (revoke.CRLDocument, error)
	// Respond answers a DER OCSP request; the Response is always usable, the
	// error is only for the log.
	Respond(ctx context.Context, reqDER []byte) (revoke.Response, error)
}

var _ RevocationSource = (*revoke.Responder)(nil)

// errRevocationNotConfigured answers CRL and OCSP requests of a server built
// without Deps.Revocation.
var errRevocationNotConfigured = &Error{Kind: KindNotFound, Reason: ReasonNotFound,
	Detail: "this server does not publish revocation information"}

// mountRevocation adds GET /crl/{issuer}.crl, POST /ocsp and GET
// /ocsp/{request} (both listeners).
func (rt *Routes) mountRevocation(r chi.Router) {
	r.Method(http.MethodGet, "/crl/{issuer}.crl", rt.edge.handle(rt.crl))
	r.Method(http.MethodPost, "/ocsp", rt.edge.handle(rt.ocspPost))
	r.Method(http.MethodGet, "/ocsp/{request}", rt.edge.handle(rt.ocspGet))
}

// crl serves an issuer's stored DER CRL with a strong ETag (the CRL number),
// Last-Modified (thisUpdate) and caching up to nextUpdate; conditional and
// range requests are answered by http.ServeContent.
func (rt *Routes) crl(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Revocation == nil {
		return errRevocationNotConfigured
	}
	doc, err := rt.d.Revocation.CRL(r.Context(), chi.URLParam(r, "issuer"))
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/pkix-crl")
	h.Set("ETag", doc.ETag())
	setCacheUntil(h, doc.NextUpdate, rt.d.Clock.Now())
	http.ServeContent(w, r, "", doc.ThisUpdate, bytes.NewReader(doc.DER))
	return nil
}

// setCacheUntil lets shared caches keep an artifact until its nextUpdate.
func setCacheUntil(h http.Header, next, now time.Time) {
	maxAge := int64(math.Max(0, math.Floor(next.Sub(now).Seconds())))
	h["Cache-Control"] = []string{"public, max-age=" + strconv.FormatInt(maxAge, 10) + ", no-transform, must-revalidate"}
	h["Expires"] = []string{next.UTC().Format(http.TimeFormat)}
}
