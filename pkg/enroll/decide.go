package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// PolicySource hands out the current policy; *policy.Holder is one.
type PolicySource interface {
	Load() *policy.Policy
}

// ReplayMarker records that a token was used. MarkTokenUsed must be atomic
// across replicas: it returns an error wrapping store.ErrConflict when key was
// already recorded (and not yet pruned), nil when this call recorded it. The
// record may be pruned after expiresAt. The store's implementations satisfy it.
type ReplayMarker interface {
	MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error
}

// The store's implementations are the production ReplayMarker.
var _ ReplayMarker = store.Store(nil)

// Decision is an authorised enrollment: everything pkg/issuer needs to build
// and record the certificate.
type Decision struct {
	PublicKey     crypto.PublicKey
	KeyType       policy.KeyType
	CSR           *x509.CertificateRequest
	SPIFFEID      string
	DNSNames      []string
	TTL           time.Duration
	Rule          string
	PolicyVersion string
	TokenIssuer   string // the policy name of the token's issuer
	Subject       string // the token's sub
	Repository    string // the token's repository claim (a CI repository), or ""
	Provenance    json.RawMessage
}

// Decider makes enrollment decisions. It is safe for concurrent use.
type Decider struct {
	policies PolicySource
	verifier *Verifier
	replay   ReplayMarker
	clock    clock.Clock
}

// NewDecider returns a Decider that evaluates the policy current at each
// call, verifies tokens with v and records used tokens in replay.
func NewDecider(policies PolicySource, v *Verifier, replay ReplayMarker, c clock.Clock) *Decider {
	return &Decider{policies: policies, verifier: v, replay: replay, clock: c}
}

// Decide authorises (or refuses) one enrollment: a provenance token, a PEM
// CSR and a requested TTL (0 means the rule's default).
//
// Order of checks, and why:
//  1. The token: size, syntax, algorithm, issuer, signature, times, audience
//     (token_*). Nothing else is looked at for a token that is not authentic.
//  2. The policy, with the token's claims (policy_denied).
//  3. The CSR: syntax, key strength, proof of possession, extensions
//     (csr_*), then the key type and requested names against the rule
//     (policy_denied), then the TTL (ttl_too_long, ttl_invalid).
//  4. Replay: only now is the token marked used (token_replayed if it was).
//
// A token is therefore spent only by a request that would otherwise succeed.
// A client that sends a bad CSR or too long a TTL can fix it and retry with
// the same token -- which matters for Kubernetes tokens, which a pod cannot
// replace at will. A replayed token is still always refused: a replay with a
// bad request gets the request's error, a replay with a good request gets
// token_replayed, and neither gets a certificate. Anyone holding a token can
// produce a valid CSR with a fresh key, so checking the CSR before spending
// the token gives an attacker nothing. If issuance fails after Decide
// returned, the token stays spent and the client must obtain a new one.
//
// Every error is a *Error carrying what a denial record needs.
func (d *Decider) Decide(ctx context.Context, rawToken string, csrPEM []byte, ttl time.Duration) (Decision, error) {
	pol := d.policies.Load()
	if pol == nil {
		return Decision{}, newErr(ReasonInternal, nil, "no policy loaded")
	}
	tok, err := d.verifier.Verify(ctx, pol, rawToken)
	if err != nil {
		annotate(err, "", pol.Version())
		return Decision{}, err
	}
	fail := func(e *Error) (Decision, error) {
		e.Issuer, e.Subject, e.PolicyVersion = tok.IssuerName, tok.Subject, pol.Version()
		return Decision{}, e
	}

	m, err := pol.Evaluate(ctx, tok.IssuerName, tok.Claims)
	if err != nil {
		var de *policy.DenyError
		if errors.As(err, &de) {
			return fail(&Error{Reason: ReasonPolicyDenied, Detail: de.Detail, Rule: de.Rule, Check: de.Check, Err: err})
		}
		return fail(newErr(ReasonInternal, err, "policy evaluation failed"))
	}

	csr, err := ParseCSR(csrPEM)
	if err != nil {
		e := asError(err)
		e.Rule = m.Rule
		return fail(e)
	}
	kt, _ := KeyTypeOf(csr.PublicKey) // ParseCSR has accepted it
	if !m.AllowsKeyType(kt) {
		e := newErr(ReasonPolicyDenied, nil, "key type %s is not allowed by the rule (allowed: %v)", kt, m.KeyTypes)
		e.Rule, e.Check = m.Rule, policy.CheckKeyType
		return fail(e)
	}
	dns, err := grantedNames(csr, m)
	if err != nil {
		return fail(asError(err))
	}
	switch {
	case ttl < 0:
		e := newErr(ReasonTTLInvalid, nil, "ttl must not be negative")
		e.Rule = m.Rule
		return fail(e)
	case ttl == 0:
		ttl = m.DefaultTTL
	case ttl > m.MaxTTL:
		e := newErr(ReasonTTLTooLong, nil, "ttl %s exceeds the rule's max_ttl %s", ttl, m.MaxTTL)
		e.Rule = m.Rule
		return fail(e)
	}

	if err := d.replay.MarkTokenUsed(ctx, tok.ReplayKey, tok.ReplayUntil, d.clock.Now()); err != nil {
		if errors.Is(err, store.ErrConflict) {
			e := newErr(ReasonTokenReplayed, err, "token was already used")
			e.Rule = m.Rule
			return fail(e)
		}
		e := newErr(ReasonStoreUnavailable, err, "could not record token use")
		e.Rule = m.Rule
		return fail(e)
	}

	prov, repository := provenanceJSON(tok, m.Rule, m.PolicyVersion)
	return Decision{
		PublicKey:     csr.PublicKey,
		KeyType:       kt,
		CSR:           csr,
		SPIFFEID:      m.SPIFFEID,
		DNSNames:      dns,
		TTL:           ttl,
		Rule:          m.Rule,
		PolicyVersion: m.PolicyVersion,
		TokenIssuer:   tok.IssuerName,
		Subject:       tok.Subject,
		Repository:    repository,
		Provenance:    prov,
	}, nil
}

// asError returns err's *Error, or wraps err as an internal one.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return newErr(ReasonInternal, err, "internal error")
}

// annotate fills the policy version into a *Error for the denial record.
func annotate(err error, rule, version string) {
	var e *Error
	if errors.As(err, &e) {
		if e.Rule == "" {
			e.Rule = rule
		}
		e.PolicyVersion = version
	}
}
