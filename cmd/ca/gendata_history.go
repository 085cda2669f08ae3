package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // SKI method 1 (RFC 7093), as pkg/issuer computes it
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/url"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// historyLoader is the stores' bulk path for synthetic history
// (pkg/store/postgres and pkg/store/sqlite BulkLoadHistory).
type historyLoader interface {
	BulkLoadHistory(ctx context.Context, h store.History) error
	AuditHead(ctx context.Context) (store.AuditEntry, error)
}

// historyPlan is what `ca gendata --workloads N` writes: N workloads, each
// enrolling once per reauth period and renewing every renewEvery with
// certificates of ttl, over span ending now.
type historyPlan struct {
	workloads  int
	renewEvery time.Duration
	span       time.Duration
	ttl        time.Duration
	reauth     time.Duration
	ocspValid  time.Duration
	batch      int
	seed       uint64
}

// certificates is how many certificates the plan writes.
func (p historyPlan) certificates() int64 {
	return int64(p.workloads) * int64(p.span/p.renewEvery)
}

// genHistory writes the plan's certificates, OCSP responses and audit
// entries as the server writes them: real DER of the issuer's profile and
// size (leaf and OCSP response signed with a throwaway key of the issuer's
// algorithm, so their signatures do not verify: measurement data only),
// enrollment provenance with the token's claims (kept once per lineage),
// renewal provenance of its own, lineage fields, superseded_by, and one
// hash-chained audit entry per certificate.
func genHistory(ctx context.Context, st store.Store, p historyPlan, issuerRec store.Issuer, publicURL, domain string, stdout io.Writer) error {
	hl, ok := st.(historyLoader)
	if !ok {
		return errors.New("this store has no bulk history path")
	}
	g, err := newHistoryGen(ctx, st, p, issuerRec, publicURL, domain)
	if err != nil {
		return err
	}
	head, err := hl.AuditHead(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	g.seq, g.prev = head.Seq, head.Hash
	start := time.Now()
	total := p.certificates()
	var done int64
	for !g.finished() {
		h := g.next(p.batch)
		if err := hl.BulkLoadHistory(ctx, h); err != nil {
			return err
		}
		done += int64(len(h.Certificates))
		fmt.Fprintf(stdout, "%d/%d certificates (%.0f/s)\n", done, total, float64(done)/time.Since(start).Seconds())
	}
	fmt.Fprintf(stdout, "added %d certificates, %d OCSP responses and %d audit entries for %d workloads over %s in %s\n",
		done, done, done, p.workloads, p.span, time.Since(start).Round(time.Millisecond))
	return nil
}

type historyGen struct {
	p          historyPlan
	rng        *mrand.Rand
	issuer     *x509.Certificate // the real issuer certificate, public key replaced by the throwaway's
	issuerID   string
	signer     crypto.Signer // throwaway, the issuer's algorithm
	responder  *x509.Certificate
	crlURL     string
	ocspURL    string
	domain     string
	leafKeys   []crypto.PublicKey
	start, end time.Time
	slots      int // renewal slots in span
	slot, w    int // next certificate: slot and workload
	seq        int64
	prev       []byte
	workloads  []workloadState
}

type workloadState struct {
	serial       string // the certificate of the previous slot
	nextSerial   string // the serial its successor will have
	lineage      string
	started      time.Time
	enrollProv   json.RawMessage
	repo, sub    string
	lineageSlots int
}

func newHistoryGen(ctx context.Context, st store.Store, p historyPlan, rec store.Issuer, publicURL, domain string) (*historyGen, error) {
	if len(rec.CertDER) == 0 {
		return nil, fmt.Errorf("issuer %s has no certificate yet", rec.ID)
	}
	parent, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return nil, err
	}
	signer, err := throwawayLike(parent.PublicKey)
	if err != nil {
		return nil, err
	}
	parent.PublicKey = signer.Public()
	g := &historyGen{
		p: p, rng: mrand.New(mrand.NewPCG(p.seed, uint64(time.Now().UnixNano()))),
		issuer: parent, issuerID: rec.ID, signer: signer,
		crlURL: fmt.Sprintf("%s/crl/%s.crl", publicURL, rec.ID), ocspURL: publicURL + "/ocsp", domain: domain,
		end: time.Now().UTC().Truncate(time.Second), slots: int(p.span / p.renewEvery),
		workloads: make([]workloadState, p.workloads),
	}
	g.start = g.end.Add(-p.span)
	// The delegated responder certificate the OCSP responses carry: the
	// recorded one when `ca serve` made it, else one of the same profile.
	if r, err := st.LatestOCSPResponder(ctx, rec.ID); err == nil {
		if g.responder, err = x509.ParseCertificate(r.CertDER); err != nil {
			return nil, err
		}
	} else {
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: rec.ID + " OCSP responder"},
			NotBefore: g.start, NotAfter: g.end.Add(30 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, ExtraExtensions: []pkix.Extension{{Id: []int{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}, Value: []byte{5, 0}}},
		}, parent, signer.Public(), signer)
		if err != nil {
			return nil, err
		}
		if g.responder, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
	}
	for range 64 { // workload keys: a new one at every renewal, from a pool
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		g.leafKeys = append(g.leafKeys, k.Public())
	}
	for i := range g.workloads {
		g.workloads[i].nextSerial = g.newSerial()
	}
	return g, nil
}

