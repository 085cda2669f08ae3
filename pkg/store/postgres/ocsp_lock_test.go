package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// TestOCSPResponderWaitsForAnAbandonOfItsIssuer holds the issuer's row FOR
// UPDATE, as AbandonIssuers does, while InsertOCSPResponder runs: the insert
// reads the issuer FOR SHARE, so it waits, and once the abandon commits the
// retirement it refuses the responder (store.ErrConflict). Without the shared
// lock, READ COMMITTED reads the issuer still prepared without waiting and
// records a responder for an issuer being retired, whose keys abandon
// would then miss.
func TestOCSPResponderWaitsForAnAbandonOfItsIssuer(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	if err := s.InsertIssuer(ctx, store.Issuer{ID: "int-2", Kind: store.KindRoot, KeyURI: "pkcs11:object=int-2",
		CertDER: []byte{0x30, 1}, SubjectKeyID: []byte{1}, NotBefore: t0, NotAfter: t0.Add(time.Hour),
		State: store.IssuerPrepared, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}

	abandon, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer abandon.Close(context.WithoutCancel(ctx))
	tx, err := abandon.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT state FROM issuers WHERE id = 'int-2' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- s.InsertOCSPResponder(ctx, store.OCSPResponder{Serial: "0a0b", IssuerID: "int-2",
			KeyURI: "pkcs11:object=ocsp-int-2", CertDER: []byte{0x30, 2}, NotBefore: t0, NotAfter: t0.Add(time.Hour), CreatedAt: t0})
	}()

	// A third session watches for the insert's backend waiting on a lock
	// (the database is this test's own; pg_stat_activity is read outside a
	// transaction, a fresh snapshot each time).
	watch, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.WithoutCancel(ctx))
	testkit.Eventually(t, 30*time.Second, "InsertOCSPResponder waits for the issuer's row lock", func() error {
		select {
		case err := <-done:
			t.Fatalf("InsertOCSPResponder returned while the issuer was locked for an abandon: %v", err)
		default:
		}
		var waiting int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err == nil && waiting == 0 {
			err = errors.New("no session waits for a lock")
		}
		return err
	})

	if _, err := tx.Exec(ctx, `UPDATE issuers SET state = $1 WHERE id = 'int-2'`, store.IssuerRetired); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, store.ErrConflict) {
		t.Fatalf("InsertOCSPResponder after the abandon committed = %v, want ErrConflict (issuer retired)", err)
	}
	if r, err := s.LatestOCSPResponder(ctx, "int-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestOCSPResponder of the retired issuer = %+v, %v; want ErrNotFound", r, err)
	}
}
