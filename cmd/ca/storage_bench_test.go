package main

import (
	"context"
	"database/sql"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// Steady state of a fleet that renews hourly with 2-hour certificates
// under the default retention (retention.certificates 90 days after
// notAfter, retention.ocsp_responses 1 hour after notAfter, the audit log
// kept): per workload, (2160h + 2h) / 1h certificate rows and
// (2h + 1h) / 1h OCSP responses stay; audit entries grow by 24 a day.
const (
	steadyFleet        = 10_000
	steadyCertsPerWL   = (2160 + 2) / 1
	steadyOCSPPerWL    = (2 + 1) / 1
	steadyRenewalsADay = 24
)

// BenchmarkStorageSteadyState writes one workload fleet's history with
// `ca gendata --workloads` (10 workloads, hourly renewals of 2-hour
// certificates over the 2162 hours a certificate row is retained), measures
// bytes per certificate row (table, TOAST and indexes, lineages included),
// per OCSP response and per audit entry on each store, and reports the
// steady-state size of a 10,000-workload fleet computed from them (live
// rows x bytes per row; pruning itself is not run here).
func BenchmarkStorageSteadyState(b *testing.B) {
	for _, s := range historyStores() {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				url := s.url(b)
				ctx := context.Background()
				st, err := storeopen.Open(ctx, url)
				if err != nil {
					b.Fatal(err)
				}
				is := historyIssuer(b, st)
				p := historyPlan{workloads: 10, renewEvery: time.Hour, span: steadyCertsPerWL * time.Hour, ttl: 2 * time.Hour,
					reauth: 30 * 24 * time.Hour, ocspValid: 24 * time.Hour, batch: 20_000, seed: 1}
				if err := genHistory(ctx, st, p, is, "http://127.0.0.1:8080", "example.org", io.Discard); err != nil {
					b.Fatal(err)
				}
				st.Close()
				var sizes map[string]int64
				if s.name == "sqlite" {
					sizes = sqliteSizes(b, strings.TrimPrefix(url, "sqlite:"))
				} else {
					sizes = postgresSizes(b, url)
				}
				n := float64(p.certificates())
				cert := float64(sizes["certificates"]+sizes["lineages"]) / n
				resp := float64(sizes["ocsp_responses"]) / n
				audit := float64(sizes["audit_log"]) / n
				b.ReportMetric(cert, "B/cert")
				b.ReportMetric(resp, "B/ocsp")
				b.ReportMetric(audit, "B/audit")
				b.ReportMetric(cert+resp+audit, "B/issuance")
				b.ReportMetric(steadyFleet*(steadyCertsPerWL*cert+steadyOCSPPerWL*resp)/1e9, "GB-steady/10k-workloads")
				b.ReportMetric(steadyFleet*steadyRenewalsADay*audit/1e6, "MB-audit/day/10k-workloads")
				b.ReportMetric(steadyFleet*steadyRenewalsADay*(cert+resp+audit)/1e6, "MB/day-unpruned/10k-workloads")
			}
		})
	}
}

// sqliteSizes is the bytes of each table with its indexes (dbstat).
func sqliteSizes(b *testing.B, path string) map[string]int64 {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	rows, err := db.Query(`SELECT s.tbl_name, sum(d.pgsize) FROM dbstat d JOIN sqlite_schema s ON s.name = d.name GROUP BY s.tbl_name`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			b.Fatal(err)
		}
		out[name] = n
	}
	return out
}

// postgresSizes is pg_total_relation_size (heap, TOAST, indexes) of each
// table.
func postgresSizes(b *testing.B, url string) map[string]int64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for _, t := range []string{"certificates", "lineages", "ocsp_responses", "audit_log"} {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, t).Scan(&n); err != nil {
			b.Fatal(err)
		}
		out[t] = n
	}
	return out
}
