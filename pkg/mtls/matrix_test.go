package mtls_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// TestMatrix handshakes a real server and client built with this package
// over loopback with every testkit credential, in both directions and with
// TLS 1.3 and 1.2, and checks that the rejecting side reports exactly the
// expected reason (error, OnReject and log line) while the other side learns
// only what the alert tells it.
func TestMatrix(t *testing.T) {
	f := newFixture(t)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, c := range f.kit.Credentials {
			for _, asClient := range []bool{true, false} {
				role, expect := "server", c.ExpectAsServer
				if asClient {
					role, expect = "client", c.ExpectAsClient
				}
				name := fmt.Sprintf("%s presented by the %s over %s is %s", c.Name, role, tls.VersionName(version), expectName(expect))
				t.Run(name, func(t *testing.T) {
					srvRec, cliRec := &recorder{}, &recorder{}
					srvOwn, cliOwn := testca.Good, c.Name
					if !asClient {
						srvOwn, cliOwn = c.Name, testca.Good
					}
					var logs syncBuffer
					sc := f.config(t, srvOwn, srvRec)
					sc.MinVersion = tls.VersionTLS12
					sc.Log = slog.New(slog.NewJSONHandler(&logs, nil))
					cc := f.config(t, cliOwn, cliRec)
					cc.Log = slog.New(slog.NewJSONHandler(&logs, nil))
					cc.MinVersion = tls.VersionTLS12
					scfg, ccfg := mustServer(t, sc), mustClient(t, cc)
					scfg.MaxVersion, ccfg.MaxVersion = version, version
					srv := startServer(t, scfg)
					cliErr := dial(t, srv.addr, ccfg)
					srvErr := srv.result(t)

					rejecter, rejecterErr, rejecterRec := "server", srvErr, srvRec
					other, otherErr, otherRec := "client", cliErr, cliRec
					if !asClient {
						rejecter, rejecterErr, rejecterRec = "client", cliErr, cliRec
						other, otherErr, otherRec = "server", srvErr, srvRec
					}
					if expect == testca.Accept {
						if srvErr != nil || cliErr != nil {
							t.Fatalf("handshake failed: server %v, client %v", srvErr, cliErr)
						}
						if r := append(srvRec.take(), cliRec.take()...); len(r) != 0 {
							t.Fatalf("rejections reported for an accepted handshake: %v", reasons(r))
						}
						return
					}
					got, ok := mtls.Classify(rejecterErr)
					if !ok || !got.Local || string(got.Reason) != expect {
						t.Fatalf("%s (the rejecting side): Classify(%v) = %+v, %v; want local %s", rejecter, rejecterErr, got, ok, expect)
					}
					if _, isReject := errors.AsType[*mtls.RejectError](rejecterErr); !isReject {
						t.Errorf("%s error %v is not a *mtls.RejectError", rejecter, rejecterErr)
					}
					if r := reasons(rejecterRec.take()); !slices.Equal(r, []mtls.Reason{mtls.Reason(expect)}) {
						t.Errorf("%s OnReject reasons = %v, want exactly [%s]", rejecter, r, expect)
					}
					peer, ok := mtls.Classify(otherErr)
					if !ok || peer.Local || peer.Reason != mtls.ReasonRejectedByPeer || peer.Alert != 42 {
						t.Errorf("%s (the rejected side): Classify(%v) = %+v, %v; want the bad_certificate alert as rejected_by_peer", other, otherErr, peer, ok)
					}
					if r := otherRec.take(); len(r) != 0 {
						t.Errorf("the %s, which did not reject, reported %v", other, reasons(r))
					}
					checkRejectLine(t, logs.String(), rejecter, expect, f.kit.Credential(cliOwn).Leaf().URIs[0].String(), f.kit.Credential(srvOwn).Leaf().URIs[0].String())
				})
			}
		}
	}
}

func expectName(e string) string {
	if e == testca.Accept {
		return "accepted"
	}
	return "rejected with " + e
}

// checkRejectLine finds the one rejection log line and checks the fields a
// playbook needs.
func checkRejectLine(t *testing.T, logs, side, reason, source, destination string) {
	t.Helper()
	var found []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "mtls: handshake rejected" {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d rejection log lines, want 1:\n%s", len(found), logs)
	}
	m := found[0]
	want := map[string]string{"side": side, "decision": "reject", "reason": reason, "source_id": source, "destination_id": destination, "level": "WARN"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("log field %s = %v, want %q (line %v)", k, m[k], v, m)
		}
	}
	for _, k := range []string{"detail", "peer_serial", "peer_issuer", "peer_not_after"} {
		if s, _ := m[k].(string); s == "" {
			t.Errorf("log field %s is empty (line %v)", k, m)
		}
	}
}
