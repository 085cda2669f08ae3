package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuthzPolicySource yields the current service-to-service authorization
// policy, nil when none is configured; `ca serve`'s holder fits.
type AuthzPolicySource interface {
	Load() *authz.Policy
}

// AuthzReader reads the emergency overrides and the per-minute decision
// aggregates the services report; the Postgres and SQLite stores fit.
type AuthzReader interface {
	ListAuthzReportCounts(ctx context.Context, service string, from, to time.Time, limit int) ([]store.AuthzReportCount, error)
	ListAuthzOverrides(ctx context.Context, limit int) ([]store.AuthzOverride, error)
}

const (
	// authzWindow is how far back the page reads the report aggregates.
	authzWindow = 24 * time.Hour
	// authzRowLimit bounds the aggregates read per service: 24h of minutes
	// times a few dozen (source, endpoint, decision, reason) keys.
	authzRowLimit = 50000
	// authzOverrideLimit bounds the overrides read (newest first).
	authzOverrideLimit = 1000
)

// authzObserved is one (source, endpoint, decision, reason) seen in the
// window, with whether the policy's allow list names the source.
type authzObserved struct {
	Source, Endpoint, Decision, Reason string
	Count                              int64
	PolicyAllows                       bool
}

// authzEdge is one allow entry of one endpoint that no report showed a
// call through in the window.
type authzEdge struct {
	Endpoint, Allow string
}

type authzService struct {
	authz.ServiceInfo
	Observed       []authzObserved
	Total          int64
	Denied         int64 // deny and would_deny
	WouldDeny      int64
	Verdict        string // ready | not-ready | no-traffic | enforcing
	VerdictText    string
	Hours          []bar
	HoursWidth     int
	Unobserved     []authzEdge
	Overrides      []authzOverrideRow
	Truncated      bool
	HasDenialHours bool
}

type authzOverrideRow struct {
	store.AuthzOverride
	State string
}

// authz is /ui/authz (auditor): per service of the authorization policy,
// its mode, the callers the services reported over the last 24h against
// what the policy allows, the would-deny traffic of a service in observe
// mode ("ready to enforce?"), denials per hour, allowed edges no report
// showed, and the active and pending emergency overrides. Read-only:
// overrides are requested and approved with the API or `ca authz`.
func (db *Dashboard) authz(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	if !s.has(policy.RoleAuditor) {
		db.fail(w, r, nil, http.StatusForbidden, "The authorization page needs the auditor role.")
		return
	}
	ctx := r.Context()
	now := db.clock.Now().UTC()
	var p *authz.Policy
	if db.d.AuthzPolicy != nil {
		p = db.d.AuthzPolicy.Load()
	}
	data := map[string]any{"Now": now, "Window": "24 hours"}
	if p == nil || db.d.Authz == nil {
		data["None"] = true
		db.render(w, r, http.StatusOK, "authz", "authz", "Service authorization", data)
		return
	}
	overrides, err := db.d.Authz.ListAuthzOverrides(ctx, authzOverrideLimit)
	if err != nil {
		db.internal(w, r, "reading authz overrides", err)
		return
	}
	end := now.Truncate(time.Hour).Add(time.Hour)
	from := end.Add(-authzWindow)
	var services []authzService
	known := map[string]bool{}
	for _, name := range p.Services() {
		info, ok := p.Describe(name)
		if !ok {
			continue
		}
		known[name] = true
		rows, err := db.d.Authz.ListAuthzReportCounts(ctx, name, from, end, authzRowLimit)
		if err != nil {
			db.internal(w, r, "reading authz reports", err)
			return
		}
		services = append(services, summarizeAuthz(p, info, rows, overrides, from, now))
	}
	// Overrides of services the policy no longer names still show.
	var orphans []authzOverrideRow
	for _, o := range overrides {
		if st := o.State(now); !known[o.Service] && (st == store.OverrideActive || st == store.OverridePending) {
			orphans = append(orphans, authzOverrideRow{AuthzOverride: o, State: string(st)})
		}
	}
	data["Version"] = p.Version()
	data["TrustDomain"] = p.TrustDomain()
	data["Services"] = services
	data["From"] = from
	data["Orphans"] = orphans
	db.render(w, r, http.StatusOK, "authz", "authz", "Service authorization", data)
}

