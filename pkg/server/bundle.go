package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// PEMChainContentType is the media type of /bundle.pem (RFC 8555 section 9.1).
const PEMChainContentType = "application/pem-certificate-chain"

// bundleCacheControl lets caches keep the bundle briefly; clients revalidate
// cheaply with If-None-Match.
const bundleCacheControl = "public, max-age=300, must-revalidate"

// bundlePEM serves the trust anchors as concatenated PEM with a strong ETag
// (a hash of the body), answering 304 when If-None-Match matches it.
func (rt *Routes) bundlePEM(w http.ResponseWriter, r *http.Request) error {
	anchors, err := rt.d.Anchors.TrustAnchors(r.Context())
	if err != nil {
		return fmt.Errorf("trust anchors: %w", err)
	}
	var body bytes.Buffer
	for _, c := range anchors {
		if err := pem.Encode(&body, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return fmt.Errorf("encoding bundle: %w", err)
		}
	}
	serveCacheable(w, r, PEMChainContentType, body.Bytes())
	return nil
}

// serveCacheable writes body with a strong ETag and Cache-Control, or a 304
// when the client already has it.
func serveCacheable(w http.ResponseWriter, r *http.Request, contentType string, body []byte) {
	sum := sha256.Sum256(body)
	w.Header().Set("Cache-Control", bundleCacheControl)
	serveETagged(w, r, contentType, body, `"`+base64.RawURLEncoding.EncodeToString(sum[:])+`"`)
}

// serveETagged sets the ETag and answers a conditional GET or HEAD: a 304
// when If-None-Match matches etag, otherwise a 200 with body (headers only
// for HEAD). The caller sets the caching headers first.
func serveETagged(w http.ResponseWriter, r *http.Request, contentType string, body []byte, etag string) {
	h := w.Header()
	h.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// etagMatches implements If-None-Match's weak comparison (RFC 9110 13.1.2):
// "*" or any listed tag equal to etag, ignoring a W/ prefix.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
