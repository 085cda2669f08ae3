package bundle

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// ErrBrokenChain means a non-retired intermediate has no stored path to a
// self-signed root, so its trust anchor cannot be published.
var ErrBrokenChain = errors.New("bundle: issuer chain does not reach a stored root")

// maxChainDepth bounds the walk from an intermediate up to its root.
const maxChainDepth = 5

// AnchorsOf returns the trust anchors relying parties need for the given
// issuers: every non-retired root with a certificate, and the root of every
// non-retired intermediate's chain (found by issuer name and signature,
// preferring the recorded parent), without duplicates. Prepared issuers are
// included, so a new root is published before anything it signs is used;
// retiring ones stay until they are retired. A cross-certificate (an
// intermediate certificate signed by an old root) brings in that old root.
func AnchorsOf(issuers []store.Issuer) ([]*x509.Certificate, error) {
	type parsed struct {
		rec  store.Issuer
		cert *x509.Certificate
	}
	var all []parsed
	for _, is := range issuers {
		if is.CertDER == nil {
			continue // an offline-root intermediate awaiting its certificate
		}
		c, err := x509.ParseCertificate(is.CertDER)
		if err != nil {
			return nil, fmt.Errorf("bundle: parsing certificate of issuer %q: %w", is.ID, err)
		}
		all = append(all, parsed{is, c})
	}
	var out []*x509.Certificate
	seen := map[string]bool{}
	add := func(c *x509.Certificate) {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			out = append(out, c)
		}
	}
	selfSigned := func(c *x509.Certificate) bool {
		return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
	}
	for _, p := range all {
		if p.rec.State == store.IssuerRetired {
			continue
		}
		if p.rec.Kind == store.KindRoot {
			add(p.cert)
			continue
		}
		cur, curRec := p.cert, p.rec
		found := false
		for range maxChainDepth {
			if selfSigned(cur) {
				add(cur)
				found = true
				break
			}
			next := -1
			for i, q := range all {
				if bytes.Equal(q.cert.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(q.cert) == nil {
					if next < 0 || q.rec.ID == curRec.ParentID {
						next = i
					}
				}
			}
			if next < 0 {
				break
			}
			cur, curRec = all[next].cert, all[next].rec
		}
		if !found {
			return nil, fmt.Errorf("%w: issuer %q", ErrBrokenChain, p.rec.ID)
		}
	}
	return out, nil
}

// SourceDigest identifies the inputs a bundle is computed from: each
// issuer's ID, state and certificate, and the JWT keys. Any issuer state
// change changes it; pkg/bundle compares it to end a rollback's pin.
func SourceDigest(issuers []store.Issuer, jwt []JWTAuthority) string {
	lines := make([]string, 0, len(issuers)+len(jwt))
	for _, is := range issuers {
		h := sha256.Sum256(is.CertDER)
		lines = append(lines, fmt.Sprintf("issuer %q %s %x", is.ID, is.State, h))
	}
	for _, k := range jwt {
		h := sha256.Sum256(k.SPKI)
		lines = append(lines, fmt.Sprintf("jwt %q %x", k.KeyID, h))
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
