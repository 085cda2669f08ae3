package authz

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"gopkg.in/yaml.v3"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// MaxPolicyBytes bounds the size of a policy file; larger files are refused
// before parsing. (1,000 services of 20 endpoints each fit in a few MiB.)
const MaxPolicyBytes = 16 << 20

// Modes of a service.
const (
	// ModeObserve decides and logs but lets every call through: a denial
	// comes back as DecisionWouldDeny with Allowed true.
	ModeObserve = "observe"
	// ModeEnforce refuses what the policy does not allow.
	ModeEnforce = "enforce"
)

// Decision values.
const (
	DecisionAllow     = "allow"
	DecisionDeny      = "deny"
	DecisionWouldDeny = "would_deny"
)

// ParseError is a policy that does not parse, has unknown or duplicate
// fields, or fails validation. Line is the 1-based line of the offending
// YAML node (0 when unknown).
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("authz policy: line %d: %s", e.Line, e.Msg)
	}
	return "authz policy: " + e.Msg
}

// policyFile is the YAML document as written; ParsePolicy compiles it.
type policyFile struct {
	TrustDomain string                 `yaml:"trust_domain"`
	Services    map[string]serviceFile `yaml:"services"`
}

type serviceFile struct {
	Identity  string         `yaml:"identity"`
	Mode      string         `yaml:"mode"`
	Endpoints []endpointFile `yaml:"endpoints"`
}

type endpointFile struct {
	Name    string   `yaml:"name"`
	Methods []string `yaml:"methods,flow"`
	Paths   []string `yaml:"paths,flow"`
	Allow   []string `yaml:"allow"`
	Headers []string `yaml:"headers,omitempty,flow"`
	When    string   `yaml:"when,omitempty"`
}

// Policy is a compiled, immutable authorization policy (ParsePolicy). Safe
// for concurrent use.
type Policy struct {
	version     string
	trustDomain string
	raw         policyFile
	services    map[string]*service
	byIdentity  map[string]string
	names       []string
}

type service struct {
	name      string
	identity  string
	mode      string
	endpoints []*endpoint
	paths     *trie
}

type endpoint struct {
	name    string
	methods []string // upper-case tokens; "*" = any
	allow   allowList
	cond    *condition
}

func (e *endpoint) hasMethod(m string) bool {
	for _, x := range e.methods {
		if x == m || x == "*" {
			return true
		}
	}
	return false
}

// canRead reports whether the endpoint serves reads (GET or HEAD).
func (e *endpoint) canRead() bool {
	return e.hasMethod("GET") || e.hasMethod("HEAD")
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	methodRE = regexp.MustCompile(`^[A-Z]{1,20}$`)
	tdRE     = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)
	lineRE   = regexp.MustCompile(`line (\d+)`)
)

// ParsePolicy parses and compiles the YAML policy: strict (unknown fields,
// duplicate keys and further documents are errors), every service identity a
// SPIFFE ID of the trust domain (unique, not under the CA-reserved /ca/),
// every path a valid pattern, every allow entry a SPIFFE ID or an ID prefix
// ending in "/*", every `when` a CEL bool expression that compiles. Version()
// is the hex SHA-256 of data. Errors are *ParseError.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("file larger than %d bytes", MaxPolicyBytes)}
	}
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ParseError{Msg: "empty file"}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ParseError{Line: extra.Line, Msg: "more than one YAML document"}
	}
	sum := sha256.Sum256(data)
	return compile(&f, hex.EncodeToString(sum[:]), &locator{data: data})
}

func yamlError(err error) *ParseError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	msg = strings.ReplaceAll(msg, "authz.", "")
	return &ParseError{Line: line, Msg: msg}
}

