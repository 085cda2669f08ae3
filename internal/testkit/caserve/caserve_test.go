package caserve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeEnv makes this test binary, run as `BIN serve`, a stand-in for `ca
// serve`: "serve" answers /readyz and /bundle.pem on CA_PUBLIC_ADDR until
// SIGTERM, "fail" exits at once.
const fakeEnv = "CASERVE_TEST_FAKE"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "serve":
		os.Exit(fakeServe())
	case "fail":
		fmt.Fprintln(os.Stderr, "fake: no configuration")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func fakeServe() int {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "CA_API_ADDR" && name != "CA_PUBLIC_ADDR" && name != "CA_GIVEN" {
			if strings.HasPrefix(name, "CA_") || name == "CASERVE_TEST_DROPPED" {
				fmt.Fprintln(os.Stderr, "fake: inherited", name)
			}
		}
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/bundle.pem", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(bundle) })
	srv := &http.Server{Addr: os.Getenv("CA_PUBLIC_ADDR"), Handler: mux}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		fmt.Fprintln(os.Stderr, `{"msg":"stopped"}`)
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	return 0
}

func TestStartWaitsForReadinessAndStopEndsCleanly(t *testing.T) {
	t.Setenv("CA_NOT_FOR_THE_CHILD", "x")
	t.Setenv("CASERVE_TEST_DROPPED", "x")
	p, err := Start(context.Background(), Options{Bin: os.Args[0], DropEnv: []string{"CASERVE_TEST_DROPPED"},
		Vars: map[string]string{fakeEnv: "serve", "CA_GIVEN": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if !strings.HasPrefix(p.APIURL, "https://127.0.0.1:") || !strings.HasPrefix(p.PublicURL, "http://127.0.0.1:") {
		t.Errorf("URLs %s %s, want free loopback addresses", p.APIURL, p.PublicURL)
	}
	bundle, roots, err := p.Bundle(context.Background())
	if err != nil || len(bundle) == 0 || roots == nil {
		t.Fatalf("Bundle: %d bytes, %v", len(bundle), err)
	}
	if p.Exited() {
		t.Fatal("exited while serving")
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v\n%s", err, p.Stderr())
	}
	if !p.Exited() || !strings.Contains(p.Stderr(), `"msg":"stopped"`) {
		t.Errorf("no clean stop: %s", p.Stderr())
	}
	if strings.Contains(p.Stderr(), "inherited") {
		t.Errorf("the child saw variables it must not:\n%s", p.Stderr())
	}
}

func TestStartFailsWithTheOutputWhenTheProcessExitsEarly(t *testing.T) {
	_, err := Start(context.Background(), Options{Bin: os.Args[0], Vars: map[string]string{fakeEnv: "fail"}})
	if err == nil || !strings.Contains(err.Error(), "exited early") || !strings.Contains(err.Error(), "fake: no configuration") {
		t.Fatalf("err = %v, want an early exit naming the output", err)
	}
}

func TestStartGivesUpWhenNotReadyInTime(t *testing.T) {
	// The process runs but nothing answers on the public address.
	p, err := Start(context.Background(), Options{Bin: os.Args[0], Vars: map[string]string{fakeEnv: "serve"},
		ReadyPath: "/not-here", ReadyWithin: 300 * time.Millisecond})
	if err == nil {
		p.Kill()
		t.Fatal("Start did not give up")
	}
	if !strings.Contains(err.Error(), "did not answer 200") {
		t.Errorf("err = %v", err)
	}
}