// throwawayLike makes a key of pub's algorithm and size.
func throwawayLike(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, k.N.BitLen())
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("issuer key type %T", pub)
}

func (g *historyGen) newSerial() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	b[0] = b[0]&0x7f | 0x40 // positive, 16 bytes, as pkg/issuer's (no leading zero)
	return hex.EncodeToString(b[:])
}

func (g *historyGen) finished() bool { return g.slot >= g.slots }

// next makes up to n certificates, slot by slot, workload by workload, so
// that times and audit entries are in order.
func (g *historyGen) next(n int) store.History {
	var h store.History
	for len(h.Certificates) < n && !g.finished() {
		c, r, e := g.one(g.slot, g.w)
		h.Certificates, h.OCSP, h.Audit = append(h.Certificates, c), append(h.OCSP, r), append(h.Audit, e)
		if g.w++; g.w == g.p.workloads {
			g.w, g.slot = 0, g.slot+1
		}
	}
	return h
}

func (g *historyGen) one(slot, w int) (store.Certificate, store.OCSPResponse, store.AuditEntry) {
	ws := &g.workloads[w]
	// Workloads spread over the slot, in workload order.
	at := g.start.Add(time.Duration(slot)*g.p.renewEvery + time.Duration(w)*g.p.renewEvery/time.Duration(g.p.workloads)).Truncate(time.Microsecond)
	serial := ws.nextSerial
	ws.nextSerial = g.newSerial()
	renewal := ws.serial != "" && ws.lineageSlots < int(g.p.reauth/g.p.renewEvery)
	repo := fmt.Sprintf("acme/svc-%04d", w)
	spiffe := fmt.Sprintf("spiffe://%s/ci/%s", g.domain, repo)
	dns := []string{fmt.Sprintf("svc-%04d.internal", w)}
	var prov json.RawMessage
	actor, action := spiffe, "renew"
	renewedFrom := ""
	if renewal {
		renewedFrom = ws.serial
		prov, _ = json.Marshal(enroll.RenewalProvenance{
			Shape: "renewal", RenewedFrom: ws.serial, Lineage: ws.lineage, SPIFFEID: spiffe,
			PolicyRule: "github-acme", PolicyVersion: "sha256:" + fmt.Sprintf("%064x", 1),
		})
		ws.lineageSlots++
	} else {
		ws.lineage, ws.started, ws.lineageSlots, ws.repo = serial, at, 1, repo
		ws.sub = fmt.Sprintf("repo:%s:ref:refs/heads/main", repo)
		prov = g.enrollment(at, repo, ws.sub)
		ws.enrollProv = prov
		actor, action = ws.sub, "issue"
	}
	pub := g.leafKeys[g.rng.IntN(len(g.leafKeys))]
	spki, _ := x509.MarshalPKIXPublicKey(pub)
	ski := sha1.Sum(spki[len(spki)-65:]) //nolint:gosec // P-256 point
	u, _ := url.Parse(spiffe)
	sn, _ := new(big.Int).SetString(serial, 16)
	notAfter := at.Add(g.p.ttl)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: sn, NotBefore: at.Add(-time.Minute).Truncate(time.Second), NotAfter: notAfter.Truncate(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, SubjectKeyId: ski[:], URIs: []*url.URL{u}, DNSNames: dns,
		CRLDistributionPoints: []string{g.crlURL}, OCSPServer: []string{g.ocspURL},
	}, g.issuer, pub, g.signer)
	if err != nil {
		panic(fmt.Sprintf("gendata: signing a synthetic certificate: %v", err)) // a fixed, valid template
	}
	sum := sha256.Sum256(spki)
	c := store.Certificate{
		Serial: serial, IssuerID: g.issuerID, SPIFFEID: spiffe, DNSNames: dns,
		NotBefore: at.Add(-time.Minute).Truncate(time.Second), NotAfter: notAfter.Truncate(time.Second), DER: der,
		PublicKeySHA256: hex.EncodeToString(sum[:]), Status: store.CertActive, Provenance: prov,
		PolicyRule: "github-acme", PolicyVersion: "sha256:" + fmt.Sprintf("%064x", 1), RenewedFrom: renewedFrom, CreatedAt: at,
		Lineage: ws.lineage, Repository: ws.repo, TokenIssuer: "github", Subject: ws.sub, LineageStartedAt: ws.started,
	}
	// The certificate of the next slot renews this one, unless it starts
	// a new lineage or the span ends first.
	if slot+1 < g.slots && ws.lineageSlots < int(g.p.reauth/g.p.renewEvery) {
		c.SupersededBy = ws.nextSerial
	}
	ws.serial = serial
	thisUpdate := at.Truncate(time.Second)
	ocspDER, err := ocsp.CreateResponse(g.issuer, g.responder, ocsp.Response{
		Status: ocsp.Good, SerialNumber: sn, ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(g.p.ocspValid),
		Certificate: g.responder, IssuerHash: crypto.SHA1,
	}, g.signer)
	if err != nil {
		panic(fmt.Sprintf("gendata: signing a synthetic OCSP response: %v", err))
	}
	r := store.OCSPResponse{Serial: serial, IssuerID: g.issuerID, ThisUpdate: thisUpdate,
		NextUpdate: thisUpdate.Add(g.p.ocspValid), CertNotAfter: c.NotAfter, DER: ocspDER}
	details, _ := json.Marshal(map[string]any{
		"issuer": g.issuerID, "spiffe_id": spiffe, "dns_names": dns, "not_after": c.NotAfter,
		"policy_rule": "github-acme", "renewed_from": renewedFrom,
	})
	g.seq++
	e := store.AuditEntry{Seq: g.seq, Time: at, Actor: actor, Action: action, Target: serial, Decision: "allow",
		PolicyVersion: c.PolicyVersion, RequestID: fmt.Sprintf("%016x-%s", g.rng.Uint64(), big.NewInt(g.seq).Text(36)),
		Details: details, PrevHash: g.prev}
	e.Hash = store.AuditHash(g.prev, e)
	g.prev = e.Hash
	return c, r, e
}

