// Package telemetry measures the CA's dependencies for /metrics without the
// layers knowing: it times the store's statements (StoreTimer, a
// store.Observer the store's driver reports to), wraps the key store
// (latency of every HSM signature) and the leaf issuer (issuances by rule,
// outcome and reason), and collects the inventory (certificates by status,
// bundle sequence, JWT keys) from the store when scraped.
package telemetry
