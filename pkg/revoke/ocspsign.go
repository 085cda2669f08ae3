package revoke

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// responderReload is how long a process keeps using the responder it
// loaded before looking for a newer one (the leader renews them).
const responderReload = time.Minute

// ocspSigner signs OCSP responses with the delegated responder of each CA.
type ocspSigner struct {
	cfg        Config
	clock      clock.Clock
	responders *issuer.Responders
	metrics    *metrics // may be nil
	health     *hsm.KeyHealth

	mu     sync.Mutex
	cached map[string]loadedResponder
	// templates holds the fixed part of responses per issuer, responder and
	// CertID hash (nil where ocsp.CreateResponse is used); see ocspencode.go.
	templates map[templateKey]*ocspTemplate
}

// templateKey names an ocspTemplate by the certificates it was computed
// from: a reloaded responder or issuer is a new pointer, so a stale
// template is never used.
type templateKey struct {
	issuer, responder *x509.Certificate
	hash              crypto.Hash
}

// maxTemplates bounds ocspSigner.templates: responders are reloaded every
// responderReload, so old entries are dropped wholesale once it is reached.
const maxTemplates = 64

type loadedResponder struct {
	r        issuer.OCSPResponder
	loadedAt time.Time
}

func newOCSPSigner(d Deps, cfg Config, m *metrics) *ocspSigner {
	return &ocspSigner{
		cfg:   cfg,
		clock: d.Clock,
		responders: &issuer.Responders{
			Keys: d.Keys, Store: d.Store, Clock: d.Clock, Log: d.Log, Config: cfg.Responder,
		},
		metrics:   m,
		health:    d.KeyHealth,
		cached:    map[string]loadedResponder{},
		templates: map[templateKey]*ocspTemplate{},
	}
}

// responder returns the CA's current responder: the cached one while it is
// fresh, else the latest recorded (issuer.ErrNoResponder if none).
func (o *ocspSigner) responder(ctx context.Context, c *ca) (issuer.OCSPResponder, error) {
	now := o.clock.Now()
	o.mu.Lock()
	l, ok := o.cached[c.rec.ID]
	o.mu.Unlock()
	if ok && now.Sub(l.loadedAt) < responderReload && now.Before(l.r.Certificate.NotAfter) {
		return l.r, nil
	}
	r, err := o.responders.Load(ctx, c.rec.ID)
	if err != nil {
		o.health.Record(err) // only key-store failures count
		return issuer.OCSPResponder{}, err
	}
	o.remember(c.rec.ID, r)
	return r, nil
}

// ensureResponder is responder for the leader: it issues or renews the
// responder certificate when due.
func (o *ocspSigner) ensureResponder(ctx context.Context, c *ca) (issuer.OCSPResponder, error) {
	r, _, err := o.responders.Ensure(ctx, c.rec.ID)
	if err != nil {
		o.health.Record(err) // a responder key the token cannot make
		return issuer.OCSPResponder{}, err
	}
	o.remember(c.rec.ID, r)
	return r, nil
}

func (o *ocspSigner) remember(id string, r issuer.OCSPResponder) {
	o.mu.Lock()
	o.cached[id] = loadedResponder{r: r, loadedAt: o.clock.Now()}
	o.mu.Unlock()
}

// template returns the fixed part of responses about c's certificates
// signed by r with CertIDs hashed with h, or nil if ocsp.CreateResponse
// must sign them.
func (o *ocspSigner) template(r issuer.OCSPResponder, c *ca, h crypto.Hash) *ocspTemplate {
	k := templateKey{c.cert, r.Certificate, h}
	o.mu.Lock()
	t, ok := o.templates[k]
	o.mu.Unlock()
	if ok {
		return t
	}
	t, _ = newOCSPTemplate(c.cert, r.Certificate, h)
	o.mu.Lock()
	if len(o.templates) >= maxTemplates {
		clear(o.templates)
	}
	o.templates[k] = t
	o.mu.Unlock()
	return t
}

// signed is one signed response and its window.
type signed struct {
	der                    []byte
	thisUpdate, nextUpdate time.Time
}

