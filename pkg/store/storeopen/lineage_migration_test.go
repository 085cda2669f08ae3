package storeopen_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// TestLineageBackfill rolls a database back to before migration 000007,
// records a chain of renewals the way older binaries did (provenance only,
// and two renewals of one certificate, which they allowed), migrates up and
// checks the backfilled lineage columns.
func TestLineageBackfill(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			url := b.url(t)
			for v := storeopen.ExpectedVersion; v > 6; v-- {
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
			row := func(serial, renewedFrom, provenance string, min int) {
				rf := "NULL"
				if renewedFrom != "" {
					rf = "'" + renewedFrom + "'"
				}
				der := "'\\x00'"
				if b.name == "sqlite" {
					der = "x'00'"
				}
				b.exec(t, url, `INSERT INTO certificates (serial, issuer_id, spiffe_id, not_before, not_after, der,
					public_key_sha256, status, provenance, renewed_from, created_at)
					VALUES ('`+serial+`', 'root', 'spiffe://example.org/p', `+at(min)+`, `+at(min+60)+`, `+der+`,
					'ab', 'active', '`+provenance+`', `+rf+`, `+at(min)+`)`)
			}
			row("a1", "", `{"token_issuer":"github","sub":"repo:acme/payments","claims":{"repository":"acme/payments"}}`, 1)
			row("b2", "a1", `{"shape":"renewal","renewed_from":"a1"}`, 2)
			row("c3", "b2", `{"shape":"renewal","renewed_from":"b2"}`, 3)
			row("d4", "a1", `{"shape":"renewal","renewed_from":"a1"}`, 4) // a second renewal of a1
			row("e5", "", `{"token_issuer":"gitlab","sub":"project:x"}`, 5)
			row("f6", "ffff", `{"shape":"renewal"}`, 6) // its predecessor is gone

			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Fatalf("up: %v", err)
			}
			s, err := storeopen.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			started := time.Date(2031, 1, 1, 0, 1, 0, 0, time.UTC)
			for _, w := range []struct {
				serial, lineage, repo, issuer, subject, by string
				started                                    time.Time
			}{
				{"a1", "a1", "acme/payments", "github", "repo:acme/payments", "b2", started},
				{"b2", "a1", "acme/payments", "github", "repo:acme/payments", "c3", started},
				{"c3", "a1", "acme/payments", "github", "repo:acme/payments", "", started},
				{"d4", "a1", "acme/payments", "github", "repo:acme/payments", "", started},
				{"e5", "e5", "", "gitlab", "project:x", "", started.Add(4 * time.Minute)},
				{"f6", "f6", "", "", "", "", started.Add(5 * time.Minute)},
			} {
				c, err := s.GetCertificate(ctx, w.serial)
				if err != nil {
					t.Fatal(err)
				}
				if c.Lineage != w.lineage || c.Repository != w.repo || c.TokenIssuer != w.issuer || c.Subject != w.subject ||
					c.SupersededBy != w.by || !c.LineageStartedAt.Equal(w.started) {
					t.Errorf("%s backfilled as lineage %q repository %q issuer %q subject %q superseded_by %q started %v; want %+v",
						w.serial, c.Lineage, c.Repository, c.TokenIssuer, c.Subject, c.SupersededBy, c.LineageStartedAt, w)
				}
			}
			s.Close()
			for v := storeopen.ExpectedVersion; v > 6; v-- {
				if err := storeopen.Migrate(ctx, url, "down"); err != nil {
					t.Fatalf("down from %d after the backfill: %v", v, err)
				}
			}
			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Fatalf("up again: %v", err)
			}
		})
	}
}
