// Package telemetry measures the CA's dependencies for /metrics without the
// layers knowing: it wraps the store (latency of every call), the key store
// (latency of every HSM signature) and the leaf issuer (issuances by rule,
// outcome and reason), and collects the inventory (certificates by status,
// bundle sequence, JWT keys) from the store when scraped.
package telemetry
