package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/workload-ca/workload-ca/pkg/bundle"
)

// SPIFFEBundleContentType is the media type of /bundle.json: a JWKS (RFC
// 7517) with the SPIFFE parameters.
const SPIFFEBundleContentType = "application/json"

// BundleSource yields the latest published trust bundle, rendered;
// *bundle.Cache fits.
type BundleSource interface {
	Current(ctx context.Context) (*bundle.Published, error)
}

// bundleJSON serves the SPIFFE trust bundle of the latest published version.
func (rt *Routes) bundleJSON(w http.ResponseWriter, r *http.Request) error {
	p, err := rt.d.Trust.Bundles.Current(r.Context())
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
	}
	serveVersioned(w, r, SPIFFEBundleContentType, p.JSON, p.JSONETag, p)
	return nil
}

// bundlePEMVersioned serves the trust anchors of the latest published
// version as PEM.
func (rt *Routes) bundlePEMVersioned(w http.ResponseWriter, r *http.Request) error {
	p, err := rt.d.Trust.Bundles.Current(r.Context())
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
	}
	serveVersioned(w, r, PEMChainContentType, p.PEM, p.PEMETag, p)
	return nil
}

// serveVersioned writes a published bundle body with its ETag (sequence and
// body hash), Cache-Control max-age of half the refresh hint, and the
// sequence in X-Bundle-Sequence, or 304 when If-None-Match matches.
func serveVersioned(w http.ResponseWriter, r *http.Request, contentType string, body []byte, etag string, p *bundle.Published) {
	h := w.Header()
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, must-revalidate", int(p.MaxAge.Seconds())))
	h.Set("X-Bundle-Sequence", strconv.FormatInt(p.Sequence, 10))
	serveETagged(w, r, contentType, body, etag)
}
