package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

func TestSessionsCarryServerSideBounds(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, testkit.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, want := range map[string]string{
		"statement_timeout":                   "30s",
		"idle_in_transaction_session_timeout": "1min",
		"tcp_keepalives_idle":                 "15",
		"tcp_keepalives_interval":             "5",
		"tcp_keepalives_count":                "3",
		"tcp_user_timeout":                    "30000",
	} {
		got, err := s.ShowSetting(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("session setting %s = %q, want %q", name, got, want)
		}
	}
}

func TestDatabaseURLSettingsWinOverTheDefaults(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(testkit.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("statement_timeout", "5000")
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.ShowSetting(ctx, "statement_timeout"); err != nil || got != "5s" {
		t.Errorf("statement_timeout from the URL = %q (%v), want 5s", got, err)
	}
}

// A partition drops packets: no refusal, no reset. Every call must still
// come back with store.ErrUnavailable at its deadline, and the store must
// work again once the partition heals.
func TestBlackholedDatabaseIsUnavailableAtTheDeadlineAndRecovers(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.PartitionProxy(t, u.Host)
	u.Host = p.Addr()
	ctx := context.Background()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open through the proxy: %v", err)
	}
	defer s.Close()
	issuer := store.Issuer{ID: "int", Kind: store.KindRoot, KeyURI: "k", State: store.IssuerActive,
		CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
	if err := s.InsertIssuer(ctx, issuer); err != nil {
		t.Fatal(err)
	}
	record := func(ctx context.Context) error {
		var b [10]byte
		_, _ = rand.Read(b[:])
		sn := "7" + hex.EncodeToString(b[:])
		_, err := s.RecordIssuance(ctx, store.Certificate{
			Serial: sn, IssuerID: "int", SPIFFEID: "spiffe://example.org/x",
			NotBefore: time.Unix(10, 0), NotAfter: time.Unix(1000, 0), DER: []byte{1},
			PublicKeySHA256: sn, Status: store.CertActive, CreatedAt: time.Unix(10, 0),
		}, store.AuditEntry{Time: time.Unix(10, 0), Actor: "t", Action: "issue", Target: sn, Decision: "allow"})
		return err
	}
	if err := record(ctx); err != nil {
		t.Fatalf("RecordIssuance before the partition: %v", err)
	}
	mark := func(ctx context.Context) error {
		var b [10]byte
		_, _ = rand.Read(b[:])
		return s.MarkTokenUsed(ctx, "iss|"+hex.EncodeToString(b[:]), time.Now().Add(time.Hour), time.Now())
	}
	if err := mark(ctx); err != nil {
		t.Fatalf("MarkTokenUsed before the partition: %v", err)
	}

	p.Cut()
	const deadline = 1500 * time.Millisecond
	const margin = 500 * time.Millisecond
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Ping", s.Ping},
		{"RecordIssuance", record},
		{"AppendAudit", func(ctx context.Context) error {
			_, err := s.AppendAudit(ctx, store.AuditEntry{Time: time.Unix(2, 0), Actor: "t", Action: "deny", Decision: "deny"})
			return err
		}},
		{"GetIssuer", func(ctx context.Context) error { _, err := s.GetIssuer(ctx, "int"); return err }},
		{"RecordIssuance again, with the committer possibly still stuck", record},
		{"MarkTokenUsed", mark},
		{"MarkTokenUsed again, after a group that timed out", mark},
	}
	for _, c := range calls {
		cctx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		err := c.call(cctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s during the partition: %v; want store.ErrUnavailable", c.name, err)
		}
		if took > deadline+margin {
			t.Errorf("%s during the partition took %v with a %v deadline", c.name, took, deadline)
		}
	}

	p.Heal()
	var lastErr error
	recovered := false
	for i := 0; i < 10 && !recovered; i++ { // pooled connections cut mid-call are dropped one by one
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		lastErr = record(cctx)
		cancel()
		recovered = lastErr == nil
	}
	if !recovered {
		t.Fatalf("the store did not recover after the partition healed: %v", lastErr)
	}
	if err := mark(ctx); err != nil {
		t.Fatalf("MarkTokenUsed after the partition healed: %v", err)
	}
}
