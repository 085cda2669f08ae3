package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

type oneEntry struct{ e store.AuditEntry }

func (o oneEntry) AuditEntries(context.Context, int64, int) ([]store.AuditEntry, error) {
	return []store.AuditEntry{o.e}, nil
}

func TestServeWarnsWhenTheOldestAuditEntryIsOlderThanRetention(t *testing.T) {
	now := time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC)
	src := oneEntry{store.AuditEntry{Seq: 7, Time: now.Add(-100 * 24 * time.Hour)}}
	tests := []struct {
		name      string
		retention time.Duration
		warn      bool
	}{
		{"an entry 100 days old with a 90-day retention is warned about", 90 * 24 * time.Hour, true},
		{"an entry 100 days old with a 1-year retention is not", 8760 * time.Hour, false},
		{"without retention nothing is warned about", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnAuditRetention(context.Background(), tt.retention, src, now, slog.New(slog.NewJSONHandler(&buf, nil)))
			if got := strings.Contains(buf.String(), "older than retention.audit"); got != tt.warn {
				t.Errorf("warned %v, want %v: %s", got, tt.warn, buf.String())
			}
			if tt.warn && !strings.Contains(buf.String(), `"oldest_seq":7`) {
				t.Errorf("the warning does not name the oldest entry: %s", buf.String())
			}
		})
	}
}
