package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// embeddedVars configures an embedded-default `ca serve` (SQLite and software
// keys in a fresh data directory) that trusts o's tokens under the e2e
// policy.
func embeddedVars(t *testing.T, o *testkit.OIDCIssuer) map[string]string {
	t.Helper()
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(e2ePolicy(o.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.yaml")
	if err := os.WriteFile(cfgPath, []byte("enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, o, dir)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATA_DIR": filepath.Join(dir, "data"), "CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	}
}

// A certificate answered to a client is in the store, with its audit entry,
// even if the embedded default (SQLite, group commit) is killed with
// SIGKILL right after: the answer comes only after the group's commit, and
// synchronous=FULL makes that commit durable.
func TestAnsweredCertificatesSurviveKill9OfTheEmbeddedDefault(t *testing.T) {
	o := testkit.NewOIDCIssuer(t)
	vars := embeddedVars(t, o)
	dataDir := vars["CA_DATA_DIR"]
	s := startServe(t, vars)
	_, roots := s.bundle(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16,
	}}
	const workers, perWorker = 8, 60
	tokens := make([][]string, workers)
	for w := range tokens {
		for range perWorker {
			tokens[w] = append(tokens[w], o.GitHubToken(t, nil))
		}
	}
	csr := string(newCSR(t, p256(t), nil))

	var mu sync.Mutex
	var answered []string
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tok := range tokens[w] {
				cr, err := requestCertOnceForTest(client, s.apiURL+"/v1/enroll", tok, csr)
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				answered = append(answered, cr.Serial)
				if len(answered) >= 60 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		t.Fatal("fewer than 60 enrollments answered in 2 minutes")
	}
	// Kill while the other workers' enrollments are in flight.
	if err := s.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	wg.Wait()

	st, err := storeopen.Open(context.Background(), "sqlite:"+filepath.Join(dataDir, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mu.Lock()
	defer mu.Unlock()
	audited := map[string]bool{}
	for after := int64(0); ; {
		list, err := st.AuditEntries(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		for _, e := range list {
			if e.Action == "issue" && e.Decision == "allow" {
				audited[e.Target] = true
			}
			after = e.Seq
		}
	}
	for _, serial := range answered {
		if _, err := st.GetCertificate(context.Background(), serial); err != nil {
			t.Errorf("certificate %s was answered but is not in the store after kill -9: %v", serial, err)
		}
		if !audited[serial] {
			t.Errorf("certificate %s was answered but its issuance is not in the audit log after kill -9", serial)
		}
	}
	t.Logf("%d answered certificates checked after kill -9", len(answered))
}

// One token sent 16 times at once to the embedded default (whose replay
// marks are decided in memory and a read, and written by the next group
// commit: issue 20) yields one certificate; the others are token_replayed.
// After a kill -9 right after that answer and a restart on the same data
// directory (the memory gone), the token is still refused: its mark was
// committed no later than the certificate it let through.
func TestOneTokenRacedAgainstTheEmbeddedDefaultGivesOneCertificateAndStaysSpentAcrossKill9(t *testing.T) {
	o := testkit.NewOIDCIssuer(t)
	vars := embeddedVars(t, o)
	clientOf := func(s *servingCA) *http.Client {
		_, roots := s.bundle(t)
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16,
		}}
	}
	s := startServe(t, vars)
	client := clientOf(s)
	tok := o.GitHubToken(t, nil)
	csr := string(newCSR(t, p256(t), nil))
	const racers = 16
	var wg sync.WaitGroup
	start := make(chan struct{})
	serials := make(chan string, racers)
	reasons := make(chan string, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cr, err := requestCertOnceForTest(client, s.apiURL+"/v1/enroll", tok, csr)
			var p *problemError
			switch {
			case err == nil:
				serials <- cr.Serial
			case errors.As(err, &p):
				reasons <- fmt.Sprintf("%d %s", p.Status, p.Reason)
			default:
				t.Errorf("enroll: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(serials)
	close(reasons)
	var got []string
	for serial := range serials {
		got = append(got, serial)
	}
	if len(got) != 1 {
		t.Fatalf("%d certificates for one token raced %d times; want 1", len(got), racers)
	}
	for r := range reasons {
		if want := fmt.Sprintf("401 %s", server.ReasonTokenReplayed); r != want {
			t.Errorf("a losing use answered %q; want %q", r, want)
		}
	}
	// A second server on the same data directory would check replays
	// against its own memory: it is refused before it opens the store.
	second := maps.Clone(vars)
	addrs, err := caserve.FreeAddrs(2)
	if err != nil {
		t.Fatal(err)
	}
	second["CA_API_ADDR"], second["CA_PUBLIC_ADDR"] = addrs[0], addrs[1]
	_, errOut, code := runCA(t, second, "serve")
	if code == 0 || !strings.Contains(errOut, "another `ca serve` is serving this database file") ||
		!strings.Contains(errOut, "process "+strconv.Itoa(s.cmd.Process.Pid)) {
		t.Fatalf("a second ca serve on the same data directory: exit %d\n%s\nwant a refusal naming pid %d", code, lastLines(errOut), s.cmd.Process.Pid)
	}
	if err := s.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-s.exited

	// kill -9 leaves no stale lock: the kernel dropped it with the process.
	again := startServe(t, vars)
	_, err = requestCertOnceForTest(clientOf(again), again.apiURL+"/v1/enroll", tok, csr)
	var p *problemError
	if !errors.As(err, &p) || p.Status != http.StatusUnauthorized || p.Reason != string(server.ReasonTokenReplayed) {
		t.Fatalf("the spent token after kill -9 and a restart: %v; want 401 %s", err, server.ReasonTokenReplayed)
	}
	again.stop(t)
}

// requestCertOnceForTest enrolls once and returns the answer, or an error
// for anything but 201.
func requestCertOnceForTest(c *http.Client, url, token, csr string) (*server.CertResponse, error) {
	cr, _, err := requestCertOnce(context.Background(), c, url, token, []byte(csr), 0)
	return cr, err
}
