package revoke

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// leadershipName is the store leadership the publisher holds while it
// regenerates CRLs and OCSP responses.
const leadershipName = "revoke-publisher"

// Publisher keeps every CA's CRL and OCSP responses fresh in the store. Run
// it in every replica: on each tick (and at once after a revocation in this
// process) it tries to become the one leader across replicas (store
// leadership, a Postgres advisory lock) for the duration of that tick;
// replicas that are not leader only refresh their metrics. A leader that
// dies loses its lock with its database session, and another replica takes
// over on its next tick. All work is idempotent: CRL numbers come from the
// database, and the store refuses to replace a CRL by a lower number or an
// OCSP response by one contradicting a committed revocation.
type Publisher struct {
	d       Deps
	cfg     Config
	cas     *caSet
	signer  *ocspSigner
	metrics *metrics
	kick    chan struct{}
	issued  chan store.RevocationStatus // see Issued
	// kicked asks the next tick for a full OCSP scan (see RefreshOnce).
	kicked atomic.Bool
	// scans are, by issuer, the time and revocation counter of the last
	// OCSP scan; only the leader's ticks use them.
	scans map[string]ocspScan

	mu        sync.Mutex // guards onRevoked and scans
	onRevoked []func(issuerID, serial string)
}

// NewPublisher validates cfg and registers the metrics in d.Metrics.
func NewPublisher(d Deps, cfg Config) (*Publisher, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		d: d, cfg: cfg, metrics: m,
		cas:    newCASet(d.Store, d.Keys, d.Clock),
		signer: newOCSPSigner(d, cfg, m),
		kick:   make(chan struct{}, 1),
		issued: make(chan store.RevocationStatus, presignQueue),
		scans:  map[string]ocspScan{},
	}, nil
}

