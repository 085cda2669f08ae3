package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is every setting of `ca serve`, `ca init` and `ca migrate`. Build it
// with Load (which applies defaults and validates) or Default; the zero value
// is not valid.
type Config struct {
	// DataDir holds the embedded default's SQLite database and software keys.
	DataDir string `yaml:"data_dir"`
	// DatabaseURL is "postgres://..." / "postgresql://..." or "sqlite:PATH".
	DatabaseURL string `yaml:"database_url"`
	// DatabasePasswordFile holds the Postgres password (trailing newline
	// ignored), for a URL that names the user but carries no password: a
	// mounted secret such as a container's /run/secrets/db_password. Load
	// puts it into DatabaseURL.
	DatabasePasswordFile string `yaml:"database_password_file"`
	// PKCS11 selects the HSM; an empty Module means software keys in KeysDir.
	PKCS11 PKCS11 `yaml:"pkcs11"`
	// KeysDir is where software keys live when no PKCS#11 module is configured.
	KeysDir string `yaml:"keys_dir"`
	// PolicyFile is the enrollment policy YAML ("" = development policy in DataDir).
	PolicyFile string `yaml:"policy_file"`
	// TrustDomain is the SPIFFE trust domain when the policy names none.
	TrustDomain string `yaml:"trust_domain"`
	// AuthzPolicyFile is the service-to-service authorization policy YAML
	// (pkg/authz); "" = no authorization policy, the /v1/authz routes are
	// not mounted.
	AuthzPolicyFile string `yaml:"authz_policy_file"`

	// APIAddr and PublicAddr are the listen addresses (host:port) of the HTTPS
	// API listener and the plain-HTTP public listener.
	APIAddr    string `yaml:"api_addr"`
	PublicAddr string `yaml:"public_addr"`
	// APIURL and PublicURL are the external base URLs written into
	// certificates and bundles.
	APIURL    string `yaml:"api_url"`
	PublicURL string `yaml:"public_url"`
	// AllowNonLoopbackDev lets a development setup (software keys and SQLite)
	// listen on non-loopback addresses. Off by default.
	AllowNonLoopbackDev bool `yaml:"allow_non_loopback_dev"`

	// Issuer holds the CA hierarchy and leaf settings.
	Issuer Issuer `yaml:"issuer"`
	// JWT holds the JWT-SVID signing key settings.
	JWT JWT `yaml:"jwt"`
	// OCSP holds the delegated OCSP responder key settings.
	OCSP OCSP `yaml:"ocsp"`
	// Server holds HTTP serving settings.
	Server Server `yaml:"server"`
	// Log holds logging settings.
	Log Log `yaml:"log"`
	// Enroll holds enrollment (token verification) settings.
	Enroll Enroll `yaml:"enroll"`
	// Dashboard holds the inventory dashboard's sign-in settings.
	Dashboard Dashboard `yaml:"dashboard"`
	// Audit holds the audit log's checkpoint settings.
	Audit Audit `yaml:"audit"`
	// Retention holds how long expired rows are kept (retention.go) and how
	// young audit entries `ca audit archive --remove` refuses (retention.audit).
	Retention Retention `yaml:"retention"`
}

// Audit is how the audit log's head is checkpointed.
type Audit struct {
	// CheckpointInterval is how often one replica signs a checkpoint of the
	// audit head with the checkpoint key (default 1m, 1s to 1h). `ca audit
	// verify` reports checkpoints missing after a gap of twice this plus a
	// minute.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
}

// Dashboard is how the inventory dashboard (/ui on the API listener) signs
// operators in. The development setup also lets a browser on loopback sign in
// as a local admin.
type Dashboard struct {
	// IdP names the policy token issuer (an operator IdP with role entries)
	// the dashboard signs in through with the OIDC authorization code flow
	// and PKCE; "" = no IdP sign-in.
	IdP string `yaml:"idp"`
	// ClientID is the dashboard's client at the IdP (default: the token
	// issuer's audience in the policy).
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret; "" = a public client.
	ClientSecretFile string `yaml:"client_secret_file"`
	// SessionKeyFile holds at least 32 bytes that sign the sign-in state
	// cookie, the same file on every replica; "" = a random key per process.
	// Sessions themselves are kept in the database.
	SessionKeyFile string `yaml:"session_key_file"`
	// SessionLifetime is how long a sign-in lasts at most (default 8h).
	SessionLifetime time.Duration `yaml:"session_lifetime"`
	// SessionIdleTimeout ends a session unused for this long (default 30m).
	SessionIdleTimeout time.Duration `yaml:"session_idle_timeout"`
	// LocalAdmin enables the "Sign in as local admin" button for browsers on
	// loopback. It takes effect only with the development policy (see
	// LocalAdminAllowed); off by default, CA_DASHBOARD_LOCAL_ADMIN=true
	// overrides it.
	LocalAdmin bool `yaml:"local_admin"`
}

