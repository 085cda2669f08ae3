package hold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// MaxDuration bounds a hold: 30 days. A hold is an incident measure, not a
// ban: past a month the operator should change the policy instead (remove
// the rule or the identity), which is versioned and reviewed.
const MaxDuration = 30 * 24 * time.Hour

// MinDuration is the shortest hold: one minute (shorter ones end before
// anyone could check them).
const MinDuration = time.Minute

// Audit actions of holds.
const (
	ActionHold    = "identity_hold"
	ActionRelease = "identity_release"
)

// Errors of this package; check them with errors.Is.
var (
	// ErrOnHold is matched by every *OnHoldError.
	ErrOnHold = errors.New("hold: identity on hold")
	// ErrInvalidDuration means a hold's duration is outside MinDuration..MaxDuration.
	ErrInvalidDuration = errors.New("hold: invalid hold duration")
	// ErrNotHeld means a release found no hold in force.
	ErrNotHeld = errors.New("hold: identity not on hold")
)

// OnHoldError refuses a request for an identity on hold.
type OnHoldError struct {
	SPIFFEID string
	Until    time.Time
	// Reason is the RFC 5280 reason name the hold was placed with.
	Reason string
}

func (e *OnHoldError) Error() string {
	return fmt.Sprintf("hold: %s is on hold until %s", e.SPIFFEID, e.Until.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrOnHold) true.
func (e *OnHoldError) Is(target error) bool { return target == ErrOnHold }

// ValidateDuration returns nil for MinDuration <= d <= MaxDuration, an error
// wrapping ErrInvalidDuration otherwise.
func ValidateDuration(d time.Duration) error {
	if d < MinDuration || d > MaxDuration {
		return fmt.Errorf("%w: %s is not between %s and %s (30 days)", ErrInvalidDuration, d, MinDuration, MaxDuration)
	}
	return nil
}

// Store is what holds are kept in; store.Store fits.
type Store interface {
	PlaceHold(ctx context.Context, h store.Hold, e store.AuditEntry) (store.Hold, store.AuditEntry, error)
	ActiveHold(ctx context.Context, spiffeID string, now time.Time) (store.Hold, error)
	ActiveHolds(ctx context.Context, now time.Time, limit int) ([]store.Hold, error)
	ReleaseHolds(ctx context.Context, spiffeID string, at time.Time, by string, e store.AuditEntry) ([]store.Hold, store.AuditEntry, error)
}

var _ Store = store.Store(nil)

// Holds places, releases, lists and checks identity holds. Check reads the
// store every time, so a hold placed or released through any replica
// applies on all of them at their next request; Precheck, the first of the
// two checks of an enrollment, may answer from a snapshot up to
// PrecheckMaxAge old (precheck.go). Safe for concurrent use.
type Holds struct {
	st      Store
	clock   clock.Clock
	log     *slog.Logger
	refused prometheus.Counter
	// snaps is Precheck's snapshot of the holds in force (precheck.go).
	snaps snapshots
	// rc groups Recheck's reads (recheck.go).
	rc rechecks
}

// New returns Holds over st and registers, in reg, the refusal counter
// (ca_identity_hold_refusals_total) and the gauge of holds in force
// (ca_identity_holds_active, read from the store at scrape time). A nil clk
// is the real clock, a nil log discards.
func New(st Store, clk clock.Clock, log *slog.Logger, reg prometheus.Registerer) (*Holds, error) {
	if st == nil {
		return nil, errors.New("hold: a store is required")
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Holds{st: st, clock: clk, log: log, refused: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ca_identity_hold_refusals_total",
		Help: "Enrollments, renewals and JWT-SVIDs refused because their identity is on hold.",
	})}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.refused, &activeGauge{h: h}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("hold: registering metrics: %w", err)
			}
		}
	}
	return h, nil
}

// Check returns nil when spiffeID may get certificates and JWT-SVIDs now, an
// *OnHoldError (ErrOnHold) when a hold is in force, or the store's error
// (the caller refuses then too: a hold that cannot be checked is not assumed
// absent). A nil *Holds checks nothing.
func (h *Holds) Check(ctx context.Context, spiffeID string) error {
	if h == nil {
		return nil
	}
	hd, err := h.st.ActiveHold(ctx, spiffeID, h.clock.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("hold: checking %s: %w", spiffeID, err)
	}
	h.refused.Inc()
	return &OnHoldError{SPIFFEID: spiffeID, Until: hd.Until, Reason: hd.Reason}
}

