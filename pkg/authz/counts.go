package authz

import (
	"sort"
	"sync"
)

// DefaultMaxCountKeys bounds the distinct (source, endpoint, decision,
// reason) keys Counts holds between two reports; decisions for further keys
// are only counted in Dropped.
const DefaultMaxCountKeys = 1000

// CountKey is what decisions are counted by.
type CountKey struct {
	PolicyVersion string
	Source        string
	Endpoint      string
	Decision      string
	Reason        string
}

// CountRow is one counted key, as the reporter sends it.
type CountRow struct {
	Source   string `json:"source"`
	Endpoint string `json:"endpoint"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Count    int64  `json:"count"`
}

// Counts counts decisions per (policy version, source, endpoint, decision,
// reason) for the reporter, bounded in memory. Safe for concurrent use; the
// zero value is not usable, use NewCounts.
type Counts struct {
	max int

	mu      sync.Mutex
	m       map[CountKey]int64
	dropped int64
}

// NewCounts returns an empty counter holding at most maxKeys keys
// (DefaultMaxCountKeys if maxKeys <= 0).
func NewCounts(maxKeys int) *Counts {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxCountKeys
	}
	return &Counts{max: maxKeys, m: map[CountKey]int64{}}
}

// Add counts one decision.
func (c *Counts) Add(source string, d Decision) {
	k := CountKey{PolicyVersion: d.PolicyVersion, Source: source, Endpoint: d.Endpoint, Decision: d.Decision, Reason: d.Reason}
	c.mu.Lock()
	if _, ok := c.m[k]; ok || len(c.m) < c.max {
		c.m[k]++
	} else {
		c.dropped++
	}
	c.mu.Unlock()
}

// Take returns the counts so far, grouped by policy version with rows sorted,
// and the number of decisions dropped for lack of room, and starts over.
func (c *Counts) Take() (byVersion map[string][]CountRow, dropped int64) {
	c.mu.Lock()
	m, dropped := c.m, c.dropped
	c.m, c.dropped = make(map[CountKey]int64, len(m)), 0
	c.mu.Unlock()
	byVersion = map[string][]CountRow{}
	for k, n := range m {
		byVersion[k.PolicyVersion] = append(byVersion[k.PolicyVersion], CountRow{Source: k.Source, Endpoint: k.Endpoint, Decision: k.Decision, Reason: k.Reason, Count: n})
	}
	for _, rows := range byVersion {
		sort.Slice(rows, func(i, j int) bool {
			a, b := rows[i], rows[j]
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
	}
	return byVersion, dropped
}

// restore adds rows back (a report that could not be delivered), within the
// bound.
func (c *Counts) restore(version string, rows []CountRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		k := CountKey{PolicyVersion: version, Source: r.Source, Endpoint: r.Endpoint, Decision: r.Decision, Reason: r.Reason}
		if _, ok := c.m[k]; ok || len(c.m) < c.max {
			c.m[k] += r.Count
		} else {
			c.dropped += r.Count
		}
	}
}
