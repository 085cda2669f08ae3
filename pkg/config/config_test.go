package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadWithNothingGivesTheEmbeddedDevelopmentDefault(t *testing.T) {
	c, err := Load("", MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"data_dir":     "./ca-data",
		"database_url": "sqlite:ca-data/ca.db",
		"keys_dir":     "ca-data/keys",
		"api_addr":     "127.0.0.1:8443",
		"public_addr":  "127.0.0.1:8080",
		"api_url":      "https://127.0.0.1:8443",
		"public_url":   "http://127.0.0.1:8080",
		"trust_domain": "example.org",
	}
	got := map[string]string{
		"data_dir": c.DataDir, "database_url": c.DatabaseURL, "keys_dir": c.KeysDir,
		"api_addr": c.APIAddr, "public_addr": c.PublicAddr, "api_url": c.APIURL,
		"public_url": c.PublicURL, "trust_domain": c.TrustDomain,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if !c.DevelopmentMode() {
		t.Error("default is not development mode")
	}
	if c.Server.BodyLimit != 64<<10 || c.Issuer.KeyType != "ecdsa-p256" || c.Server.CertLifetime != 24*time.Hour || c.Issuer.Backdate != 5*time.Minute ||
		c.Log.ArtifactSample != 100 || c.Server.RequestTimeout != 10*time.Second ||
		c.Server.GCPercent != 400 || c.Server.MemoryLimitMiB != 0 {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestEnvironmentOverridesTheFileAndDerivesDependentDefaults(t *testing.T) {
	path := writeFile(t, `
data_dir: /from/file
api_addr: 127.0.0.1:1
trust_domain: file.example
issuer:
  default_ttl: 30m
`)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := MapEnv(map[string]string{
		"CA_CONFIG":        path,
		"CA_DATA_DIR":      "/from/env",
		"CA_API_ADDR":      "127.0.0.1:9443",
		"CA_PUBLIC_ADDR":   "127.0.0.1:9080",
		"CA_TRUST_DOMAIN":  "env.example",
		"CA_DATABASE_URL":  "postgres://postgres@127.0.0.1:5432/ca",
		"CA_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
		"CA_PKCS11_TOKEN":  "ca",
		"CA_PKCS11_PIN":    "9876",
		"CA_POLICY_FILE":   "/etc/ca/policy.yaml",
	})
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/from/env" || c.APIAddr != "127.0.0.1:9443" || c.TrustDomain != "env.example" {
		t.Errorf("env did not override file: %+v", c)
	}
	if c.APIURL != "https://127.0.0.1:9443" || c.PublicURL != "http://127.0.0.1:9080" {
		t.Errorf("URLs not derived from overridden addresses: %q %q", c.APIURL, c.PublicURL)
	}
	if c.KeysDir != "/from/env/keys" {
		t.Errorf("keys_dir = %q", c.KeysDir)
	}
	if c.Issuer.DefaultTTL != 30*time.Minute {
		t.Errorf("file value lost: default_ttl = %v", c.Issuer.DefaultTTL)
	}
	if c.PKCS11.PIN.Reveal() != "9876" || c.PolicyFile != "/etc/ca/policy.yaml" {
		t.Errorf("pkcs11/policy not taken from env")
	}
	if c.DevelopmentMode() {
		t.Error("postgres + PKCS#11 must not be development mode")
	}
}

func TestPINIsReadFromPinFileWhenTheEnvironmentHasNone(t *testing.T) {
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, fmt.Sprintf("pkcs11:\n  module: /m.so\n  token: ca\n  pin_file: %s\n", pinFile))
	c, err := Load(path, MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.PKCS11.PIN.Reveal() != "s3cret" {
		t.Errorf("PIN not read from file")
	}
}

func TestThePINNeverPrints(t *testing.T) {
	c := Default()
	c.PKCS11.PIN = "s3cret-pin"
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "pin", c.PKCS11.PIN, "pkcs11", c.PKCS11)
	j, _ := json.Marshal(c)
	outputs := []string{
		fmt.Sprintf("%v %+v %#v %s", c, c, c.PKCS11, c.PKCS11.PIN),
		buf.String(),
		string(j),
	}
	for _, out := range outputs {
		if strings.Contains(out, "s3cret-pin") {
			t.Errorf("PIN leaked: %s", out)
		}
	}
}

func TestThePINCannotBeSetInTheYAMLFile(t *testing.T) {
	path := writeFile(t, "pkcs11:\n  module: /m.so\n  token: ca\n  pin: 1234\n")
	_, err := Load(path, MapEnv(nil))
	if err == nil {
		t.Fatal("a pin in the YAML file was accepted")
	}
	if strings.Contains(err.Error(), "1234") {
		t.Errorf("error echoes the PIN: %v", err)
	}
}

func TestInvalidConfigurationNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   map[string]string
		field string
	}{
		{"an unknown field is refused", "api_adr: 127.0.0.1:1\n", nil, "config"},
		{"two unknown fields are refused on one line", "a: 1\nb: 2\n", nil, "config"},
		{"malformed YAML is refused", "api_addr: [\n", nil, "config"},
		{"a listen address without a port is refused", "", map[string]string{"CA_API_ADDR": "127.0.0.1"}, "api_addr"},
		{"a non-loopback address in development mode is refused", "public_addr: 0.0.0.0:8080\n", nil, "public_addr"},
		{"an empty host in development mode is refused", "api_addr: :8443\n", nil, "api_addr"},
		{"an http API URL is refused", "api_url: http://ca.example\n", nil, "api_url"},
		{"an unknown database scheme is refused", "database_url: mysql://x\n", nil, "database_url"},
		{"a PKCS#11 module without a token is refused", "pkcs11:\n  module: /m.so\n", map[string]string{"CA_PKCS11_PIN": "1"}, "pkcs11.token"},
		{"a PKCS#11 module without a PIN is refused", "pkcs11:\n  module: /m.so\n  token: ca\n", nil, "pkcs11.pin"},
		{"a token without a module is refused", "pkcs11:\n  token: ca\n", nil, "pkcs11.module"},
		{"an unknown key type is refused", "issuer:\n  key_type: dsa-1024\n", nil, "issuer.key_type"},
		{"a default TTL above the maximum is refused", "issuer:\n  default_ttl: 2h\n  max_ttl: 1h\n", nil, "issuer.default_ttl"},
		{"a negative backdate is refused", "issuer:\n  backdate: -1m\n", nil, "issuer.backdate"},
		{"a malformed duration is refused", "issuer:\n  max_ttl: forever\n", nil, "config"},
		{"a bad trust domain is refused", "", map[string]string{"CA_TRUST_DOMAIN": "Not A Domain"}, "trust_domain"},
		{"an unknown log level is refused", "log:\n  level: loud\n", nil, "log.level"},
		{"an artifact_requests level other than info or debug is refused", "log:\n  artifact_requests: warn\n", nil, "log.artifact_requests"},
		{"a negative artifact_sample is refused", "log:\n  artifact_sample: -1\n", nil, "log.artifact_sample"},
		{"a negative body limit is refused", "server:\n  body_limit: -1\n", nil, "server.body_limit"},
		{"a server certificate outliving max_ttl is refused", "server:\n  cert_lifetime: 48h\n", nil, "server.cert_lifetime"},
		{"a negative request timeout is refused", "server:\n  request_timeout: -1s\n", nil, "server.request_timeout"},
		{"a readiness check longer than the request deadline is refused", "server:\n  request_timeout: 1s\n  ready_timeout: 2s\n", nil, "server.ready_timeout"},
		{"a GC target below 50 is refused", "server:\n  gc_percent: 10\n", nil, "server.gc_percent"},
		{"a memory limit below 64 MiB is refused", "server:\n  memory_limit_mib: 16\n", nil, "server.memory_limit_mib"},
		{"a negative memory limit is refused", "server:\n  memory_limit_mib: -1\n", nil, "server.memory_limit_mib"},
		{"equal listen addresses are refused", "api_addr: 127.0.0.1:1\npublic_addr: 127.0.0.1:1\n", nil, "public_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := Load(path, MapEnv(tt.env))
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FieldError: %v", err)
			}
			if !strings.HasPrefix(fe.Field, tt.field) {
				t.Errorf("field = %q, want %q (err: %v)", fe.Field, tt.field, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestNonLoopbackDevelopmentListenersNeedTheExplicitFlag(t *testing.T) {
	path := writeFile(t, "allow_non_loopback_dev: true\napi_addr: 0.0.0.0:8443\napi_url: https://ca.example:8443\n")
	c, err := Load(path, MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.APIHost() != "ca.example" {
		t.Errorf("APIHost = %q", c.APIHost())
	}
}

func TestProductionMayListenOnAnyAddress(t *testing.T) {
	env := MapEnv(map[string]string{
		"CA_DATABASE_URL": "postgres://db/ca",
		"CA_API_ADDR":     ":8443",
		"CA_PUBLIC_ADDR":  ":8080",
		"CA_API_URL":      "https://ca.example",
		"CA_PUBLIC_URL":   "http://ca.example",
	})
	if _, err := Load("", env); err != nil {
		t.Fatal(err)
	}
}

func TestBaseURLsAreNotDerivedFromWildcardAddresses(t *testing.T) {
	env := MapEnv(map[string]string{
		"CA_DATABASE_URL": "postgres://db/ca",
		"CA_API_ADDR":     "0.0.0.0:8443",
		"CA_PUBLIC_ADDR":  "127.0.0.1:8080",
	})
	_, err := Load("", env)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "api_url" {
		t.Fatalf("want an api_url error, got %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("api_addr: 127.0.0.1:1\n")
	f.Add("issuer:\n  max_ttl: 1h\n  default_ttl: 2h\n")
	f.Add("pkcs11:\n  module: /m.so\n  token: t\n")
	f.Add("server: {body_limit: -1}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, MapEnv(nil))
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a *FieldError wrapping ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned a config that does not validate: %v", err)
		}
	})
}

func TestCAHostNamesCoverTheURLsListenersAndServerCertificate(t *testing.T) {
	c := &Config{APIURL: "https://CA.Example.org:8443", PublicURL: "http://pub.example.org", APIAddr: "0.0.0.0:8443", PublicAddr: "10.0.0.5:8080"}
	names, ips := c.CAHostNames()
	if strings.Join(names, ",") != "ca.example.org,pub.example.org,localhost" {
		t.Errorf("names = %v", names)
	}
	if len(ips) != 2 || ips[0].String() != "10.0.0.5" || ips[1].String() != "127.0.0.1" {
		t.Errorf("ips = %v (0.0.0.0 must be left out)", ips)
	}
}

func TestTheLocalAdminSignInNeedsTheSettingAndTheDevelopmentPolicy(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		yaml string
		want bool
	}{
		{"the development setup alone does not enable it", nil, "", false},
		{"the setting enables it with the development policy", nil, "dashboard:\n  local_admin: true\n", true},
		{"the environment enables it with the development policy", map[string]string{"CA_DASHBOARD_LOCAL_ADMIN": "true"}, "", true},
		{"a real policy file turns it off", map[string]string{"CA_POLICY_FILE": "/etc/ca/policy.yaml"}, "dashboard:\n  local_admin: true\n", false},
		{"Postgres turns it off", map[string]string{"CA_DATABASE_URL": "postgres://db/ca"}, "dashboard:\n  local_admin: true\n", false},
		{"the environment can turn it off", map[string]string{"CA_DASHBOARD_LOCAL_ADMIN": "false"}, "dashboard:\n  local_admin: true\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"CA_DATA_DIR": t.TempDir()}
			for k, v := range tt.env {
				env[k] = v
			}
			if tt.yaml != "" {
				p := filepath.Join(t.TempDir(), "ca.yaml")
				if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				env["CA_CONFIG"] = p
			}
			c, err := Load("", MapEnv(env))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.LocalAdminAllowed(); got != tt.want {
				t.Errorf("LocalAdminAllowed = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := Load("", MapEnv(map[string]string{"CA_DASHBOARD_LOCAL_ADMIN": "yes please"})); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad CA_DASHBOARD_LOCAL_ADMIN: %v", err)
	}
}

func TestKeyTypesPerPurpose(t *testing.T) {
	dir := t.TempDir()
	c, err := Load("", MapEnv(map[string]string{"CA_DATA_DIR": dir, "CA_ISSUER_KEY_TYPE": "rsa-3072"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Issuer.KeyType != "rsa-3072" || c.JWTKeyType() != "rsa-3072" || c.OCSPKeyType() != "rsa-3072" {
		t.Errorf("JWT and OCSP keys do not follow issuer.key_type: %q %q %q", c.Issuer.KeyType, c.JWTKeyType(), c.OCSPKeyType())
	}
	if got := c.KeyTypes(); len(got) != 1 || got[0] != "rsa-3072" {
		t.Errorf("KeyTypes = %v", got)
	}
	p := filepath.Join(dir, "ca.yaml")
	if err := os.WriteFile(p, []byte("issuer:\n  key_type: ecdsa-p384\njwt:\n  key_type: rsa-3072\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(p, MapEnv(map[string]string{"CA_DATA_DIR": dir, "CA_OCSP_KEY_TYPE": "ecdsa-p256"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.JWTKeyType() != "rsa-3072" || c.OCSPKeyType() != "ecdsa-p256" || len(c.KeyTypes()) != 3 {
		t.Errorf("overrides: jwt %q ocsp %q all %v", c.JWTKeyType(), c.OCSPKeyType(), c.KeyTypes())
	}
	for _, env := range []string{"CA_JWT_KEY_TYPE", "CA_OCSP_KEY_TYPE", "CA_ISSUER_KEY_TYPE"} {
		_, err := Load("", MapEnv(map[string]string{"CA_DATA_DIR": dir, env: "dsa-1024"}))
		if err == nil || !strings.Contains(err.Error(), "key_type") {
			t.Errorf("%s=dsa-1024: err = %v, want a key_type field error", env, err)
		}
	}
}
