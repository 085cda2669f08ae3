package revoke

import (
	"crypto"
	"math/big"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// budgetResponder is a Responder of f with its own metrics registry.
func (f *fixture) budgetResponder() (*Responder, *prometheus.Registry) {
	f.t.Helper()
	reg := prometheus.NewRegistry()
	d := f.deps()
	d.Metrics = reg
	r, err := NewResponder(d, f.cfg)
	if err != nil {
		f.t.Fatalf("NewResponder: %v", err)
	}
	return r, reg
}

func exhausted(t *testing.T, reg *prometheus.Registry, budget string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ca_ocsp_signing_budget_exhausted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "budget", budget) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestAFloodOfUnknownSerialsDoesNotPushSHA256ClientsIntoTryLater(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			cfg := shortConfig()
			cfg.UnknownRate, cfg.UnknownBurst = 1, 3
			f := newFixture(t, b, cfg)
			p := f.publisher()
			leaves := []*big.Int{f.leaf("a", 2*time.Hour).Certificate.SerialNumber, f.leaf("b", 2*time.Hour).Certificate.SerialNumber}
			f.refresh(p)
			rs, reg := f.budgetResponder()
			ask := func(serial *big.Int, h crypto.Hash) Status {
				t.Helper()
				resp, err := rs.Respond(f.ctx, request(t, f.inter, serial, h))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Status
			}
			// An attacker invents serials, with both hashes, until the
			// unknown budget is gone.
			limited := 0
			for i := range int64(50) {
				h := crypto.SHA256
				if i%2 == 0 {
					h = crypto.SHA1
				}
				if ask(big.NewInt(1_000_000+i), h) == StatusTryLater {
					limited++
				}
			}
			if limited != 47 {
				t.Fatalf("%d of 50 invented serials answered tryLater, want 47 (burst 3)", limited)
			}
			if n := exhausted(t, reg, "unknown"); n != 47 {
				t.Errorf("unknown budget exhausted %v times, want 47", n)
			}
			// Issued serials asked with SHA-256 still get signed answers.
			for _, s := range leaves {
				if got := ask(s, crypto.SHA256); got != StatusGood {
					t.Errorf("SHA-256 request for issued serial %x during the flood: %s, want good", s, got)
				}
				if got := ask(s, crypto.SHA1); got != StatusGood {
					t.Errorf("SHA-1 request for issued serial %x during the flood: %s, want good", s, got)
				}
			}
			if n := exhausted(t, reg, "other_hash"); n != 0 {
				t.Errorf("other_hash budget exhausted %v times, want 0", n)
			}
		})
	}
}

func TestOtherHashRequestsHaveTheirOwnBoundedBudget(t *testing.T) {
	cfg := shortConfig()
	cfg.OtherHashRate, cfg.OtherHashBurst = 1, 2
	f := newFixture(t, sqliteBackend, cfg)
	p := f.publisher()
	var serials []*big.Int
	for _, n := range []string{"a", "b", "c"} {
		serials = append(serials, f.leaf(n, 2*time.Hour).Certificate.SerialNumber)
	}
	f.refresh(p)
	rs, reg := f.budgetResponder()
	before := f.keys.n.Load()
	var got []Status
	for _, s := range serials {
		resp, err := rs.Respond(f.ctx, request(t, f.inter, s, crypto.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Status)
	}
	if got[0] != StatusGood || got[1] != StatusGood || got[2] != StatusTryLater {
		t.Errorf("three issued serials asked with SHA-256 and a burst of 2: %v, want good, good, try_later", got)
	}
	if n := f.keys.n.Load() - before; n != 2 {
		t.Errorf("%d signatures, want 2", n)
	}
	if n := exhausted(t, reg, "other_hash"); n != 1 {
		t.Errorf("other_hash budget exhausted %v times, want 1", n)
	}
}

func TestOnRequestSigningOfMissingOrLapsedResponsesIsBounded(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			cfg := shortConfig()
			cfg.LazyRate, cfg.LazyBurst = 1, 3
			f := newFixture(t, b, cfg)
			f.refresh(f.publisher()) // the responder certificate; no leaf yet
			rs, reg := f.budgetResponder()
			// Leaves the publisher has not signed a response for.
			var serials []*big.Int
			for i := range 10 {
				serials = append(serials, f.leaf(string(rune('a'+i)), 2*time.Hour).Certificate.SerialNumber)
			}
			before := f.keys.n.Load()
			counts := map[Status]int{}
			for _, s := range serials {
				resp, err := rs.Respond(f.ctx, request(t, f.inter, s, crypto.SHA1))
				if err != nil {
					t.Fatal(err)
				}
				counts[resp.Status]++
			}
			if counts[StatusGood] != 3 || counts[StatusTryLater] != 7 {
				t.Errorf("10 serials without a stored response and a lazy burst of 3: %v, want 3 good and 7 try_later", counts)
			}
			if n := f.keys.n.Load() - before; n != 3 {
				t.Errorf("%d signatures on request, want 3", n)
			}
			if n := exhausted(t, reg, "lazy"); n != 7 {
				t.Errorf("lazy budget exhausted %v times, want 7", n)
			}
			// The stored ones are answered without a signature; once
			// lapsed, re-signing them draws on the same budget.
			f.clk.Advance(2 * time.Hour) // past nextUpdate (1h); the bucket refilled to 3
			before = f.keys.n.Load()
			counts = map[Status]int{}
			for range 3 {
				for _, s := range serials {
					resp, err := rs.Respond(f.ctx, request(t, f.inter, s, crypto.SHA1))
					if err != nil {
						t.Fatal(err)
					}
					counts[resp.Status]++
				}
			}
			if n := f.keys.n.Load() - before; n > 3 {
				t.Errorf("%d signatures on request for lapsed and missing responses within one second, want at most the burst of 3 (answers %v)", n, counts)
			}
		})
	}
}
