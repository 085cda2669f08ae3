package revoke

import (
	"context"
	"errors"
	"time"

	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// presignQueue bounds the certificates waiting for their first OCSP
// response in one process. Beyond it Issued drops the note: the leader's
// OCSP scan signs what is missing anyway.
const presignQueue = 4096

// Issued notes that this process has just issued (and recorded) serial
// under issuerID, valid until notAfter, so that its good OCSP response is
// signed and stored within moments by this replica instead of waiting for
// the leader's next OCSP scan or for a relying party's first request. It never
// blocks. Any replica may store a first response: the store refuses one that
// contradicts a committed revocation, as for the responder's lazy signing.
func (p *Publisher) Issued(issuerID, serial string, notAfter time.Time) {
	select {
	case p.issued <- store.RevocationStatus{Serial: serial, IssuerID: issuerID, NotAfter: notAfter}:
	default:
	}
}

// LeafIssuer issues leaf certificates; issuer.Current, and the telemetry
// wrapper around it, are ones.
type LeafIssuer interface {
	Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error)
}

// Presigning returns inner, telling p about every certificate it issues
// (see Issued).
func (p *Publisher) Presigning(inner LeafIssuer) LeafIssuer {
	return presigning{inner: inner, p: p}
}

type presigning struct {
	inner LeafIssuer
	p     *Publisher
}

func (i presigning) Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error) {
	out, err := i.inner.Issue(ctx, r)
	if err == nil {
		i.p.Issued(out.IssuerID, out.Serial, out.NotAfter)
	}
	return out, err
}

// presignLinger is how long a round waits for more certificates after the
// first: at a moderate issuance rate this turns one commit per certificate
// into one per few dozen, for a first response that is at most this much
// later.
const presignLinger = 25 * time.Millisecond

// presignLoop signs and stores the first responses of what Issued noted
// until ctx is done. Each round takes what arrives within presignLinger of
// its first certificate (up to ocspPutChunk), so one transaction stores many
// responses.
func (p *Publisher) presignLoop(ctx context.Context) {
	linger := time.NewTimer(presignLinger)
	linger.Stop()
	for {
		var batch []store.RevocationStatus
		select {
		case <-ctx.Done():
			return
		case st := <-p.issued:
			batch = append(batch, st)
		}
		linger.Reset(presignLinger)
	more:
		for len(batch) < ocspPutChunk {
			select {
			case st := <-p.issued:
				batch = append(batch, st)
			case <-linger.C:
				break more
			case <-ctx.Done():
				return
			}
		}
		linger.Stop()
		p.presign(ctx, batch)
	}
}

// presign signs and stores the first responses of batch, by issuer.
// Failures are logged, not retried: the leader's OCSP scan covers what is
// missing.
func (p *Publisher) presign(ctx context.Context, batch []store.RevocationStatus) {
	byIssuer := map[string][]store.RevocationStatus{}
	var order []string
	for _, st := range batch {
		if _, ok := byIssuer[st.IssuerID]; !ok {
			order = append(order, st.IssuerID)
		}
		byIssuer[st.IssuerID] = append(byIssuer[st.IssuerID], st)
	}
	for _, id := range order {
		sts := byIssuer[id]
		err := p.presignIssuer(ctx, id, sts)
		if err != nil && ctx.Err() == nil {
			p.d.Log.WarnContext(ctx, "pre-signing OCSP responses after issuance failed; the leader's next OCSP scan will sign them",
				"issuer", id, "certificates", len(sts), "err", err.Error())
		}
	}
}

func (p *Publisher) presignIssuer(ctx context.Context, id string, sts []store.RevocationStatus) error {
	c, err := p.cas.get(ctx, id)
	if err != nil {
		return err
	}
	if c == nil {
		return errors.New("revoke: unknown issuer")
	}
	r, err := p.signer.responder(ctx, c)
	if errors.Is(err, issuer.ErrNoResponder) {
		return nil // the leader's first tick issues the responder, then signs
	}
	if err != nil {
		return err
	}
	_, _, err = p.signAndStore(ctx, r, c, sts, "issued")
	return err
}
