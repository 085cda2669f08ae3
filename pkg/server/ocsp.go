package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/revoke"
)

// ocspContentType is the media type of every OCSP answer (RFC 6960
// appendix A.1).
const ocspContentType = "application/ocsp-response"

// ocspPost answers POST /ocsp: the body is the DER request. OCSP clients
// expect OCSP answers, so every outcome, including a garbage or oversized
// body, is a 200 with an OCSP response (malformedRequest, unauthorized,
// tryLater...), never a problem+json.
func (rt *Routes) ocspPost(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Revocation == nil {
		return errRevocationNotConfigured
	}
	der, err := io.ReadAll(io.LimitReader(r.Body, revoke.MaxRequestSize+1))
	if err != nil || len(der) > revoke.MaxRequestSize {
		der = nil // answered malformedRequest
	}
	rt.writeOCSP(w, r, der, false)
	return nil
}

// ocspGet answers GET /ocsp/{request}: the path element is the URL-encoded
// base64 of the DER request (RFC 6960 appendix A.1), cacheable by any HTTP
// cache (RFC 5019 section 6). Clients must percent-encode '/' in the base64.
func (rt *Routes) ocspGet(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Revocation == nil {
		return errRevocationNotConfigured
	}
	der, err := revoke.DecodeGETRequest(strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/"))
	if err != nil {
		der = nil // answered malformedRequest
	}
	rt.writeOCSP(w, r, der, true)
	return nil
}

func (rt *Routes) writeOCSP(w http.ResponseWriter, r *http.Request, der []byte, cacheable bool) {
	resp, err := rt.d.Revocation.Respond(r.Context(), der)
	if err != nil {
		rt.d.Log.WarnContext(r.Context(), "OCSP answered "+string(resp.Status), "request_id", RequestID(r.Context()), "err", err)
	}
	h := w.Header()
	h.Set("Content-Type", ocspContentType)
	if cacheable && !resp.ThisUpdate.IsZero() {
		sum := sha256.Sum256(resp.DER)
		h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
		h.Set("Last-Modified", resp.ThisUpdate.UTC().Format(http.TimeFormat))
		setCacheUntil(h, resp.NextUpdate, rt.d.Clock.Now())
	} else {
		h.Set("Cache-Control", "no-store")
	}
	if cacheable && !resp.ThisUpdate.IsZero() && r.Header.Get("If-None-Match") == h.Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if _, err := w.Write(resp.DER); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		rt.d.Log.DebugContext(r.Context(), "writing OCSP answer", "err", err)
	}
}
