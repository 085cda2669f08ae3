package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorizer decides whether a peer whose chain verified may talk to us. It
// gets the peer's SPIFFE ID and the verified chain (leaf first). Returning an
// error wrapping ErrWrongTrustDomain rejects with ReasonWrongTrustDomain; any
// other error rejects with ReasonIdentityNotAuthorized.
type Authorizer func(id spiffeid.ID, chain []*x509.Certificate) error

// Errors an Authorizer returns, tested with errors.Is.
var (
	// ErrNotAuthorized means the SPIFFE ID is not allowed.
	ErrNotAuthorized = errors.New("mtls: identity not authorized")
	// ErrWrongTrustDomain means the SPIFFE ID is in a trust domain that is
	// not allowed.
	ErrWrongTrustDomain = errors.New("mtls: wrong trust domain")
)

// AuthorizeAny accepts every peer whose chain verified against the bundle.
func AuthorizeAny() Authorizer {
	return func(spiffeid.ID, []*x509.Certificate) error { return nil }
}

// AuthorizeID accepts exactly the given SPIFFE IDs. A peer in another trust
// domain than all of them is refused with ErrWrongTrustDomain.
func AuthorizeID(ids ...spiffeid.ID) Authorizer {
	allowed := make(map[spiffeid.ID]bool, len(ids))
	domains := make(map[spiffeid.TrustDomain]bool, len(ids))
	for _, id := range ids {
		allowed[id] = true
		domains[id.TrustDomain()] = true
	}
	return func(id spiffeid.ID, _ []*x509.Certificate) error {
		switch {
		case allowed[id]:
			return nil
		case !domains[id.TrustDomain()]:
			return fmt.Errorf("%w: %s", ErrWrongTrustDomain, id.TrustDomain())
		default:
			return fmt.Errorf("%w: %s", ErrNotAuthorized, id)
		}
	}
}

// AuthorizeMemberOf accepts every SPIFFE ID in trust domain td.
func AuthorizeMemberOf(td spiffeid.TrustDomain) Authorizer {
	return func(id spiffeid.ID, _ []*x509.Certificate) error {
		if !id.MemberOf(td) {
			return fmt.Errorf("%w: %s is not in %s", ErrWrongTrustDomain, id, td)
		}
		return nil
	}
}

// AuthorizeIf accepts the SPIFFE IDs for which allow returns true (for
// example a path prefix check).
func AuthorizeIf(allow func(spiffeid.ID) bool) Authorizer {
	return func(id spiffeid.ID, _ []*x509.Certificate) error {
		if !allow(id) {
			return fmt.Errorf("%w: %s", ErrNotAuthorized, id)
		}
		return nil
	}
}
