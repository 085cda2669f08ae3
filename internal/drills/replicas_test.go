package drills

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// TestTwoReplicasUnderEnrollmentAndRevocationKeepSerialsUniqueAndCRLNumbersIncreasingAcrossAKill9
// runs two `ca serve` replicas on one private Postgres and one SoftHSM token
// with enrollment load spread over both and revocations through both at the
// same time, then kill -9s the replica that generated the latest CRL under
// that load. It checks: every certificate any client received is recorded
// and no serial repeats across the replicas; the CRL numbers both replicas
// logged are unique and strictly increasing in time, and no two generations
// overlapped (one generator at a time); after the kill the survivor takes
// the generator role and publishes later revocations in a higher-numbered
// CRL and over OCSP. (cmd/ca's publication e2e test covers the published
// artifacts themselves with openssl; this drill is about load and failover.)
func TestTwoReplicasUnderEnrollmentAndRevocationKeepSerialsUniqueAndCRLNumbersIncreasingAcrossAKill9(t *testing.T) {
	d := newDrillCA(t, "log:\n  level: info\n")
	nodes := []*replica{d.serve(t), d.serve(t)}
	names := map[*replica]string{nodes[0]: "A", nodes[1]: "B"}

	// The revoker authenticates with a client certificate the policy maps
	// to the revoker role.
	rev := nodes[0].enrollKey(t, d.token(t, drillRevoker, time.Now()), mustKey(t))
	if !issuedOK(rev) {
		t.Fatalf("revoker certificate: %d %q (%v)", rev.status, rev.reason, rev.err)
	}
	revokers := map[*replica]*http.Client{}
	for _, n := range nodes {
		revokers[n] = mtlsClient(t, n, rev)
	}

	var mu sync.Mutex
	alive := slices.Clone(nodes)
	var next atomic.Uint64
	pick := func() *replica {
		mu.Lock()
		defer mu.Unlock()
		return alive[int(next.Add(1))%len(alive)]
	}
	l := startLoad(t, d, pick, 6)
	testkit.Eventually(t, 90*time.Second, "enrollments on both replicas", func() error {
		if n := l.count(issuedOK); n < 60 {
			return fmt.Errorf("%d issued so far", n)
		}
		return nil
	})

	// Revocations through both replicas, concurrently with the load.
	var revoked []enrollAnswer
	revokeSome := func(n int, through func(i int) *replica) {
		t.Helper()
		l.mu.Lock()
		var pickFrom []enrollAnswer
		for _, a := range l.answers {
			if issuedOK(a) && !slices.ContainsFunc(revoked, func(r enrollAnswer) bool { return r.serial == a.serial }) {
				pickFrom = append(pickFrom, a)
			}
		}
		l.mu.Unlock()
		if len(pickFrom) < n {
			t.Fatalf("only %d certificates to revoke", len(pickFrom))
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			target := through(i)
			wg.Go(func() { errs[i] = revokeThrough(revokers[target], target, pickFrom[i].serial) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("revoke %s: %v", pickFrom[i].serial, err)
			}
		}
		revoked = append(revoked, pickFrom[:n]...)
	}
	revokeSome(10, func(i int) *replica { return nodes[i%2] })
	leaf, err := x509.ParseCertificate(revoked[0].der)
	if err != nil {
		t.Fatal(err)
	}
	issuerCert := parseChain(t, revoked[0].chain)
	crlPath := leaf.CRLDistributionPoints[0][strings.Index(leaf.CRLDistributionPoints[0], "/crl/"):]
	for _, n := range nodes {
		testkit.Eventually(t, 60*time.Second, "the revocations in "+names[n]+"'s CRL", func() error {
			return crlLists(n, crlPath, issuerCert, revoked, 0)
		})
	}

	// kill -9 the replica that generated the latest CRL, under load.
	latest := latestCRL(t, nodes, names, crlPath)
	victim, survivor := nodes[0], nodes[1]
	if latest.node == "B" {
		victim, survivor = nodes[1], nodes[0]
	}
	mu.Lock()
	alive = []*replica{survivor}
	mu.Unlock()
	victim.kill9(t)
	t.Logf("killed %s (generated CRL %d) with SIGKILL under load", names[victim], latest.number)
	issuedAtKill := l.count(issuedOK)
	testkit.Eventually(t, 60*time.Second, "enrollments on the survivor", func() error {
		if n := l.count(issuedOK); n < issuedAtKill+20 {
			return fmt.Errorf("%d issued since the kill", n-issuedAtKill)
		}
		return nil
	})
	revokeSome(3, func(int) *replica { return survivor })
	testkit.Eventually(t, 60*time.Second, "the survivor's CRL after the kill", func() error {
		return crlLists(survivor, crlPath, issuerCert, revoked, latest.number+1)
	})
	for _, a := range revoked[len(revoked)-3:] {
		if st := ocspStatus(t, survivor, a, issuerCert); st != ocsp.Revoked {
			t.Errorf("OCSP of the survivor for %s revoked after the kill: status %d", a.serial, st)
		}
	}
	answers := l.halt()

	// One generator at a time, numbers unique and strictly increasing.
	var all []crlLog
	for _, n := range nodes {
		all = append(all, crlLogs(n, names[n], crlPath)...)
	}
	slices.SortFunc(all, func(x, y crlLog) int { return x.end.Compare(y.end) })
	for i := 1; i < len(all); i++ {
		if all[i].number <= all[i-1].number {
			t.Errorf("CRL %d by %s (done %s) after CRL %d by %s (done %s): numbers not strictly increasing",
				all[i].number, all[i].node, all[i].end.Format(time.StampMicro), all[i-1].number, all[i-1].node, all[i-1].end.Format(time.StampMicro))
		}
	}
	for _, x := range all {
		for _, y := range all {
			if x.node < y.node && x.start.Before(y.end) && y.start.Before(x.end) {
				t.Errorf("%s generated CRL %d while %s generated CRL %d", x.node, x.number, y.node, y.number)
			}
		}
	}
	after := all[len(all)-1]
	if after.node != names[survivor] || after.number <= latest.number {
		t.Errorf("last CRL %d by %s, want one above %d by the survivor %s", after.number, after.node, latest.number, names[survivor])
	}
	var other int
	for _, a := range answers {
		if a.err == nil && a.status != http.StatusCreated {
			other++
		}
	}
	if other > 0 {
		t.Errorf("%d enrollments answered other than 201 while a replica was up", other)
	}
	n := checkNothingLost(t, d, answers)
	t.Logf("%d certificates from two replicas (all recorded, serials unique), %d revocations, CRLs generated: %v", n, len(revoked), all)
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mtlsClient is an HTTPS client to n's API listener presenting a's
// certificate.
func mtlsClient(t *testing.T, n *replica, a enrollAnswer) *http.Client {
	t.Helper()
	cert := tls.Certificate{Certificate: [][]byte{a.der}, PrivateKey: a.key}
	for rest := a.chain; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		cert.Certificate = append(cert.Certificate, blk.Bytes)
	}
	base := n.client.Transport.(*http.Transport).TLSClientConfig
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: base.RootCAs, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}}}
}

