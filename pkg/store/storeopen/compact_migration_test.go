package storeopen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// TestCompactRowsBackfill rolls a database back to before migration 000014,
// records a lineage whose renewals carry the enrollment's provenance as
// "origin" (as schema 13 binaries did), one whose enrollment row is gone and
// one renewal without an origin, migrates up and checks that the lineage
// rows hold the enrollment provenance and the renewals no longer repeat it;
// then down again restores the origins.
func TestCompactRowsBackfill(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			url := b.url(t)
			for v := storeopen.ExpectedVersion; v > 13; v-- {
				if err := storeopen.Migrate(ctx, url, "down"); err != nil {
					t.Fatalf("down from %d: %v", v, err)
				}
			}
			at := func(min int) string {
				tm := time.Date(2031, 1, 1, 0, min, 0, 0, time.UTC)
				if b.name == "sqlite" {
					return fmt.Sprint(tm.UnixMicro())
				}
				return "'" + tm.Format(time.RFC3339) + "'"
			}
			b.exec(t, url, `INSERT INTO issuers (id, kind, key_uri, state, created_at, updated_at)
				VALUES ('root', 'root', 'soft:root', 'active', `+at(0)+`, `+at(0)+`)`)
			row := func(serial, renewedFrom, lineage, provenance string, min int) {
				rf := "NULL"
				if renewedFrom != "" {
					rf = "'" + renewedFrom + "'"
				}
				der := "'\\x00'"
				if b.name == "sqlite" {
					der = "x'00'"
				}
				b.exec(t, url, `INSERT INTO certificates (serial, issuer_id, spiffe_id, not_before, not_after, der,
					public_key_sha256, status, provenance, renewed_from, created_at, lineage, lineage_started_at)
					VALUES ('`+serial+`', 'root', 'spiffe://example.org/p', `+at(min)+`, `+at(min+60)+`, `+der+`,
					'ab', 'active', '`+provenance+`', `+rf+`, `+at(min)+`, '`+lineage+`', `+at(1)+`)`)
			}
			enr := `{"token_issuer":"github","sub":"repo:acme/payments","token_claims":{"repository":"acme/payments"}}`
			gone := `{"token_issuer":"gitlab","sub":"project:x"}`
			row("a1", "", "a1", enr, 1)
			row("b2", "a1", "a1", `{"shape":"renewal","renewed_from":"a1","lineage":"a1","origin":`+enr+`}`, 2)
			row("c3", "b2", "a1", `{"shape":"renewal","renewed_from":"b2","lineage":"a1","origin":`+enr+`}`, 3)
			row("e5", "x0", "x0", `{"shape":"renewal","renewed_from":"x0","lineage":"x0","origin":`+gone+`}`, 5) // x0 is gone
			row("f6", "y0", "y0", `{"shape":"renewal","renewed_from":"y0","lineage":"y0"}`, 6)                   // no origin

			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Fatalf("up: %v", err)
			}
			s, err := storeopen.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, w := range []struct{ serial, origin string }{{"a1", enr}, {"b2", enr}, {"c3", enr}, {"e5", gone}, {"f6", ""}} {
				c, err := s.GetCertificate(ctx, w.serial)
				if err != nil {
					t.Fatal(err)
				}
				if !sameJSON(c.Origin, w.origin) {
					t.Errorf("%s: origin %s, want %s", w.serial, c.Origin, w.origin)
				}
				if c.RenewedFrom != "" && strings.Contains(string(c.Provenance), "origin") {
					t.Errorf("%s: the renewal still repeats its origin: %s", w.serial, c.Provenance)
				}
				if w.serial == "a1" && !sameJSON(c.Provenance, enr) {
					t.Errorf("the enrollment's own provenance changed: %s", c.Provenance)
				}
			}
			s.Close()
			if err := storeopen.Migrate(ctx, url, "down"); err != nil {
				t.Fatalf("down after the backfill: %v", err)
			}
			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Fatalf("up again: %v", err)
			}
			s, err = storeopen.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if c, err := s.GetCertificate(ctx, "c3"); err != nil || !sameJSON(c.Origin, enr) {
				t.Errorf("after down and up, c3's origin is %s (%v)", c.Origin, err)
			}
		})
	}
}

func sameJSON(a []byte, b string) bool {
	if len(a) == 0 || b == "" {
		return len(a) == 0 && b == ""
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
