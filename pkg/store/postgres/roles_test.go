package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// newRole creates a login role for this test and drops it at the end.
func newRole(t *testing.T, dbURL, attrs string) (role, roleURL string) {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role = "wca_test_" + hex.EncodeToString(b)
	exec := func(q string) error {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, q)
		return err
	}
	if err := exec("CREATE ROLE " + role + " LOGIN " + attrs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if err := exec(q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	u, _ := url.Parse(dbURL)
	u.User = url.User(role)
	return role, u.String()
}

func exposure(t *testing.T, dsn string) postgres.AuditLogExposure {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.AuditLogExposure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGrantRuntimeLeavesTheRoleOnlyAppendingToTheAuditLog(t *testing.T) {
	ctx := context.Background()
	dbURL := testkit.PostgresURL(t)
	if e := exposure(t, dbURL); !e.Alterable() || !e.Superuser || !e.Owner {
		t.Errorf("the migrating superuser: %+v (%s), want alterable as superuser and owner", e, e)
	}

	role, roleURL := newRole(t, dbURL, "")
	if err := postgres.GrantRuntime(ctx, dbURL, role); err != nil {
		t.Fatal(err)
	}
	if e := exposure(t, roleURL); e.Alterable() || e.Role != role || e.String() != "append-only" {
		t.Errorf("the runtime role after GrantRuntime: %+v (%s), want append-only", e, e)
	}
	// The signed audit checkpoints are append-only for the runtime role too.
	rc, err := pgx.Connect(ctx, roleURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range []string{"INSERT", "SELECT", "UPDATE", "DELETE"} {
		var has bool
		if err := rc.QueryRow(ctx, "SELECT has_table_privilege(current_user, 'audit_checkpoints', $1)", priv).Scan(&has); err != nil {
			t.Fatal(err)
		}
		if want := priv == "INSERT" || priv == "SELECT"; has != want {
			t.Errorf("runtime role has %s on audit_checkpoints: %t, want %t", priv, has, want)
		}
	}
	_ = rc.Close(ctx)

	// A later grant of UPDATE by hand is seen; granting again converges.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "GRANT UPDATE, TRIGGER ON audit_log TO "+role); err != nil {
		t.Fatal(err)
	}
	if e := exposure(t, roleURL); !e.Alterable() || e.String() != "UPDATE, TRIGGER" {
		t.Errorf("with UPDATE and TRIGGER granted: %+v (%s)", e, e)
	}
	if err := postgres.GrantRuntime(ctx, dbURL, role); err != nil {
		t.Fatal(err)
	}
	if e := exposure(t, roleURL); e.Alterable() {
		t.Errorf("granting again left %s", e)
	}

	super, _ := newRole(t, dbURL, "SUPERUSER")
	for name, r := range map[string]string{
		"an unknown role":     role + "_missing",
		"a superuser":         super,
		"the migrating owner": "postgres",
	} {
		if err := postgres.GrantRuntime(ctx, dbURL, r); !errors.Is(err, postgres.ErrRuntimeRole) {
			t.Errorf("GrantRuntime to %s: err = %v, want ErrRuntimeRole", name, err)
		}
	}
}