// Enroll is how provenance tokens are verified.
type Enroll struct {
	// TokenIssuerCAFile is a PEM file of extra CA certificates trusted (in
	// addition to the system roots) when fetching token issuers' discovery
	// documents and JWKS: for a private IdP, or a test issuer. "" = system
	// roots only.
	TokenIssuerCAFile string `yaml:"token_issuer_ca_file"`
	// JWKSMinRefreshInterval is the least time between two fetches of one
	// token issuer's keys, however many unknown key IDs tokens present
	// (default 1m).
	JWKSMinRefreshInterval time.Duration `yaml:"jwks_min_refresh_interval"`
}

// PKCS11 says where the CA's keys live in production.
type PKCS11 struct {
	// Module is the path of the PKCS#11 shared library.
	Module string `yaml:"module"`
	// Token is the token label.
	Token string `yaml:"token"`
	// PINFile is a file holding the user PIN (trailing newline ignored).
	PINFile string `yaml:"pin_file"`
	// PIN is the user PIN. It is only ever set from CA_PKCS11_PIN or read from
	// PINFile, never from the YAML file or argv, and it never prints.
	PIN Secret `yaml:"-"`
}

// Issuer is the CA hierarchy and leaf issuance settings.
type Issuer struct {
	// KeyType of the CA keys: ecdsa-p256, ecdsa-p384 or rsa-3072.
	KeyType string `yaml:"key_type"`
	// Organization is written into the CA certificates' subject.
	Organization         string        `yaml:"organization"`
	RootLifetime         time.Duration `yaml:"root_lifetime"`
	IntermediateLifetime time.Duration `yaml:"intermediate_lifetime"`
	// Backdate is subtracted from NotBefore to tolerate clock skew (default
	// 5m, so a client whose clock is minutes behind gets a usable certificate).
	Backdate time.Duration `yaml:"backdate"`
	// DefaultTTL is a leaf's lifetime when the request names none; MaxTTL caps it.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
}

// JWT is the JWT-SVID signing keys' settings.
type JWT struct {
	// KeyType of new JWT-SVID signing keys (ES256, ES384 or RS256); ""
	// follows issuer.key_type. CA_JWT_KEY_TYPE overrides it.
	KeyType string `yaml:"key_type"`
}

// OCSP is the delegated OCSP responders' settings.
type OCSP struct {
	// KeyType of new OCSP responder keys; "" follows issuer.key_type.
	// CA_OCSP_KEY_TYPE overrides it.
	KeyType string `yaml:"key_type"`
}

// JWTKeyType is the key type of new JWT-SVID signing keys: jwt.key_type,
// else issuer.key_type.
func (c *Config) JWTKeyType() string {
	if c.JWT.KeyType != "" {
		return c.JWT.KeyType
	}
	return c.Issuer.KeyType
}

// OCSPKeyType is the key type of new OCSP responder keys: ocsp.key_type,
// else issuer.key_type.
func (c *Config) OCSPKeyType() string {
	if c.OCSP.KeyType != "" {
		return c.OCSP.KeyType
	}
	return c.Issuer.KeyType
}

// KeyTypes lists the distinct key types the CA generates keys of (CA
// certificates and the audit checkpoint key, JWT-SVID keys, OCSP responder
// keys): the start-up mechanism check and `ca hsm check` cover these.
func (c *Config) KeyTypes() []string {
	var out []string
	for _, kt := range []string{c.Issuer.KeyType, c.JWTKeyType(), c.OCSPKeyType()} {
		dup := false
		for _, o := range out {
			dup = dup || o == kt
		}
		if !dup {
			out = append(out, kt)
		}
	}
	return out
}

