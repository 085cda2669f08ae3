package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// testLineageOrigin: an enrollment's provenance is its lineage's; every
// certificate of the lineage gets it as Origin from GetCertificate while
// renewals store only their own provenance, and a lineage whose enrollment
// recorded none has no Origin.
func testLineageOrigin(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := leaf("root", "spiffe://example.org/prod/payments", t0, time.Hour)
	first.Provenance = json.RawMessage(`{"shape":"github","token_claims":{"repository":"acme/payments"}}`)
	mustRecord(t, s, first)
	r1 := renewal(first, t0.Add(time.Minute))
	r1.Provenance = json.RawMessage(`{"shape":"renewal","renewed_from":"` + first.Serial + `"}`)
	r1.Origin = json.RawMessage(`{"ignored":"on writes"}`)
	mustRecord(t, s, r1)
	r2 := renewal(r1, t0.Add(2*time.Minute))
	r2.Provenance = json.RawMessage(`{"shape":"renewal","renewed_from":"` + r1.Serial + `"}`)
	mustRecord(t, s, r2)
	bare := leaf("root", "spiffe://example.org/prod/other", t0, time.Hour)
	bare.Provenance = nil
	mustRecord(t, s, bare)

	for _, c := range []store.Certificate{first, r1, r2} {
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEq(t, got.Origin, first.Provenance) {
			t.Errorf("%s: origin %s, want the enrollment's provenance %s", c.Serial, got.Origin, first.Provenance)
		}
		if !jsonEq(t, got.Provenance, c.Provenance) {
			t.Errorf("%s: provenance %s, want its own %s", c.Serial, got.Provenance, c.Provenance)
		}
	}
	got, err := s.GetCertificate(ctx, bare.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != nil {
		t.Errorf("an enrollment without provenance has origin %s", got.Origin)
	}
}

func jsonEq(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
