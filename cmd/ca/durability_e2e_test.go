package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// A certificate answered to a client is in the store, with its audit entry,
// even if the embedded default (SQLite, group commit) is killed with
// SIGKILL right after: the answer comes only after the group's commit, and
// synchronous=FULL makes that commit durable.
func TestAnsweredCertificatesSurviveKill9OfTheEmbeddedDefault(t *testing.T) {
	o := testkit.NewOIDCIssuer(t)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(e2ePolicy(o.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.yaml")
	cfg := "enroll:\n  token_issuer_ca_file: " + issuerCAFile(t, o, dir) + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	s := startServe(t, map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATA_DIR": dataDir, "CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	})
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

// requestCertOnceForTest enrolls once and returns the answer, or an error
// for anything but 201.
func requestCertOnceForTest(c *http.Client, url, token, csr string) (*server.CertResponse, error) {
	cr, _, err := requestCertOnce(context.Background(), c, url, token, []byte(csr), 0)
	return cr, err
}
