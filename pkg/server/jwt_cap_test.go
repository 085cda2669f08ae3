package server

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestJWTSVIDDoesNotOutliveItsCertificate: a workload whose certificate has
// two minutes left asks for five; the token expires with the certificate.
func TestJWTSVIDDoesNotOutliveItsCertificate(t *testing.T) {
	jf := newJWTFixture(t, true)
	jf.records.mu.Lock()
	notAfter := jf.records.certs[jf.serial].NotAfter
	jf.records.mu.Unlock()
	jf.clock.Set(notAfter.Add(-2 * time.Minute))

	_, res, raw := jf.post(t, jf.rs.client(jf.workload), `{"audience": ["vault"], "ttl": "5m"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/jwt = %d %s", res.StatusCode, raw)
	}
	var got JWTResponse
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := notAfter.Truncate(time.Second)
	if !got.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %s, want the certificate's notAfter %s", got.ExpiresAt, want)
	}
	// The exp claim itself (go-spiffe would validate against the real time).
	parts := strings.Split(got.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", got.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp != want.Unix() {
		t.Errorf("exp claim %d (%v), want %d", claims.Exp, err, want.Unix())
	}

	// With more time left than asked for, the ttl rules as before.
	jf.clock.Set(notAfter.Add(-30 * time.Minute))
	_, res, raw = jf.post(t, jf.rs.client(jf.workload), `{"audience": ["vault"], "ttl": "5m"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/jwt = %d %s", res.StatusCode, raw)
	}
	_ = json.Unmarshal(raw, &got)
	if d := got.ExpiresAt.Sub(jf.clock.Now()); d > 5*time.Minute || d < 5*time.Minute-2*time.Second {
		t.Errorf("lifetime %s, want 5m", d)
	}
}
