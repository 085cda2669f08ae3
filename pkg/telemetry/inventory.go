package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// InventoryStore is what the inventory collector reads; both stores fit.
type InventoryStore interface {
	CertificateStats(ctx context.Context, now, since time.Time) (store.CertificateStats, error)
	LatestBundleSequence(ctx context.Context) (int64, error)
	ListJWTKeys(ctx context.Context) ([]store.JWTKey, error)
}

// DefaultInventoryTTL is how long a scrape's inventory reading is reused.
const DefaultInventoryTTL = 30 * time.Second

// inventoryTimeout bounds the store reads of one refresh.
const inventoryTimeout = 5 * time.Second

// Inventory is a prometheus.Collector of what the store holds: certificates
// by effective status, active certificates expiring within each of
// store.ExpiryBuckets, the published bundle sequence and the JWT-SVID keys
// by state. It reads the store on scrape, at most once per TTL, so scrapes
// by several Prometheus servers cost one set of queries. When the store
// cannot be read, the last reading is served with
// ca_inventory_read_success 0 (the scrape itself does not fail), and the
// failure is logged.
type Inventory struct {
	st    InventoryStore
	clock clock.Clock
	ttl   time.Duration
	log   *slog.Logger

	byStatus, expiring, bundleSeq, jwtKeys, success, age *prometheus.Desc

	mu   sync.Mutex
	last inventoryReading
	ok   bool
	read time.Time // when last was read successfully; zero if never
	try  time.Time // when the store was last tried
}

type inventoryReading struct {
	stats     store.CertificateStats
	bundleSeq int64
	jwtKeys   map[store.JWTKeyState]int
}

// NewInventory returns the collector; ttl <= 0 means DefaultInventoryTTL, a
// nil clock the real one, a nil log discards.
func NewInventory(st InventoryStore, clk clock.Clock, ttl time.Duration, log *slog.Logger) *Inventory {
	if ttl <= 0 {
		ttl = DefaultInventoryTTL
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Inventory{
		st: st, clock: clk, ttl: ttl, log: log,
		byStatus:  prometheus.NewDesc("ca_certificates", "Leaf certificates in the inventory by effective status (active, expired, revoked).", []string{"status"}, nil),
		expiring:  prometheus.NewDesc("ca_certificates_expiring", "Active leaf certificates expiring within the window from now (cumulative).", []string{"within"}, nil),
		bundleSeq: prometheus.NewDesc("ca_bundle_sequence", "Sequence number of the latest published trust bundle (0 if none).", nil, nil),
		jwtKeys:   prometheus.NewDesc("ca_jwt_keys", "JWT-SVID signing keys by state (prepared, active, retiring, retired).", []string{"state"}, nil),
		success:   prometheus.NewDesc("ca_inventory_read_success", "1 if the last inventory read from the store succeeded, else 0 (the gauges then show the previous reading).", nil, nil),
		age:       prometheus.NewDesc("ca_inventory_reading_age_seconds", "Seconds since the inventory gauges were read from the store.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (inv *Inventory) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{inv.byStatus, inv.expiring, inv.bundleSeq, inv.jwtKeys, inv.success, inv.age} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (inv *Inventory) Collect(ch chan<- prometheus.Metric) {
	r, ok, read, now := inv.reading()
	success := 0.0
	if ok {
		success = 1
	}
	ch <- prometheus.MustNewConstMetric(inv.success, prometheus.GaugeValue, success)
	if read.IsZero() {
		return // nothing read yet: no made-up zeros
	}
	ch <- prometheus.MustNewConstMetric(inv.age, prometheus.GaugeValue, now.Sub(read).Seconds())
	for _, s := range []store.CertStatus{store.CertActive, store.CertExpired, store.CertRevoked} {
		ch <- prometheus.MustNewConstMetric(inv.byStatus, prometheus.GaugeValue, float64(r.stats.ByStatus[s]), string(s))
	}
	var cum int64
	for i, n := range r.stats.Expiring {
		if i >= len(store.ExpiryBuckets) {
			break
		}
		cum += n
		ch <- prometheus.MustNewConstMetric(inv.expiring, prometheus.GaugeValue, float64(cum), store.ExpiryBuckets[i].String())
	}
	ch <- prometheus.MustNewConstMetric(inv.bundleSeq, prometheus.GaugeValue, float64(r.bundleSeq))
	for _, s := range []store.JWTKeyState{store.JWTKeyPrepared, store.JWTKeyActive, store.JWTKeyRetiring, store.JWTKeyRetired} {
		ch <- prometheus.MustNewConstMetric(inv.jwtKeys, prometheus.GaugeValue, float64(r.jwtKeys[s]), string(s))
	}
}

// reading returns the cached reading, refreshing it first when it is older
// than the TTL (failures are retried no more often than that either).
func (inv *Inventory) reading() (inventoryReading, bool, time.Time, time.Time) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	now := inv.clock.Now()
	if inv.try.IsZero() || now.Sub(inv.try) >= inv.ttl {
		inv.try = now
		r, err := inv.readStore(now)
		if err != nil {
			inv.ok = false
			inv.log.Warn("reading the inventory for metrics failed", "err", err)
		} else {
			inv.last, inv.ok, inv.read = r, true, now
		}
	}
	return inv.last, inv.ok, inv.read, now
}

func (inv *Inventory) readStore(now time.Time) (inventoryReading, error) {
	ctx, cancel := context.WithTimeout(context.Background(), inventoryTimeout)
	defer cancel()
	var r inventoryReading
	var err error
	if r.stats, err = inv.st.CertificateStats(ctx, now, now); err != nil {
		return r, err
	}
	if r.bundleSeq, err = inv.st.LatestBundleSequence(ctx); err != nil {
		return r, err
	}
	keys, err := inv.st.ListJWTKeys(ctx)
	if err != nil {
		return r, err
	}
	r.jwtKeys = map[store.JWTKeyState]int{}
	for _, k := range keys {
		r.jwtKeys[k.State]++
	}
	return r, nil
}