// Server is HTTP serving settings.
type Server struct {
	// BodyLimit is the largest request body accepted, in bytes.
	BodyLimit int64 `yaml:"body_limit"`
	// ShutdownGrace is how long in-flight requests get after SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// CertLifetime is the lifetime of the API listener's own certificate; it is
	// renewed after two thirds of it.
	CertLifetime time.Duration `yaml:"cert_lifetime"`
	// ReadyTimeout bounds each dependency check of /readyz.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// RequestTimeout is every request's deadline (default 10s): the store,
	// HSM and outgoing calls a request makes inherit it, and a request
	// whose dependency does not answer in time gets 503 store_unavailable
	// or hsm_unavailable with Retry-After (issue 18).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxInFlightEnrollments bounds the enrollments and renewals being
	// answered at once (default 64); one more is refused at once with 503
	// overloaded and Retry-After instead of queueing behind the others
	// (issue 20).
	MaxInFlightEnrollments int `yaml:"max_in_flight_enrollments"`
	// GCPercent is the Go garbage collector's target (GOGC) for `ca serve`
	// (default 400: the collector was about 8% of the server's CPU under
	// enrollment load at Go's 100; issue 20). GOGC in the environment wins.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMiB is the Go runtime's soft memory limit (GOMEMLIMIT) for
	// `ca serve`, in MiB. 0 (the default) derives it: three quarters of the
	// cgroup's memory limit when the process runs under one (a container),
	// else none. GOMEMLIMIT in the environment wins.
	MemoryLimitMiB int64 `yaml:"memory_limit_mib"`
}

// Log is logging settings.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// ArtifactRequests is the level (info or debug) of the public
	// listener's access-log lines for signed artifacts: OCSP, CRLs and the
	// trust bundle. debug keeps those lines out of an info log when relying
	// parties poll OCSP at high rates; the ca_http_* metrics still count
	// every request, and every other request is still logged at info.
	ArtifactRequests string `yaml:"artifact_requests"`
	// ArtifactSample logs one in this many successful artifact requests
	// (default 100; 1 logs every one). A relying party polling OCSP makes
	// most of a CA's requests, and a line per answer mostly costs CPU (a
	// POST's line does not even name the serial); the ca_http_* metrics
	// count every request, and failures are always logged.
	ArtifactSample int `yaml:"artifact_sample"`
}

// Secret is a string that never prints: fmt, slog and JSON all see "[redacted]".
type Secret string

const redacted = "[redacted]"

// String hides the value.
func (Secret) String() string { return redacted }

// GoString hides the value from %#v.
func (Secret) GoString() string { return redacted }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON hides the value from encoding/json.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Reveal returns the secret itself, for handing to the PKCS#11 login only.
func (s Secret) Reveal() string { return string(s) }

// Env looks up an environment variable; os.LookupEnv fits. Tests pass MapEnv.
type Env func(key string) (string, bool)

// MapEnv is an Env backed by a map.
func MapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// ErrInvalid is wrapped by every error about the configuration's content; the
// message names the offending field first ("api_addr: ...").
var ErrInvalid = errors.New("invalid configuration")

