package config

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretFile writes content to a 0600 file and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPINFileCanBeNamedInTheEnvironment(t *testing.T) {
	pin := secretFile(t, "4711\n")
	c, err := Load("", MapEnv(map[string]string{
		"CA_DATABASE_URL":    "postgres://ca@db:5432/ca",
		"CA_PKCS11_MODULE":   "/m.so",
		"CA_PKCS11_TOKEN":    "ca",
		"CA_PKCS11_PIN_FILE": pin,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PKCS11.PIN.Reveal() != "4711" || c.PKCS11.PINFile != pin {
		t.Errorf("PIN %q from %q, want 4711 from %s", c.PKCS11.PIN.Reveal(), c.PKCS11.PINFile, pin)
	}
}

func TestDatabasePasswordFileGoesIntoTheURL(t *testing.T) {
	// Characters that must be escaped in a URL's user info.
	pw := "p@ss:w/rd%?#"
	c, err := Load("", MapEnv(map[string]string{
		"CA_DATABASE_URL":           "postgres://ca@db:5432/ca?sslmode=disable",
		"CA_DATABASE_PASSWORD_FILE": secretFile(t, pw+"\n"),
		"CA_PKCS11_MODULE":          "/m.so",
		"CA_PKCS11_TOKEN":           "ca",
		"CA_PKCS11_PIN":             "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := u.User.Password()
	if got != pw || u.User.Username() != "ca" || u.Host != "db:5432" || u.Path != "/ca" || u.RawQuery != "sslmode=disable" {
		t.Errorf("URL parts: user %q password %q host %q path %q query %q", u.User.Username(), got, u.Host, u.Path, u.RawQuery)
	}
}

func TestDatabasePasswordFileRefusals(t *testing.T) {
	pw := secretFile(t, "hunter2\n")
	cases := []struct {
		name, url, file, want string
	}{
		{"sqlite", "sqlite:/tmp/x.db", pw, "goes only with a postgres"},
		{"password twice", "postgres://ca:other@db/ca", pw, "already carries a password"},
		{"no user", "postgres://db/ca", pw, "must name the user"},
		{"missing file", "postgres://ca@db/ca", filepath.Join(t.TempDir(), "absent"), "no such file"},
		{"empty file", "postgres://ca@db/ca", secretFile(t, "\n"), "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", MapEnv(map[string]string{
				"CA_DATABASE_URL":           tc.url,
				"CA_DATABASE_PASSWORD_FILE": tc.file,
			}))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "database_password_file" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a database_password_file field error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "other") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}