func compile(f *policyFile, version string, loc *locator) (*Policy, error) {
	if !tdRE.MatchString(f.TrustDomain) {
		return nil, &ParseError{Line: loc.at("trust_domain"), Msg: fmt.Sprintf("trust_domain %q is missing or not a trust domain name", f.TrustDomain)}
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, &ParseError{Msg: err.Error()}
	}
	p := &Policy{
		version:     version,
		trustDomain: f.TrustDomain,
		raw:         *f,
		services:    make(map[string]*service, len(f.Services)),
		byIdentity:  make(map[string]string, len(f.Services)),
	}
	for name := range f.Services {
		p.names = append(p.names, name)
	}
	sort.Strings(p.names)
	for _, name := range p.names {
		s, err := compileService(env, f.TrustDomain, name, f.Services[name], loc)
		if err != nil {
			return nil, err
		}
		if other, dup := p.byIdentity[s.identity]; dup {
			return nil, &ParseError{Line: loc.at("services", name, "identity"), Msg: fmt.Sprintf("service %s: identity %s is also the identity of service %s", name, s.identity, other)}
		}
		p.byIdentity[s.identity] = name
		p.services[name] = s
	}
	return p, nil
}

func compileService(env *cel.Env, td, name string, sf serviceFile, loc *locator) (*service, error) {
	fail := func(line int, format string, args ...any) error {
		return &ParseError{Line: line, Msg: "service " + name + ": " + fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(name) {
		return nil, fail(loc.at("services", name), "name must be lower-case letters, digits, - and _")
	}
	idTD, idPath, ok := names.SPIFFEIDParts(sf.Identity)
	switch {
	case !ok:
		return nil, fail(loc.at("services", name, "identity"), "identity %q is missing or not a SPIFFE ID", sf.Identity)
	case idTD != td:
		return nil, fail(loc.at("services", name, "identity"), "identity %s is not in trust domain %s", sf.Identity, td)
	case idPath == "" || idPath == "/ca" || strings.HasPrefix(idPath, "/ca/"):
		return nil, fail(loc.at("services", name, "identity"), "identity %s is reserved (the trust domain itself or under /ca/)", sf.Identity)
	}
	if sf.Mode != ModeObserve && sf.Mode != ModeEnforce {
		return nil, fail(loc.at("services", name, "mode"), "mode %q must be observe or enforce", sf.Mode)
	}
	s := &service{name: name, identity: sf.Identity, mode: sf.Mode, paths: newTrie()}
	seen := map[string]bool{}
	for i, ef := range sf.Endpoints {
		at := func(field string) int {
			if field == "" {
				return loc.at("services", name, "endpoints", i)
			}
			return loc.at("services", name, "endpoints", i, field)
		}
		efail := func(line int, format string, args ...any) error {
			return fail(line, "endpoint %s: %s", ef.Name, fmt.Sprintf(format, args...))
		}
		if !nameRE.MatchString(ef.Name) {
			return nil, fail(at("name"), "endpoint %d: name %q must be lower-case letters, digits, - and _", i+1, ef.Name)
		}
		if seen[ef.Name] {
			return nil, efail(at("name"), "name used twice")
		}
		seen[ef.Name] = true
		ep := &endpoint{name: ef.Name}
		if len(ef.Methods) == 0 {
			return nil, efail(at(""), "methods is empty (use [\"*\"] for any method)")
		}
		for _, m := range ef.Methods {
			if m != "*" && !methodRE.MatchString(m) {
				return nil, efail(at("methods"), "method %q must be an upper-case HTTP method or *", m)
			}
			ep.methods = append(ep.methods, m)
		}
		if len(ef.Paths) == 0 {
			return nil, efail(at(""), "paths is empty")
		}
		for _, pth := range ef.Paths {
			segs, err := parsePattern(pth)
			if err != nil {
				return nil, efail(at("paths"), "%v", err)
			}
			s.paths.insert(segs, i)
		}
		if len(ef.Allow) == 0 {
			return nil, efail(at(""), "allow is empty (an endpoint nobody may call is left out)")
		}
		allow, err := parseAllow(ef.Allow)
		if err != nil {
			return nil, efail(at("allow"), "%v", err)
		}
		ep.allow = allow
		hdrs, err := canonicalHeaders(ef.Headers)
		if err != nil {
			return nil, efail(at("headers"), "%v", err)
		}
		if ef.When != "" {
			c, err := compileCondition(env, ef.When, hdrs)
			if err != nil {
				return nil, efail(at("when"), "%v", err)
			}
			ep.cond = c
		} else if len(hdrs) > 0 {
			return nil, efail(at("headers"), "headers are only read by a when condition, and there is none")
		}
		s.endpoints = append(s.endpoints, ep)
	}
	if len(s.endpoints) == 0 {
		return nil, fail(loc.at("services", name), "no endpoints")
	}
	return s, nil
}

// Version is the hex SHA-256 of the policy bytes (or, for a policy served by
// the CA to one service, the version of the whole policy it was cut from).
func (p *Policy) Version() string { return p.version }

// TrustDomain is the policy's trust domain name.
func (p *Policy) TrustDomain() string { return p.trustDomain }

// Services lists the services by name, sorted.
func (p *Policy) Services() []string { return append([]string(nil), p.names...) }

// ServiceByIdentity returns the service whose identity is id (exact SPIFFE
// ID), ok=false if none.
func (p *Policy) ServiceByIdentity(id string) (name string, ok bool) {
	name, ok = p.byIdentity[id]
	return name, ok
}

// ForService returns the part of the policy where the service is the
// destination, as the canonical YAML bytes of a standalone policy (same
// format, only that service, same trust_domain), which ParsePolicy accepts.
// The bytes depend only on the service's content, not on how the original
// file was laid out.
func (p *Policy) ForService(name string) ([]byte, error) {
	sf, ok := p.raw.Services[name]
	if !ok {
		return nil, fmt.Errorf("authz: no service %q in the policy", name)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(policyFile{TrustDomain: p.trustDomain, Services: map[string]serviceFile{name: sf}}); err != nil {
		return nil, fmt.Errorf("authz: encoding service %s: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("authz: encoding service %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// ServiceInfo describes one service of a policy as written, for reviewers
// (`ca authz explain`) and the dashboard.
type ServiceInfo struct {
	Name      string         `json:"name"`
	Identity  string         `json:"identity"`
	Mode      string         `json:"mode"`
	Endpoints []EndpointInfo `json:"endpoints"`
}

// EndpointInfo describes one endpoint as written.
type EndpointInfo struct {
	Name    string   `json:"name"`
	Methods []string `json:"methods"`
	Paths   []string `json:"paths"`
	Allow   []string `json:"allow"`
	Headers []string `json:"headers,omitempty"`
	When    string   `json:"when,omitempty"`
}

// Describe returns the named service as written, ok=false if none. The
// slices are copies.
func (p *Policy) Describe(name string) (ServiceInfo, bool) {
	sf, ok := p.raw.Services[name]
	if !ok {
		return ServiceInfo{}, false
	}
	si := ServiceInfo{Name: name, Identity: sf.Identity, Mode: sf.Mode}
	for _, e := range sf.Endpoints {
		si.Endpoints = append(si.Endpoints, EndpointInfo{
			Name:    e.Name,
			Methods: append([]string(nil), e.Methods...),
			Paths:   append([]string(nil), e.Paths...),
			Allow:   append([]string(nil), e.Allow...),
			Headers: append([]string(nil), e.Headers...),
			When:    e.When,
		})
	}
	return si, true
}

// withVersion returns a copy of p reporting version v: a service enforcing
// the part the CA cut for it reports the version of the whole policy.
func (p *Policy) withVersion(v string) *Policy {
	q := *p
	q.version = v
	return &q
}

// locator finds the line of a node in the parsed YAML document by a path of
// mapping keys (string) and sequence indexes (int); it returns the line of
// the deepest node it reached, 0 if none.
// The document is parsed into nodes only when an error needs a line.
type locator struct {
	data []byte
	root *yaml.Node
}

func (l *locator) at(path ...any) int {
	if l == nil {
		return 0
	}
	if l.root == nil {
		var root yaml.Node
		if err := yaml.Unmarshal(l.data, &root); err != nil {
			return 0
		}
		l.root = &root
	}
	n := l.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, step := range path {
		var next *yaml.Node
		switch k := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						line = n.Content[i].Line
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