// Request is one hold to place.
type Request struct {
	SPIFFEID      string
	Duration      time.Duration
	Reason        string // the RFC 5280 reason name the operator gave
	Actor         string
	RequestID     string
	PolicyVersion string
	// Details are extra audit fields (for example how many certificates the
	// same request revoked); never secrets.
	Details map[string]any
}

// Place stores a hold on r.SPIFFEID for r.Duration from now and appends its
// audit entry (action identity_hold) in the same transaction. The caller
// validates the SPIFFE ID and reason; Place checks the duration
// (ErrInvalidDuration).
func (h *Holds) Place(ctx context.Context, r Request) (store.Hold, error) {
	if err := ValidateDuration(r.Duration); err != nil {
		return store.Hold{}, err
	}
	now := h.clock.Now()
	until := now.Add(r.Duration)
	details := map[string]any{"reason": r.Reason, "duration": r.Duration.String(), "until": until.UTC().Format(time.RFC3339)}
	for k, v := range r.Details {
		details[k] = v
	}
	raw, _ := json.Marshal(details)
	hd, _, err := h.st.PlaceHold(ctx, store.Hold{
		SPIFFEID: r.SPIFFEID, Reason: r.Reason, PlacedBy: r.Actor, PlacedAt: now, Until: until,
	}, store.AuditEntry{
		Time: now, Actor: r.Actor, Action: ActionHold, Target: r.SPIFFEID, Decision: "allow",
		PolicyVersion: r.PolicyVersion, RequestID: r.RequestID, Details: raw,
	})
	if err != nil {
		return store.Hold{}, fmt.Errorf("hold: placing on %s: %w", r.SPIFFEID, err)
	}
	h.dropSnapshot()
	h.log.WarnContext(ctx, "identity on hold", "spiffe_id", r.SPIFFEID, "until", hd.Until, "reason", r.Reason,
		"actor", r.Actor, "request_id", r.RequestID)
	return hd, nil
}

// Release ends every hold of spiffeID in force now and appends one audit
// entry (action identity_release) in the same transaction. ErrNotHeld (and
// nothing appended) when none is in force.
func (h *Holds) Release(ctx context.Context, spiffeID, actor, requestID, policyVersion string) ([]store.Hold, error) {
	now := h.clock.Now()
	raw, _ := json.Marshal(map[string]any{"released_at": now.UTC().Format(time.RFC3339)})
	list, _, err := h.st.ReleaseHolds(ctx, spiffeID, now, actor, store.AuditEntry{
		Time: now, Actor: actor, Action: ActionRelease, Target: spiffeID, Decision: "allow",
		PolicyVersion: policyVersion, RequestID: requestID, Details: raw,
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotHeld, spiffeID)
	}
	if err != nil {
		return nil, fmt.Errorf("hold: releasing %s: %w", spiffeID, err)
	}
	h.dropSnapshot()
	h.log.InfoContext(ctx, "identity hold released", "spiffe_id", spiffeID, "holds", len(list),
		"actor", actor, "request_id", requestID)
	return list, nil
}

// Active lists the holds in force now, soonest-ending first, at most limit
// (1000 when limit <= 0).
func (h *Holds) Active(ctx context.Context, limit int) ([]store.Hold, error) {
	list, err := h.st.ActiveHolds(ctx, h.clock.Now(), limit)
	if err != nil {
		return nil, fmt.Errorf("hold: listing: %w", err)
	}
	return list, nil
}

// activeGauge reports the holds in force, read from the store at scrape
// time (bounded by a short timeout; nothing is reported if it fails).
type activeGauge struct{ h *Holds }

var activeDesc = prometheus.NewDesc("ca_identity_holds_active",
	"Identity holds in force (held SPIFFE IDs: several holds of one identity count once), read from the store at scrape time; at most 1000.", nil, nil)

func (g *activeGauge) Describe(ch chan<- *prometheus.Desc) { ch <- activeDesc }

func (g *activeGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := g.h.Active(ctx, 0)
	if err != nil {
		g.h.log.Warn("counting identity holds for metrics failed", "err", err)
		return
	}
	ids := map[string]bool{}
	for _, hd := range list {
		ids[hd.SPIFFEID] = true
	}
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(len(ids)))
}
