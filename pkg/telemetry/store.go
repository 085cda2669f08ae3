package telemetry

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Store is a store.Store that times every call into
// ca_store_call_duration_seconds{method, outcome} and otherwise behaves
// exactly like the store it wraps: same results, same errors.
type Store struct {
	inner    store.Store
	duration *prometheus.HistogramVec
}

var _ store.Store = (*Store)(nil)

// InstrumentStore wraps inner, registering the latency histogram in reg.
func InstrumentStore(inner store.Store, reg prometheus.Registerer) (*Store, error) {
	h, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ca_store_call_duration_seconds",
		Help:    "Time of store (database) calls, by method and outcome (ok, not_found, conflict, unavailable, invalid, canceled, error).",
		Buckets: latencyBuckets,
	}, []string{"method", "outcome"}))
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering store metrics: %w", err)
	}
	return &Store{inner: inner, duration: h}, nil
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.inner }

// timed starts timing one call of method; the returned function, deferred
// with the call's named error result, observes it.
func (s *Store) timed(method string) func(*error) {
	start := time.Now()
	return func(err *error) {
		s.duration.WithLabelValues(method, outcome(*err)).Observe(time.Since(start).Seconds())
	}
}

// InsertIssuer implements store.Store, timed.
func (s *Store) InsertIssuer(ctx context.Context, is store.Issuer) (err error) {
	defer s.timed("InsertIssuer")(&err)
	return s.inner.InsertIssuer(ctx, is)
}

// GetIssuer implements store.Store, timed.
func (s *Store) GetIssuer(ctx context.Context, id string) (is store.Issuer, err error) {
	defer s.timed("GetIssuer")(&err)
	return s.inner.GetIssuer(ctx, id)
}

// ListIssuers implements store.Store, timed.
func (s *Store) ListIssuers(ctx context.Context) (list []store.Issuer, err error) {
	defer s.timed("ListIssuers")(&err)
	return s.inner.ListIssuers(ctx)
}

// SetIssuerState implements store.Store, timed.
func (s *Store) SetIssuerState(ctx context.Context, id string, from, to store.IssuerState, at time.Time) (err error) {
	defer s.timed("SetIssuerState")(&err)
	return s.inner.SetIssuerState(ctx, id, from, to, at)
}

// SetIssuerCertificate implements store.Store, timed.
func (s *Store) SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) (err error) {
	defer s.timed("SetIssuerCertificate")(&err)
	return s.inner.SetIssuerCertificate(ctx, id, der, subjectKeyID, notBefore, notAfter, at)
}

// RecordIssuance implements store.Store, timed.
func (s *Store) RecordIssuance(ctx context.Context, c store.Certificate, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("RecordIssuance")(&err)
	return s.inner.RecordIssuance(ctx, c, e)
}

// GetCertificate implements store.Store, timed.
func (s *Store) GetCertificate(ctx context.Context, serial string) (c store.Certificate, err error) {
	defer s.timed("GetCertificate")(&err)
	return s.inner.GetCertificate(ctx, serial)
}

// ListCertificates implements store.Store, timed.
func (s *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) (page []store.Certificate, next string, err error) {
	defer s.timed("ListCertificates")(&err)
	return s.inner.ListCertificates(ctx, f)
}

// RevokeCertificate implements store.Store, timed.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, e store.AuditEntry) (c store.Certificate, entry store.AuditEntry, err error) {
	defer s.timed("RevokeCertificate")(&err)
	return s.inner.RevokeCertificate(ctx, serial, at, reason, e)
}

// RevokeMany implements store.Store, timed.
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) (certs []store.Certificate, entries []store.AuditEntry, err error) {
	defer s.timed("RevokeMany")(&err)
	return s.inner.RevokeMany(ctx, scope, at, reason, e)
}

// RevokedCertificates implements store.Store, timed.
func (s *Store) RevokedCertificates(ctx context.Context, issuerID string, now time.Time) (list []store.Certificate, err error) {
	defer s.timed("RevokedCertificates")(&err)
	return s.inner.RevokedCertificates(ctx, issuerID, now)
}

// NextCRLNumber implements store.Store, timed.
func (s *Store) NextCRLNumber(ctx context.Context, issuerID string) (n int64, err error) {
	defer s.timed("NextCRLNumber")(&err)
	return s.inner.NextCRLNumber(ctx, issuerID)
}

