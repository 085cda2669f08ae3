package revoke

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the revocation gauges and counters. A nil *metrics records
// nothing.
type metrics struct {
	crlAge      *prometheus.GaugeVec
	crlNumber   *prometheus.GaugeVec
	crlEntries  *prometheus.GaugeVec
	ocspAge     *prometheus.GaugeVec
	ocspSigned  *prometheus.CounterVec
	ocspLimited *prometheus.CounterVec
}

// newMetrics registers the collectors in reg; nil reg means no metrics.
// Registering twice in one registry returns the already registered
// collectors, so several components of one process can share them.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		crlAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_crl_age_seconds",
			Help: "Seconds since thisUpdate of the stored CRL of each issuer, as of the last publisher tick.",
		}, []string{"issuer"}),
		crlNumber: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_crl_number",
			Help: "CRL number of the stored CRL of each issuer.",
		}, []string{"issuer"}),
		crlEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_crl_entries",
			Help: "Entries in the stored CRL of each issuer.",
		}, []string{"issuer"}),
		ocspAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_ocsp_response_oldest_age_seconds",
			Help: "Seconds since thisUpdate of the oldest stored OCSP response for an unexpired leaf of each issuer, as of the last publisher tick.",
		}, []string{"issuer"}),
		ocspSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_ocsp_responses_signed_total",
			Help: "OCSP responses signed, by issuer and why: refresh (publisher), issued (pre-signed right after issuance), revoke, lazy (first request), unknown (never-issued serial), other_hash (non-SHA-1 CertID).",
		}, []string{"issuer", "kind"}),
		ocspLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_ocsp_signing_budget_exhausted_total",
			Help: "OCSP requests answered tryLater because the per-process signing budget they draw on was empty, by budget: unknown (never-issued serials), other_hash (issued serials, non-SHA-1 CertID), lazy (pre-signed response missing or lapsed).",
		}, []string{"budget"}),
	}
	var err error
	m.crlAge, err = register(reg, m.crlAge)
	if err == nil {
		m.crlNumber, err = register(reg, m.crlNumber)
	}
	if err == nil {
		m.crlEntries, err = register(reg, m.crlEntries)
	}
	if err == nil {
		m.ocspAge, err = register(reg, m.ocspAge)
	}
	if err == nil {
		m.ocspSigned, err = register(reg, m.ocspSigned)
	}
	if err == nil {
		m.ocspLimited, err = register(reg, m.ocspLimited)
	}
	if err != nil {
		return nil, fmt.Errorf("revoke: registering metrics: %w", err)
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) signedOCSP(issuerID, kind string) {
	if m != nil {
		m.ocspSigned.WithLabelValues(issuerID, kind).Inc()
	}
}

func (m *metrics) budgetExhausted(budget string) {
	if m != nil {
		m.ocspLimited.WithLabelValues(budget).Inc()
	}
}
