package workloadapi

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/workload-ca/workload-ca/pkg/jwtsvid"
)

// Minter obtains a JWT-SVID for the agent's current identity from the CA
// (POST /v1/jwt over mTLS with the agent's certificate). An error it
// returns that wraps ErrRefused is the CA refusing (PermissionDenied);
// any other is the CA being unreachable (Unavailable).
type Minter interface {
	MintJWT(ctx context.Context, audience []string) (token string, err error)
}

// ErrRefused marks a Minter error as the CA's refusal, not an outage.
var ErrRefused = errors.New("workloadapi: the CA refused the JWT-SVID")

// jwtCache keeps minted JWT-SVIDs per audience set until half their
// lifetime has passed.
type jwtCache struct {
	minter Minter
	clock  Clock
	mu     sync.Mutex
	tokens map[string]cachedJWT
}

type cachedJWT struct {
	token      string
	id         string
	renewAfter time.Time
}

func newJWTCache(m Minter, c Clock) *jwtCache {
	return &jwtCache{minter: m, clock: c, tokens: map[string]cachedJWT{}}
}

// forget drops every cached token (the identity or key changed).
func (c *jwtCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.tokens)
}

// get returns a cached token for audience, or mints one.
func (c *jwtCache) get(ctx context.Context, audience []string) (cachedJWT, error) {
	aud := slices.Clone(audience)
	slices.Sort(aud)
	aud = slices.Compact(aud)
	key := strings.Join(aud, "\x00")
	now := c.clock.Now()
	c.mu.Lock()
	if t, ok := c.tokens[key]; ok && now.Before(t.renewAfter) {
		c.mu.Unlock()
		return t, nil
	}
	c.mu.Unlock()
	if c.minter == nil {
		return cachedJWT{}, errors.New("workloadapi: no JWT-SVID minter")
	}
	tok, err := c.minter.MintJWT(ctx, aud)
	if err != nil {
		return cachedJWT{}, err
	}
	// The CA signed it; the agent only reads its subject and lifetime (the
	// token is validated by whoever receives it).
	cl, err := unverifiedClaims(tok)
	if err != nil {
		return cachedJWT{}, fmt.Errorf("workloadapi: the CA's JWT-SVID does not parse: %w", err)
	}
	issued := now
	if cl.IssuedAt > 0 {
		issued = time.Unix(cl.IssuedAt, 0)
	}
	exp := time.Unix(cl.Expiry, 0)
	t := cachedJWT{token: tok, id: cl.Subject, renewAfter: issued.Add(exp.Sub(issued) / 2)}
	c.mu.Lock()
	c.tokens[key] = t
	c.mu.Unlock()
	return t, nil
}

// FetchJWTSVID returns a JWT-SVID for the requested audience, from the
// cache while it is less than half-way through its lifetime.
func (srv *Server) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	sv, _, _ := srv.state.snapshot()
	if sv == nil {
		return nil, status.Error(codes.Unavailable, "no SVID yet")
	}
	if want := req.GetSpiffeId(); want != "" && want != sv.id.String() {
		return nil, status.Errorf(codes.PermissionDenied, "no identity issued for %s", want)
	}
	t, err := srv.jwt.get(ctx, req.GetAudience())
	if err != nil {
		srv.log.Warn("workloadapi: minting a JWT-SVID failed", "err", err)
		if errors.Is(err, ErrRefused) {
			return nil, status.Error(codes.PermissionDenied, "the CA refused the JWT-SVID")
		}
		return nil, status.Error(codes.Unavailable, "the CA could not be reached for a JWT-SVID")
	}
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: t.id, Svid: t.token}}}, nil
}

// ValidateJWTSVID checks a JWT-SVID against the cached bundle's JWT keys
// (signature, expiry, audience, trust domain) and returns its SPIFFE ID and
// claims. A token that does not validate is InvalidArgument.
func (srv *Server) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if req.GetAudience() == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	_, b, _ := srv.state.snapshot()
	if b == nil {
		return nil, status.Error(codes.Unavailable, "no trust bundle yet")
	}
	v, err := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: b.TrustDomain(), Source: jwtsvid.NewStaticSource(b), Clock: srv.clock})
	if err != nil {
		return nil, status.Error(codes.Internal, "building the verifier")
	}
	sv, err := v.Verify(ctx, req.GetSvid(), req.GetAudience())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the JWT-SVID is not valid: %s", jwtsvid.ReasonOf(err))
	}
	claims, err := structpb.NewStruct(sv.Claims)
	if err != nil {
		return nil, status.Error(codes.Internal, "encoding the claims")
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: sv.ID.String(), Claims: claims}, nil
}

// jwtJWKS is the bundle's JWT-SVID keys as a JWKS document, what
// FetchJWTBundles sends per trust domain.
func jwtJWKS(b *spiffebundle.Bundle) ([]byte, error) {
	jb := jwtbundle.FromJWTAuthorities(b.TrustDomain(), map[string]crypto.PublicKey(b.JWTAuthorities()))
	return jb.Marshal()
}

type jwtClaims struct {
	Subject  string `json:"sub"`
	Expiry   int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
}

// unverifiedClaims reads sub, exp and iat of a compact JWS without checking
// its signature: only for tokens the CA just handed over TLS.
func unverifiedClaims(tok string) (jwtClaims, error) {
	var c jwtClaims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, errors.New("not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, err
	}
	if _, err := spiffeid.FromString(c.Subject); err != nil {
		return c, fmt.Errorf("sub: %w", err)
	}
	if c.Expiry == 0 {
		return c, errors.New("no exp")
	}
	return c, nil
}