// FieldError is a problem with one field, named as in the YAML file.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap lets errors.Is find ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Load builds the configuration: defaults, then the YAML file at path (or at
// CA_CONFIG when path is ""; no file at all is fine), then the CA_* overrides
// from env, then derived values, then Validate. Unknown YAML fields are errors.
// The PIN is taken from CA_PKCS11_PIN or, failing that, read from pin_file.
func Load(path string, env Env) (*Config, error) {
	if env == nil {
		env = MapEnv(nil)
	}
	if path == "" {
		path, _ = env("CA_CONFIG")
	}
	c := &Config{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &FieldError{Field: "config", Err: err}
		}
		if err := decodeStrict(data, c); err != nil {
			return nil, &FieldError{Field: "config " + path, Err: err}
		}
	}
	c.applyEnv(env)
	if err := c.applyLocalAdminEnv(env); err != nil {
		return nil, err
	}
	if err := c.resolvePIN(); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.resolveDatabasePassword(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default returns the embedded default configuration (what `ca serve` runs
// with no file and no environment). It passes Validate.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

func decodeStrict(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &te):
		// One line, so that `ca` can print it as one: "line 3: field api_adr
		// not found in type config.Config; line 5: ...".
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return errors.New(strings.ReplaceAll(err.Error(), "\n", " "))
}

var envOverrides = []struct {
	key string
	set func(c *Config, v string)
}{
	{"CA_DATA_DIR", func(c *Config, v string) { c.DataDir = v }},
	{"CA_DATABASE_URL", func(c *Config, v string) { c.DatabaseURL = v }},
	{"CA_PKCS11_MODULE", func(c *Config, v string) { c.PKCS11.Module = v }},
	{"CA_PKCS11_TOKEN", func(c *Config, v string) { c.PKCS11.Token = v }},
	{"CA_PKCS11_PIN", func(c *Config, v string) { c.PKCS11.PIN = Secret(v) }},
	{"CA_PKCS11_PIN_FILE", func(c *Config, v string) { c.PKCS11.PINFile = v }},
	{"CA_DATABASE_PASSWORD_FILE", func(c *Config, v string) { c.DatabasePasswordFile = v }},
	{"CA_POLICY_FILE", func(c *Config, v string) { c.PolicyFile = v }},
	{"CA_API_ADDR", func(c *Config, v string) { c.APIAddr = v }},
	{"CA_PUBLIC_ADDR", func(c *Config, v string) { c.PublicAddr = v }},
	{"CA_API_URL", func(c *Config, v string) { c.APIURL = v }},
	{"CA_PUBLIC_URL", func(c *Config, v string) { c.PublicURL = v }},
	{"CA_TRUST_DOMAIN", func(c *Config, v string) { c.TrustDomain = v }},
	{"CA_AUTHZ_POLICY_FILE", func(c *Config, v string) { c.AuthzPolicyFile = v }},
	{"CA_ISSUER_KEY_TYPE", func(c *Config, v string) { c.Issuer.KeyType = v }},
	{"CA_JWT_KEY_TYPE", func(c *Config, v string) { c.JWT.KeyType = v }},
	{"CA_OCSP_KEY_TYPE", func(c *Config, v string) { c.OCSP.KeyType = v }},
}

// EnvKeys lists the environment variables Load reads, for documentation.
func EnvKeys() []string {
	keys := []string{"CA_CONFIG"}
	for _, o := range envOverrides {
		keys = append(keys, o.key)
	}
	return keys
}

func (c *Config) applyEnv(env Env) {
	for _, o := range envOverrides {
		if v, ok := env(o.key); ok && v != "" {
			o.set(c, v)
		}
	}
}

func (c *Config) resolvePIN() error {
	if c.PKCS11.PIN != "" || c.PKCS11.PINFile == "" {
		return nil
	}
	data, err := os.ReadFile(c.PKCS11.PINFile)
	if err != nil {
		// The path is not secret; the content never appears in an error.
		return &FieldError{Field: "pkcs11.pin_file", Err: err}
	}
	c.PKCS11.PIN = Secret(strings.TrimRight(string(data), "\r\n"))
	return nil
}

// resolveDatabasePassword reads database_password_file into database_url's
// user info. The URL must be a postgres:// URL that names the user and
// carries no password of its own (two sources of one secret would leave it
// unclear which one is in use).
func (c *Config) resolveDatabasePassword() error {
	const field = "database_password_file"
	if c.DatabasePasswordFile == "" {
		return nil
	}
	if c.DatabaseDriver() != "postgres" {
		return fieldErr(field, "goes only with a postgres:// database_url")
	}
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		// url.Parse errors echo the URL, which may carry a password.
		return fieldErr("database_url", "not a valid postgres:// URL")
	}
	if u.User == nil || u.User.Username() == "" {
		return fieldErr(field, "database_url must name the user (postgres://USER@HOST/DB)")
	}
	if _, set := u.User.Password(); set {
		return fieldErr(field, "database_url already carries a password; give it in one place only")
	}
	data, err := os.ReadFile(c.DatabasePasswordFile)
	if err != nil {
		// The path is not secret; the content never appears in an error.
		return &FieldError{Field: field, Err: err}
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return fieldErr(field, "%s is empty", c.DatabasePasswordFile)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	c.DatabaseURL = u.String()
	return nil
}

// DefaultMaxInFlightEnrollments is server.max_in_flight_enrollments when
// unset.
const DefaultMaxInFlightEnrollments = 64

// DefaultGCPercent is server.gc_percent when unset.
const DefaultGCPercent = 400

// Defaults of the embedded development setup.
const (
	DefaultDataDir     = "./ca-data"
	DefaultAPIAddr     = "127.0.0.1:8443"
	DefaultPublicAddr  = "127.0.0.1:8080"
	DefaultTrustDomain = "example.org"
	DefaultBodyLimit   = 64 << 10
	// DefaultArtifactSample is log.artifact_sample's default.
	DefaultArtifactSample = 100
)

func (c *Config) applyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.DataDir, DefaultDataDir)
	setStr(&c.DatabaseURL, "sqlite:"+filepath.Join(c.DataDir, "ca.db"))
	setStr(&c.KeysDir, filepath.Join(c.DataDir, "keys"))
	setStr(&c.TrustDomain, DefaultTrustDomain)
	setStr(&c.APIAddr, DefaultAPIAddr)
	setStr(&c.PublicAddr, DefaultPublicAddr)
	if derivable(c.APIAddr) {
		setStr(&c.APIURL, "https://"+c.APIAddr)
	}
	if derivable(c.PublicAddr) {
		setStr(&c.PublicURL, "http://"+c.PublicAddr)
	}

	setStr(&c.Issuer.KeyType, "ecdsa-p256")
	setStr(&c.Issuer.Organization, "workload-ca")
	setDur(&c.Issuer.RootLifetime, 10*365*24*time.Hour)
	setDur(&c.Issuer.IntermediateLifetime, 365*24*time.Hour)
	setDur(&c.Issuer.Backdate, 5*time.Minute)
	setDur(&c.Issuer.DefaultTTL, time.Hour)
	setDur(&c.Issuer.MaxTTL, 24*time.Hour)

	if c.Server.BodyLimit == 0 {
		c.Server.BodyLimit = DefaultBodyLimit
	}
	setDur(&c.Server.ShutdownGrace, 10*time.Second)
	setDur(&c.Server.CertLifetime, 24*time.Hour)
	setDur(&c.Server.ReadyTimeout, 2*time.Second)
	setDur(&c.Server.RequestTimeout, 10*time.Second)
	if c.Server.MaxInFlightEnrollments == 0 {
		c.Server.MaxInFlightEnrollments = DefaultMaxInFlightEnrollments
	}
	if c.Server.GCPercent == 0 {
		c.Server.GCPercent = DefaultGCPercent
	}
	setStr(&c.Log.Level, "info")
	setStr(&c.Log.ArtifactRequests, "info")
	if c.Log.ArtifactSample == 0 {
		c.Log.ArtifactSample = DefaultArtifactSample
	}
	setDur(&c.Enroll.JWKSMinRefreshInterval, time.Minute)
	setDur(&c.Audit.CheckpointInterval, time.Minute)
	c.Retention.applyDefaults()
}