// summarizeAuthz folds one service's per-minute aggregates (from, from+24h)
// into what the page shows.
func summarizeAuthz(p *authz.Policy, info authz.ServiceInfo, rows []store.AuthzReportCount, overrides []store.AuthzOverride, from, now time.Time) authzService {
	s := authzService{ServiceInfo: info, Truncated: len(rows) >= authzRowLimit}
	type key struct{ src, ep, dec, reason string }
	sums := map[key]int64{}
	hourly := make([]int64, int(authzWindow/time.Hour))
	// allowedFor caches the endpoints each source's allow lists name.
	allowedFor := map[string]map[string]bool{}
	for _, c := range rows {
		sums[key{c.Source, c.Endpoint, c.Decision, c.Reason}] += c.Count
		s.Total += c.Count
		if c.Decision == authz.DecisionDeny || c.Decision == authz.DecisionWouldDeny {
			s.Denied += c.Count
			if h := int(c.Minute.Sub(from) / time.Hour); h >= 0 && h < len(hourly) {
				hourly[h] += c.Count
			}
		}
		if c.Decision == authz.DecisionWouldDeny {
			s.WouldDeny += c.Count
		}
	}
	for k, n := range sums {
		eps, ok := allowedFor[k.src]
		if !ok {
			eps = map[string]bool{}
			for _, row := range p.Explain(info.Name, k.src) {
				eps[row.Endpoint] = true
			}
			allowedFor[k.src] = eps
		}
		s.Observed = append(s.Observed, authzObserved{Source: k.src, Endpoint: k.ep, Decision: k.dec, Reason: k.reason, Count: n,
			PolicyAllows: k.ep != "" && eps[k.ep]})
	}
	sort.Slice(s.Observed, func(i, j int) bool {
		a, b := s.Observed[i], s.Observed[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Endpoint != b.Endpoint {
			return a.Endpoint < b.Endpoint
		}
		if a.Decision != b.Decision {
			return a.Decision < b.Decision
		}
		return a.Reason < b.Reason
	})
	for _, ep := range info.Endpoints {
		for _, allow := range ep.Allow {
			seen := false
			for k := range sums {
				if k.ep == ep.Name && authz.AllowEntryMatches(allow, k.src) {
					seen = true
					break
				}
			}
			if !seen {
				s.Unobserved = append(s.Unobserved, authzEdge{Endpoint: ep.Name, Allow: allow})
			}
		}
	}
	switch {
	case info.Mode == "enforce":
		s.Verdict, s.VerdictText = "enforcing", "Enforcing: denied calls get 403."
	case s.WouldDeny > 0:
		s.Verdict, s.VerdictText = "not-ready", fmt.Sprintf("Not ready to enforce: %d request(s) would have been denied in the last 24 hours.", s.WouldDeny)
	case s.Total == 0:
		s.Verdict, s.VerdictText = "no-traffic", "Cannot tell: no decisions reported in the last 24 hours."
	default:
		s.Verdict, s.VerdictText = "ready", fmt.Sprintf("Ready to enforce: none of the %d request(s) reported in the last 24 hours would have been denied.", s.Total)
	}
	s.Hours, s.HoursWidth = hourBars(hourly, from)
	s.HasDenialHours = s.Denied > 0
	for _, o := range overrides {
		if o.Service != info.Name {
			continue
		}
		if st := o.State(now); st == store.OverrideActive || st == store.OverridePending {
			s.Overrides = append(s.Overrides, authzOverrideRow{AuthzOverride: o, State: string(st)})
		}
	}
	return s
}

// hourBars draws the denials per hour as SVG bars (attributes only: the CSP
// forbids inline styles), labelled every 3 hours with the UTC hour.
func hourBars(counts []int64, from time.Time) ([]bar, int) {
	const height, width, gap, top = 100, 22, 4, 16
	var peak int64 = 1
	for _, c := range counts {
		peak = max(peak, c)
	}
	bars := make([]bar, 0, len(counts))
	for i, c := range counts {
		h := int(c * height / peak)
		if c > 0 && h < 2 {
			h = 2
		}
		label := ""
		if i%3 == 0 {
			label = from.Add(time.Duration(i) * time.Hour).Format("15h")
		}
		x := gap + i*(width+gap)
		bars = append(bars, bar{Label: label, Count: c, X: x, Y: top + height - h, W: width, H: h,
			LabelY: top + height + 16, NumY: top + height - h - 3})
	}
	return bars, gap + len(counts)*(width+gap)
}