// RevokedEntries implements store.Store, timed.
func (s *Store) RevokedEntries(ctx context.Context, issuerID string, now time.Time) (list []store.RevocationStatus, err error) {
	defer s.timed("RevokedEntries")(&err)
	return s.inner.RevokedEntries(ctx, issuerID, now)
}

// RevocationSeq implements store.Store, timed.
func (s *Store) RevocationSeq(ctx context.Context, issuerID string) (n int64, err error) {
	defer s.timed("RevocationSeq")(&err)
	return s.inner.RevocationSeq(ctx, issuerID)
}

// PutCRL implements store.Store, timed.
func (s *Store) PutCRL(ctx context.Context, c store.CRL) (err error) {
	defer s.timed("PutCRL")(&err)
	return s.inner.PutCRL(ctx, c)
}

// GetCRL implements store.Store, timed.
func (s *Store) GetCRL(ctx context.Context, issuerID string) (c store.CRL, err error) {
	defer s.timed("GetCRL")(&err)
	return s.inner.GetCRL(ctx, issuerID)
}

// CRLInfo implements store.Store, timed.
func (s *Store) CRLInfo(ctx context.Context, issuerID string) (c store.CRL, err error) {
	defer s.timed("CRLInfo")(&err)
	return s.inner.CRLInfo(ctx, issuerID)
}

// CertificateStatus implements store.Store, timed.
func (s *Store) CertificateStatus(ctx context.Context, serial string) (st store.RevocationStatus, err error) {
	defer s.timed("CertificateStatus")(&err)
	return s.inner.CertificateStatus(ctx, serial)
}

// OCSPWork implements store.Store, timed.
func (s *Store) OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) (list []store.RevocationStatus, err error) {
	defer s.timed("OCSPWork")(&err)
	return s.inner.OCSPWork(ctx, issuerID, now, refreshBefore, limit)
}

// PutOCSPResponse implements store.Store, timed.
func (s *Store) PutOCSPResponse(ctx context.Context, r store.OCSPResponse) (err error) {
	defer s.timed("PutOCSPResponse")(&err)
	return s.inner.PutOCSPResponse(ctx, r)
}

// PutOCSPResponses implements store.Store, timed.
func (s *Store) PutOCSPResponses(ctx context.Context, rs []store.OCSPResponse) (errs []error, err error) {
	defer s.timed("PutOCSPResponses")(&err)
	return s.inner.PutOCSPResponses(ctx, rs)
}

// GetOCSPResponse implements store.Store, timed.
func (s *Store) GetOCSPResponse(ctx context.Context, serial string) (r store.OCSPResponse, err error) {
	defer s.timed("GetOCSPResponse")(&err)
	return s.inner.GetOCSPResponse(ctx, serial)
}

// OCSPOldest implements store.Store, timed.
func (s *Store) OCSPOldest(ctx context.Context, issuerID string, now time.Time) (oldest time.Time, ok bool, err error) {
	defer s.timed("OCSPOldest")(&err)
	return s.inner.OCSPOldest(ctx, issuerID, now)
}

// InsertOCSPResponder implements store.Store, timed.
func (s *Store) InsertOCSPResponder(ctx context.Context, r store.OCSPResponder) (err error) {
	defer s.timed("InsertOCSPResponder")(&err)
	return s.inner.InsertOCSPResponder(ctx, r)
}

// LatestOCSPResponder implements store.Store, timed.
func (s *Store) LatestOCSPResponder(ctx context.Context, issuerID string) (r store.OCSPResponder, err error) {
	defer s.timed("LatestOCSPResponder")(&err)
	return s.inner.LatestOCSPResponder(ctx, issuerID)
}

// TryLeadership implements store.Store, timed.
func (s *Store) TryLeadership(ctx context.Context, name string) (release func(), ok bool, err error) {
	defer s.timed("TryLeadership")(&err)
	return s.inner.TryLeadership(ctx, name)
}

// TryLease implements store.Store, timed.
func (s *Store) TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error) {
	defer s.timed("TryLease")(&err)
	return s.inner.TryLease(ctx, name)
}

// MarkTokenUsed implements store.Store, timed.
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) (err error) {
	defer s.timed("MarkTokenUsed")(&err)
	return s.inner.MarkTokenUsed(ctx, key, expiresAt, now)
}

// PruneUsedTokens implements store.Store, timed.
func (s *Store) PruneUsedTokens(ctx context.Context, now time.Time) (n int64, err error) {
	defer s.timed("PruneUsedTokens")(&err)
	return s.inner.PruneUsedTokens(ctx, now)
}

