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

// Header values every OCSP answer shares, assigned to the header map as they
// are instead of allocating them per request; nothing modifies them.
var (
	ocspContentTypeValue = []string{ocspContentType}
	noStoreValue         = []string{"no-store"}
)

// ocspPost answers POST /ocsp: the body is the DER request. OCSP clients
// expect OCSP answers, so every outcome, including a garbage or oversized
// body, is a 200 with an OCSP response (malformedRequest, unauthorized,
// tryLater...), never a problem+json.
func (rt *Routes) ocspPost(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Revocation == nil {
		return errRevocationNotConfigured
	}
	rt.writeOCSP(w, r, readOCSPRequest(r), false)
	return nil
}

// readOCSPRequest reads a POST body of at most revoke.MaxRequestSize bytes,
// into a buffer of the declared Content-Length when there is one; nil (a
// malformedRequest answer) if it is longer or unreadable.
func readOCSPRequest(r *http.Request) []byte {
	if n := r.ContentLength; n > 0 && n <= revoke.MaxRequestSize {
		der := make([]byte, n)
		if _, err := io.ReadFull(r.Body, der); err != nil {
			return nil
		}
		return der
	}
	der, err := io.ReadAll(io.LimitReader(r.Body, revoke.MaxRequestSize+1))
	if err != nil || len(der) > revoke.MaxRequestSize {
		return nil
	}
	return der
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
	h["Content-Type"] = ocspContentTypeValue
	if cacheable && !resp.ThisUpdate.IsZero() {
		var etag [2 + 2*16]byte
		sum := sha256.Sum256(resp.DER)
		etag[0], etag[len(etag)-1] = '"', '"'
		hex.Encode(etag[1:len(etag)-1], sum[:16])
		h["Etag"] = []string{string(etag[:])}
		h["Last-Modified"] = []string{resp.ThisUpdate.UTC().Format(http.TimeFormat)}
		setCacheUntil(h, resp.NextUpdate, rt.d.Clock.Now())
		if r.Header.Get("If-None-Match") == h["Etag"][0] {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		h["Cache-Control"] = noStoreValue
	}
	if _, err := w.Write(resp.DER); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		rt.d.Log.DebugContext(r.Context(), "writing OCSP answer", "err", err)
	}
}