// DevelopmentMode reports whether this is the embedded development setup: no
// PKCS#11 module (software keys) and SQLite. `ca serve` says so loudly, and
// such a setup only listens on loopback unless AllowNonLoopbackDev is set.
func (c *Config) DevelopmentMode() bool {
	return c.PKCS11.Module == "" && c.DatabaseDriver() == "sqlite"
}

// DatabaseDriver is "postgres" or "sqlite" after the URL's scheme, or "" if
// it is neither.
func (c *Config) DatabaseDriver() string {
	switch {
	case strings.HasPrefix(c.DatabaseURL, "postgres://"), strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		return "postgres"
	case strings.HasPrefix(c.DatabaseURL, "sqlite:"):
		return "sqlite"
	}
	return ""
}

// SlogLevel is Log.Level as a slog.Level (valid after Validate).
func (c *Config) SlogLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Log.Level))
	return l
}

// ArtifactLogLevel is Log.ArtifactRequests as a slog.Level (valid after
// Validate).
func (c *Config) ArtifactLogLevel() slog.Level {
	if c.Log.ArtifactRequests == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// APIHost is the host part of APIURL, for the API server certificate's names.
func (c *Config) APIHost() string {
	u, err := url.Parse(c.APIURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// derivable reports whether a base URL can be derived from a listen address:
// not when it listens on all interfaces, since no client reaches "0.0.0.0".
func derivable(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsUnspecified()
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