// AppendAudit implements store.Store, timed.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("AppendAudit")(&err)
	return s.inner.AppendAudit(ctx, e)
}

// AuditEntries implements store.Store, timed.
func (s *Store) AuditEntries(ctx context.Context, afterSeq int64, limit int) (list []store.AuditEntry, err error) {
	defer s.timed("AuditEntries")(&err)
	return s.inner.AuditEntries(ctx, afterSeq, limit)
}

// AppendBundleVersion implements store.Store, timed.
func (s *Store) AppendBundleVersion(ctx context.Context, prev int64, v store.BundleVersion, e store.AuditEntry) (bv store.BundleVersion, entry store.AuditEntry, err error) {
	defer s.timed("AppendBundleVersion")(&err)
	return s.inner.AppendBundleVersion(ctx, prev, v, e)
}

// LatestBundleVersion implements store.Store, timed.
func (s *Store) LatestBundleVersion(ctx context.Context) (bv store.BundleVersion, err error) {
	defer s.timed("LatestBundleVersion")(&err)
	return s.inner.LatestBundleVersion(ctx)
}

// LatestBundleSequence implements store.Store, timed.
func (s *Store) LatestBundleSequence(ctx context.Context) (seq int64, err error) {
	defer s.timed("LatestBundleSequence")(&err)
	return s.inner.LatestBundleSequence(ctx)
}

// GetBundleVersion implements store.Store, timed.
func (s *Store) GetBundleVersion(ctx context.Context, sequence int64) (bv store.BundleVersion, err error) {
	defer s.timed("GetBundleVersion")(&err)
	return s.inner.GetBundleVersion(ctx, sequence)
}

// ListBundleVersions implements store.Store, timed.
func (s *Store) ListBundleVersions(ctx context.Context, before int64, limit int) (list []store.BundleVersion, err error) {
	defer s.timed("ListBundleVersions")(&err)
	return s.inner.ListBundleVersions(ctx, before, limit)
}

// MaxLeafNotAfter implements store.Store, timed.
func (s *Store) MaxLeafNotAfter(ctx context.Context, issuerID string) (t time.Time, err error) {
	defer s.timed("MaxLeafNotAfter")(&err)
	return s.inner.MaxLeafNotAfter(ctx, issuerID)
}

// InsertJWTKey implements store.Store, timed.
func (s *Store) InsertJWTKey(ctx context.Context, k store.JWTKey, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("InsertJWTKey")(&err)
	return s.inner.InsertJWTKey(ctx, k, e)
}

// ListJWTKeys implements store.Store, timed.
func (s *Store) ListJWTKeys(ctx context.Context) (list []store.JWTKey, err error) {
	defer s.timed("ListJWTKeys")(&err)
	return s.inner.ListJWTKeys(ctx)
}

// ActivateJWTKey implements store.Store, timed.
func (s *Store) ActivateJWTKey(ctx context.Context, kid string, at time.Time, previous store.JWTKeyState, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("ActivateJWTKey")(&err)
	return s.inner.ActivateJWTKey(ctx, kid, at, previous, e)
}

// RetireJWTKey implements store.Store, timed.
func (s *Store) RetireJWTKey(ctx context.Context, kid string, at time.Time, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("RetireJWTKey")(&err)
	return s.inner.RetireJWTKey(ctx, kid, at, e)
}

// Ping implements store.Store, timed.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.timed("Ping")(&err)
	return s.inner.Ping(ctx)
}

// Close implements store.Store; it is not timed.
func (s *Store) Close() error { return s.inner.Close() }

// Denials implements store.Store, timed.
func (s *Store) Denials(ctx context.Context, q store.DenialQuery) (groups []store.DenialGroup, err error) {
	defer s.timed("Denials")(&err)
	return s.inner.Denials(ctx, q)
}

// CertificateStats implements store.Store, timed.
func (s *Store) CertificateStats(ctx context.Context, now, since time.Time) (st store.CertificateStats, err error) {
	defer s.timed("CertificateStats")(&err)
	return s.inner.CertificateStats(ctx, now, since)
}

// RemoveAuditPrefix implements store.Store, timed.
func (s *Store) RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record store.AuditEntry) (out store.AuditEntry, n int64, err error) {
	defer s.timed("RemoveAuditPrefix")(&err)
	return s.inner.RemoveAuditPrefix(ctx, through, throughHash, record)
}