// sign signs a response about serial for CA c: status ocsp.Good, ocsp.Revoked
// or ocsp.Unknown, with the CertID hashed with h (SHA-1 for pre-signed
// responses, RFC 5019). nextUpdate is now + OCSPValidity, cut to the
// responder certificate's notAfter. The responder certificate is included so
// that clients can verify the delegation.
func (o *ocspSigner) sign(r issuer.OCSPResponder, c *ca, serial *big.Int, status int, revokedAt time.Time, reason int, h crypto.Hash, kind string) (signed, error) {
	now := o.clock.Now().UTC().Truncate(time.Second)
	next := now.Add(o.cfg.OCSPValidity)
	if na := r.Certificate.NotAfter; next.After(na) {
		next = na
	}
	if status != ocsp.Revoked {
		revokedAt, reason = time.Time{}, 0
	} else {
		revokedAt = revokedAt.UTC().Truncate(time.Second)
	}
	// ocsp.CreateResponse takes producedAt from the wall clock, to the minute.
	e := ocspEntry{serial: serial, status: status, revokedAt: revokedAt, reason: reason,
		thisUpdate: now, nextUpdate: next, producedAt: time.Now().Truncate(time.Minute).UTC()}
	var der []byte
	err := errNotCovered
	if t := o.template(r, c, h); t != nil {
		der, err = t.response(r.Signer, e)
	}
	if errors.Is(err, errNotCovered) {
		der, err = createResponse(c.cert, r.Certificate, e, h, r.Signer)
	}
	o.health.Record(err)
	if err != nil {
		return signed{}, fmt.Errorf("revoke: signing OCSP response for %s of %q: %w", serial.Text(16), c.rec.ID, err)
	}
	o.metrics.signedOCSP(c.rec.ID, kind)
	return signed{der: der, thisUpdate: now, nextUpdate: next}, nil
}

// createResponse is ocsp.CreateResponse for e, the reference the hand
// encoder (ocspTemplate.response) is held to. Its producedAt is its own.
func createResponse(issuer, responder *x509.Certificate, e ocspEntry, h crypto.Hash, priv crypto.Signer) ([]byte, error) {
	tmpl := ocsp.Response{
		Status:       e.status,
		SerialNumber: e.serial,
		ThisUpdate:   e.thisUpdate,
		NextUpdate:   e.nextUpdate,
		Certificate:  responder,
		IssuerHash:   h,
	}
	if e.status == ocsp.Revoked {
		tmpl.RevokedAt = e.revokedAt
		tmpl.RevocationReason = e.reason
	}
	return ocsp.CreateResponse(issuer, responder, tmpl, priv)
}

// signStatus signs the pre-signed (SHA-1 CertID) response for a stored
// certificate's status.
func (o *ocspSigner) signStatus(r issuer.OCSPResponder, c *ca, st store.RevocationStatus, kind string) (store.OCSPResponse, error) {
	serial, ok := new(big.Int).SetString(st.Serial, 16)
	if !ok {
		return store.OCSPResponse{}, fmt.Errorf("revoke: stored serial %q is not hex", st.Serial)
	}
	status, reason := ocsp.Good, 0
	if st.Revoked {
		status, reason = ocsp.Revoked, storedReasonCode(st.Reason)
	}
	s, err := o.sign(r, c, serial, status, st.RevokedAt, reason, crypto.SHA1, kind)
	if err != nil {
		return store.OCSPResponse{}, err
	}
	return store.OCSPResponse{
		Serial: st.Serial, IssuerID: c.rec.ID, Revoked: st.Revoked,
		ThisUpdate: s.thisUpdate, NextUpdate: s.nextUpdate, CertNotAfter: st.NotAfter, DER: s.der,
	}, nil
}

// signStatuses signs the pre-signed responses for sts with up to workers
// signatures at a time, in the order of sts; the first failure is returned.
func (o *ocspSigner) signStatuses(r issuer.OCSPResponder, c *ca, sts []store.RevocationStatus, kind string, workers int) ([]store.OCSPResponse, error) {
	out := make([]store.OCSPResponse, len(sts))
	errs := make([]error, len(sts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(workers, 1), len(sts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = o.signStatus(r, c, sts[i], kind)
			}
		}()
	}
	for i := range sts {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