func revokeThrough(c *http.Client, n *replica, serial string) error {
	res, err := c.Post(n.apiURL+"/v1/certificates/"+serial+"/revoke", "application/json", strings.NewReader(`{"reason":"keyCompromise"}`))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%d %s", res.StatusCode, body)
	}
	return nil
}

// parseChain returns the first certificate of a PEM chain (the issuer).
func parseChain(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(chain)
	if blk == nil {
		t.Fatal("empty chain")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// crlLists downloads n's CRL and checks it is signed by issuer, numbered at
// least minNumber, and lists every serial of revoked.
func crlLists(n *replica, path string, issuer *x509.Certificate, revoked []enrollAnswer, minNumber int64) error {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(n.publicURL + path)
	if err != nil {
		return err
	}
	der, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("CRL: %d", res.StatusCode)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return err
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("CRL signature: %w", err)
	}
	if crl.Number.Int64() < minNumber {
		return fmt.Errorf("CRL number %d, want at least %d", crl.Number.Int64(), minNumber)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[fmt.Sprintf("%x", e.SerialNumber)] = true
	}
	for _, a := range revoked {
		leaf, err := x509.ParseCertificate(a.der)
		if err != nil {
			return err
		}
		if !listed[fmt.Sprintf("%x", leaf.SerialNumber)] {
			return fmt.Errorf("CRL %d does not list %s", crl.Number.Int64(), a.serial)
		}
	}
	return nil
}

// ocspStatus asks n's OCSP responder about a.
func ocspStatus(t *testing.T, n *replica, a enrollAnswer, issuer *x509.Certificate) int {
	t.Helper()
	leaf, err := x509.ParseCertificate(a.der)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Post(n.publicURL+"/ocsp", "application/ocsp-request", strings.NewReader(string(req)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		t.Fatalf("OCSP answer for %s: %v", a.serial, err)
	}
	return r.Status
}

// crlLog is one "CRL published" line of a replica's JSON log.
type crlLog struct {
	node       string
	number     int64
	start, end time.Time
}

func (c crlLog) String() string { return fmt.Sprintf("%d by %s", c.number, c.node) }

func crlLogs(n *replica, name, crlPath string) []crlLog {
	var out []crlLog
	sc := bufio.NewScanner(strings.NewReader(n.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Issuer   string    `json:"issuer"`
			Number   int64     `json:"crl_number"`
			Duration int64     `json:"duration"` // nanoseconds
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "CRL published" && crlPath == "/crl/"+line.Issuer+".crl" {
			out = append(out, crlLog{node: name, number: line.Number, start: line.Time.Add(-time.Duration(line.Duration)), end: line.Time})
		}
	}
	return out
}

func latestCRL(t *testing.T, nodes []*replica, names map[*replica]string, crlPath string) crlLog {
	t.Helper()
	var latest crlLog
	for _, n := range nodes {
		for _, c := range crlLogs(n, names[n], crlPath) {
			if c.number > latest.number {
				latest = c
			}
		}
	}
	if latest.node == "" {
		t.Fatal("no replica logged a published CRL")
	}
	return latest
}
