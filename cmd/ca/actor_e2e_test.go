package main

import (
	"context"
	"os"
	"os/user"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// TestOperatorCommandsRecordTheOSUserAndHost runs `ca issuers rotate`, `ca
// jwt-keys rotate` and `ca bundle rollback` with the real binary on Postgres
// and SoftHSM: each audit entry they append names what --actor said (or
// ca-cli) together with the OS user and host that ran the command.
func TestOperatorCommandsRecordTheOSUserAndHost(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	token := testkit.SoftHSM(t)
	vars := map[string]string{
		"CA_DATABASE_URL":  dbURL,
		"CA_PKCS11_MODULE": token.Module,
		"CA_PKCS11_TOKEN":  token.TokenLabel,
		"CA_PKCS11_PIN":    token.PIN,
		"CA_TRUST_DOMAIN":  "prod.example",
	}
	run := func(args ...string) {
		t.Helper()
		if out, errOut, code := runCA(t, vars, args...); code != 0 {
			t.Fatalf("ca %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	run("init")
	ctx := context.Background()
	st, err := storeopen.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head := func() int64 {
		t.Helper()
		var last int64
		for {
			page, err := st.AuditEntries(ctx, last, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				return last
			}
			last = page[len(page)-1].Seq
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	suffix := " [os:" + u.Username + "@" + host + "]"

	steps := []struct {
		args   []string
		action string
		actor  string
	}{
		{[]string{"issuers", "rotate", "--actor", "ticket-42"}, "rotate", "ticket-42" + suffix},
		{[]string{"jwt-keys", "rotate", "--emergency"}, "", "ca-cli" + suffix},
		// --force: version 1 lacks the JWT key the emergency rotation activated,
		// so an unforced rollback to it is refused (and audited) as unsafe.
		{[]string{"bundle", "rollback", "--to", "1", "--force", "--actor", "ticket-43"}, "rollback", "ticket-43" + suffix},
	}
	for _, s := range steps {
		before := head()
		run(s.args...)
		page, err := st.AuditEntries(ctx, before, 1000)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, e := range page {
			if s.action != "" && e.Action != s.action {
				continue
			}
			if e.Actor != s.actor {
				t.Errorf("ca %v: audit entry %s %s by %q, want %q", s.args, e.Action, e.Target, e.Actor, s.actor)
			}
			found++
		}
		if found == 0 {
			var got []string
			for _, e := range page {
				got = append(got, e.Action+" by "+e.Actor)
			}
			t.Errorf("ca %v appended no %q audit entry; got %s", s.args, s.action, strings.Join(got, ", "))
		}
	}
}
