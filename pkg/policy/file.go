package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// MaxFileBytes bounds the size of a policy file; larger files are refused
// before parsing.
const MaxFileBytes = 1 << 20

// ErrInvalid is wrapped by every error that Parse, LoadFile and Reload return
// for a file that does not parse, has unknown fields, or fails validation.
var ErrInvalid = errors.New("policy: invalid policy")

// file is the YAML document as written; Parse turns it into a compiled Policy.
type file struct {
	TrustDomain         string       `yaml:"trust_domain"`
	PermittedDNSDomains []string     `yaml:"permitted_dns_domains"`
	TokenIssuers        []issuerFile `yaml:"token_issuers"`
	Rules               []ruleFile   `yaml:"rules"`
	Roles               []roleFile   `yaml:"roles"`
	JWT                 *jwtFile     `yaml:"jwt"`
	Renewal             *renewalFile `yaml:"renewal"`
}

type issuerFile struct {
	Name        string `yaml:"name"`
	Issuer      string `yaml:"issuer"`
	Audience    string `yaml:"audience"`
	JWKSURL     string `yaml:"jwks_url"`
	JWKSFile    string `yaml:"jwks_file"`
	Leeway      string `yaml:"leeway"`
	MaxTokenAge string `yaml:"max_token_age"`
	RequireJTI  bool   `yaml:"require_jti"`
}

type ruleFile struct {
	Name     string   `yaml:"name"`
	Issuer   string   `yaml:"issuer"`
	When     string   `yaml:"when"`
	SPIFFEID string   `yaml:"spiffe_id"`
	DNSNames []string `yaml:"dns_names"`
	MaxTTL   string   `yaml:"max_ttl"`
	TTL      string   `yaml:"ttl"`
	KeyTypes []string `yaml:"key_types"`
	// ReauthenticateAfter bounds how long after its enrollment a lineage
	// may keep renewing (renewal.go).
	ReauthenticateAfter string `yaml:"reauthenticate_after"`
}

type roleFile struct {
	Role           string `yaml:"role"`
	Issuer         string `yaml:"issuer"`
	When           string `yaml:"when"`
	ClientSPIFFEID string `yaml:"client_spiffe_id"`
}

// Parse decodes a policy file strictly (unknown fields, duplicate keys and
// trailing documents are errors), validates every cross-reference, compiles
// every CEL condition and identity template, and returns the ready Policy.
// Its Version is the hex SHA-256 of data. Any problem is returned wrapped
// around ErrInvalid, naming the offending rule, role or issuer.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrInvalid, MaxFileBytes)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	sum := sha256.Sum256(data)
	p, err := compile(&f, hex.EncodeToString(sum[:]))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// LoadFile reads and parses the policy file at path. A relative jwks_file in
// it is resolved against the directory of path.
func LoadFile(path string) (*Policy, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: open: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for i := range p.issuers {
		if f := p.issuers[i].JWKSFile; f != "" && !filepath.IsAbs(f) {
			p.issuers[i].JWKSFile = filepath.Join(dir, f)
		}
	}
	return p, nil
}
