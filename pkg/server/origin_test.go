package server

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestCertificateViewShowsARenewalsOriginFromItsLineage(t *testing.T) {
	origin := json.RawMessage(`{"shape":"github","sub":"repo:acme/payments"}`)
	tests := []struct {
		name       string
		provenance string
		origin     json.RawMessage
		wantOrigin bool
	}{
		{"a renewal gets its lineage's enrollment provenance as origin", `{"shape":"renewal","lineage":"ab"}`, origin, true},
		{"a renewal recorded with its origin keeps it", `{"shape":"renewal","origin":{"shape":"github","sub":"repo:acme/payments"}}`, json.RawMessage(`{"shape":"other"}`), true},
		{"an enrollment is shown as recorded", `{"shape":"github","sub":"repo:acme/payments"}`, origin, false},
		{"a renewal of a lineage without provenance has none", `{"shape":"renewal"}`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := certificateView(store.Certificate{Serial: "cd", Provenance: json.RawMessage(tt.provenance), Origin: tt.origin}, time.Now(), false)
			var p struct {
				Origin *struct {
					Sub string `json:"sub"`
				} `json:"origin"`
			}
			if err := json.Unmarshal(v.Provenance, &p); err != nil {
				t.Fatal(err)
			}
			if got := p.Origin != nil && p.Origin.Sub == "repo:acme/payments"; got != tt.wantOrigin {
				t.Errorf("provenance %s: origin shown %v, want %v", v.Provenance, got, tt.wantOrigin)
			}
		})
	}
}