// enrollment is an enrollment's provenance as pkg/enroll records it for a
// GitHub Actions token: the shape's claims and all of the token's claims.
func (g *historyGen) enrollment(at time.Time, repo, sub string) json.RawMessage {
	runID := fmt.Sprint(8_000_000_000 + g.rng.Int64N(1_000_000_000))
	sha := fmt.Sprintf("%016x%016x%08x", g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint32())
	iat := at.Add(-30 * time.Second)
	token := map[string]any{
		"jti": fmt.Sprintf("%016x-%016x", g.rng.Uint64(), g.rng.Uint64()), "sub": sub,
		"aud": "https://ca.example.org", "ref": "refs/heads/main", "sha": sha, "repository": repo,
		"repository_owner": "acme", "repository_owner_id": "1234567", "run_id": runID, "run_number": "4711",
		"run_attempt": "1", "repository_visibility": "private", "repository_id": fmt.Sprint(600_000_000 + len(repo)*1000),
		"actor_id": "7654321", "actor": "deploy-bot", "workflow": "deploy", "head_ref": "", "base_ref": "",
		"event_name": "push", "ref_protected": "true", "ref_type": "branch",
		"workflow_ref":       repo + "/.github/workflows/deploy.yml@refs/heads/main",
		"workflow_sha":       sha,
		"job_workflow_ref":   repo + "/.github/workflows/deploy.yml@refs/heads/main",
		"job_workflow_sha":   sha,
		"runner_environment": "github-hosted",
		"environment":        "production",
		"enterprise":         "acme",
		"iss":                "https://token.actions.githubusercontent.com",
		"nbf":                iat.Unix(),
		"exp":                iat.Add(5 * time.Minute).Unix(),
		"iat":                iat.Unix(),
	}
	claims := map[string]string{}
	for _, k := range []string{"repository", "repository_owner", "repository_id", "ref", "ref_type", "sha", "workflow",
		"job_workflow_ref", "environment", "event_name", "actor", "run_id", "run_attempt", "runner_environment"} {
		if v, ok := token[k].(string); ok && v != "" {
			claims[k] = v
		}
	}
	all, _ := json.Marshal(token)
	it := iat.UTC()
	return enroll.Provenance{
		TokenIssuer: "github", Iss: "https://token.actions.githubusercontent.com", Sub: sub, JTI: token["jti"].(string),
		IssuedAt: &it, Shape: enroll.ShapeGitHub, Claims: claims, PolicyRule: "github-acme",
		PolicyVersion: "sha256:" + fmt.Sprintf("%064x", 1), TokenClaims: all,
	}.JSON()
}