// Kick asks Run for a refresh now, without waiting for the tick; it never
// blocks.
func (p *Publisher) Kick() {
	p.kicked.Store(true)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// revoked tells the followers (Responder.Follow) that a revocation of
// serial under issuerID committed in this process.
func (p *Publisher) revoked(issuerID, serial string) {
	p.mu.Lock()
	fs := p.onRevoked
	p.mu.Unlock()
	for _, f := range fs {
		f(issuerID, serial)
	}
}

// Run calls RefreshOnce every Config.Tick and after each Kick until ctx is
// done, logging failures, and signs the first OCSP responses of what this
// process issues (Issued); it returns ctx's error.
func (p *Publisher) Run(ctx context.Context) error {
	presigned := make(chan struct{})
	defer func() { <-presigned }()
	go func() {
		defer close(presigned)
		p.presignLoop(ctx)
	}()
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	for {
		if _, err := p.RefreshOnce(ctx); err != nil && ctx.Err() == nil {
			p.d.Log.ErrorContext(ctx, "revocation publisher tick failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-p.kick:
		}
	}
}

// Report says what one RefreshOnce did.
type Report struct {
	// Leader is false when another replica held leadership: nothing was
	// regenerated.
	Leader bool
	// CRLs lists the CRLs published in this tick.
	CRLs []PublishedCRL
	// OCSPSigned counts OCSP responses signed and stored.
	OCSPSigned int
}

// PublishedCRL is one CRL a tick published.
type PublishedCRL struct {
	IssuerID string
	Number   int64
	Entries  int
}

// ocspScan is when the leader last scanned an issuer's OCSP work, and the
// issuer's revocation counter then.
type ocspScan struct {
	at  time.Time
	seq int64
}

// RefreshOnce is one tick: as leader, for every published CA, regenerate
// its CRL if there is none, it is within CRLMargin of nextUpdate, or a
// revocation happened since it was built; and, when a scan is due, issue or
// renew the OCSP responder certificate when due and sign missing, due and
// contradicted OCSP responses (at most OCSPTickLimit per CA). A scan is due
// every OCSPScanInterval, after a Kick, and when the issuer's revocation
// counter moved since the last one (a revocation through any replica): the
// scan reads every unexpired certificate of the issuer, too much for every
// tick once there are hundreds of thousands, and new certificates get their
// responses from the issuing replica (Issued) anyway. Every replica then
// refreshes its metrics. Errors of one CA do not stop the others; they are
// joined.
func (p *Publisher) RefreshOnce(ctx context.Context) (Report, error) {
	var rep Report
	lease, release, ok, err := p.d.Store.TryLease(ctx, leadershipName)
	if err != nil {
		return rep, fmt.Errorf("revoke: publisher leadership: %w", err)
	}
	var errs []error
	if ok {
		rep.Leader = true
		func() {
			defer release()
			// The work runs under the lease: a leader cut off from the
			// database stops within the lease's bound.
			ctx := lease
			defer func() {
				if cause := context.Cause(lease); errors.Is(cause, store.ErrLeaseLost) {
					p.d.Log.WarnContext(ctx, "revocation publisher lost leadership", "error", cause.Error())
					errs = append(errs, cause)
				}
			}()
			cas, err := p.cas.list(ctx, true)
			if err != nil {
				errs = append(errs, err)
				return
			}
			kicked := p.kicked.Swap(false)
			for _, c := range cas {
				now := p.d.Clock.Now()
				if !now.Before(c.cert.NotAfter) {
					continue // its leaves have all expired
				}
				id := c.rec.ID
				seq, err := p.d.Store.RevocationSeq(ctx, id)
				if err != nil {
					errs = append(errs, fmt.Errorf("revoke: revocations of %q: %w", id, err))
					continue
				}
				crl, err := p.refreshCRL(ctx, c, now, seq)
				if err != nil {
					errs = append(errs, err)
				} else if crl != nil {
					rep.CRLs = append(rep.CRLs, *crl)
				}
				p.mu.Lock()
				last, scanned := p.scans[id]
				p.mu.Unlock()
				if scanned && !kicked && last.seq == seq && now.Sub(last.at) < p.cfg.OCSPScanInterval {
					continue
				}
				n, more, err := p.refreshOCSP(ctx, c, now)
				rep.OCSPSigned += n
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if more {
					continue // a backlog: the next tick goes on with it
				}
				p.mu.Lock()
				p.scans[id] = ocspScan{at: now, seq: seq}
				p.mu.Unlock()
			}
		}()
	}
	if err := p.updateMetrics(ctx); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// refreshCRL publishes a new CRL for c when due; nil when it was not.
func (p *Publisher) refreshCRL(ctx context.Context, c *ca, now time.Time, seq int64) (*PublishedCRL, error) {
	id := c.rec.ID
	info, err := p.d.Store.CRLInfo(ctx, id)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return nil, fmt.Errorf("revoke: CRL of %q: %w", id, err)
	}
	due := missing || !now.Before(info.NextUpdate.Add(-p.cfg.CRLMargin)) || info.RevocationSeq < seq
	if !due {
		return nil, nil
	}
	start := time.Now()
	signer, err := p.cas.signer(ctx, c)
	if err != nil {
		return nil, err
	}
	entries, err := p.d.Store.RevokedEntries(ctx, id, now)
	if err != nil {
		return nil, fmt.Errorf("revoke: CRL of %q: %w", id, err)
	}
	number, err := p.d.Store.NextCRLNumber(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("revoke: CRL of %q: %w", id, err)
	}
	thisUpdate := now.UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(p.cfg.CRLValidity)
	der, err := signCRL(crlInput{Issuer: c.cert, Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: entries}, signer)
	if err != nil {
		return nil, fmt.Errorf("revoke: CRL %d of %q: %w", number, id, err)
	}
	err = p.d.Store.PutCRL(ctx, store.CRL{
		IssuerID: id, Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		RevocationSeq: seq, Entries: len(entries), DER: der,
	})
	if errors.Is(err, store.ErrConflict) {
		// A newer CRL was stored meanwhile (a leader that lost its session
		// and another that took over); it covers at least as much.
		p.d.Log.InfoContext(ctx, "CRL superseded before it was stored", "issuer", id, "crl_number", number)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revoke: storing CRL %d of %q: %w", number, id, err)
	}
	p.d.Log.InfoContext(ctx, "CRL published", "issuer", id, "crl_number", number, "entries", len(entries),
		"revocation_seq", seq, "bytes", len(der), "next_update", nextUpdate, "duration", time.Since(start))
	return &PublishedCRL{IssuerID: id, Number: number, Entries: len(entries)}, nil
}

// refreshOCSP makes sure c has a responder and signs the responses the
// store reports as missing, due or contradicted; more says it stopped at
// OCSPTickLimit with work left.
func (p *Publisher) refreshOCSP(ctx context.Context, c *ca, now time.Time) (signed int, more bool, err error) {
	r, err := p.signer.ensureResponder(ctx, c)
	if err != nil {
		return 0, false, fmt.Errorf("revoke: OCSP responder of %q: %w", c.rec.ID, err)
	}
	signedN, conflicts := 0, 0
	for signedN+conflicts < p.cfg.OCSPTickLimit {
		work, err := p.d.Store.OCSPWork(ctx, c.rec.ID, now, now.Add(p.cfg.OCSPMargin), p.cfg.OCSPBatch)
		if err != nil {
			return signedN, false, fmt.Errorf("revoke: OCSP work of %q: %w", c.rec.ID, err)
		}
		for chunk := range slices.Chunk(work, ocspPutChunk) {
			stored, conflicted, err := p.signAndStore(ctx, r, c, chunk, "refresh")
			signedN, conflicts = signedN+stored, conflicts+conflicted
			if err != nil {
				return signedN, false, err
			}
		}
		if len(work) < p.cfg.OCSPBatch {
			break
		}
		more = signedN+conflicts >= p.cfg.OCSPTickLimit
	}
	if signedN > 0 {
		p.d.Log.InfoContext(ctx, "OCSP responses refreshed", "issuer", c.rec.ID, "signed", signedN, "responder", r.Record.Serial)
	}
	return signedN, more, nil
}

// ocspPutChunk is how many signed responses go to the store in one
// transaction.
const ocspPutChunk = 256

// signAndStore signs the responses for sts (SignWorkers at a time) and
// stores them in one transaction. A response refused because the
// certificate was revoked meanwhile (or a newer one is stored) counts as a
// conflict: the next tick lists it again with its new status.
func (p *Publisher) signAndStore(ctx context.Context, r issuer.OCSPResponder, c *ca, sts []store.RevocationStatus, kind string) (stored, conflicts int, err error) {
	resps, err := p.signer.signStatuses(r, c, sts, kind, p.cfg.SignWorkers)
	if err != nil {
		return 0, 0, err
	}
	errs, err := p.d.Store.PutOCSPResponses(ctx, resps)
	if err != nil {
		return 0, 0, fmt.Errorf("revoke: storing %d OCSP responses of %q: %w", len(resps), c.rec.ID, err)
	}
	for i, err := range errs {
		switch {
		case err == nil:
			stored++
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			conflicts++
		default:
			return stored, conflicts, fmt.Errorf("revoke: storing the OCSP response for %s: %w", resps[i].Serial, err)
		}
	}
	return stored, conflicts, nil
}

// updateMetrics sets the age gauges from the store (cheap reads), on every
// replica.
func (p *Publisher) updateMetrics(ctx context.Context) error {
	if p.metrics == nil {
		return nil
	}
	cas, err := p.cas.list(ctx, false)
	if err != nil {
		return err
	}
	now := p.d.Clock.Now()
	for _, c := range cas {
		id := c.rec.ID
		info, err := p.d.Store.CRLInfo(ctx, id)
		switch {
		case err == nil:
			p.metrics.crlAge.WithLabelValues(id).Set(now.Sub(info.ThisUpdate).Seconds())
			p.metrics.crlNumber.WithLabelValues(id).Set(float64(info.Number))
			p.metrics.crlEntries.WithLabelValues(id).Set(float64(info.Entries))
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("revoke: metrics: %w", err)
		}
		oldest, ok, err := p.d.Store.OCSPOldest(ctx, id, now)
		if err != nil {
			return fmt.Errorf("revoke: metrics: %w", err)
		}
		if ok {
			p.metrics.ocspAge.WithLabelValues(id).Set(now.Sub(oldest).Seconds())
		} else {
			p.metrics.ocspAge.DeleteLabelValues(id)
		}
	}
	return nil
}
