package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2031, 1, 2, 3, 4, 5, 678901000, time.UTC)
	cur := NextCursor(Certificate{Serial: "7f01ab", CreatedAt: at})
	q, err := CertificateFilter{Cursor: cur}.Query()
	if err != nil {
		t.Fatal(err)
	}
	if !q.After || !q.AfterCreatedAt.Equal(at) || q.AfterSerial != "7f01ab" {
		t.Errorf("decoded %+v", q)
	}
}

func TestQueryLimits(t *testing.T) {
	cases := []struct {
		name  string
		limit int
		want  int
	}{
		{"zero limit means the default", 0, DefaultListLimit},
		{"negative limit means the default", -5, DefaultListLimit},
		{"a limit within bounds is kept", 7, 7},
		{"a limit above the maximum is capped", MaxListLimit + 1, MaxListLimit},
	}
	for _, tc := range cases {
		q, err := CertificateFilter{Limit: tc.limit}.Query()
		if err != nil || q.Limit != tc.want {
			t.Errorf("%s: limit %d, %v; want %d", tc.name, q.Limit, err, tc.want)
		}
	}
}

func TestCheckSchema(t *testing.T) {
	cases := []struct {
		name    string
		version uint
		dirty   bool
		present bool
		wantMsg string
	}{
		{"the expected version is accepted", 3, false, true, ""},
		{"no schema says to migrate up", 0, false, false, "run `ca migrate up`"},
		{"an older schema says to migrate up", 2, false, true, "run `ca migrate up`"},
		{"a newer schema is unknown", 4, false, true, "unknown schema version 4, this binary knows up to 3"},
		{"a dirty schema is refused", 3, true, true, "dirty"},
	}
	for _, tc := range cases {
		err := CheckSchema(tc.version, tc.dirty, tc.present, 3)
		if tc.wantMsg == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrSchemaMismatch) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("%s: %v; want ErrSchemaMismatch saying %q", tc.name, err, tc.wantMsg)
		}
	}
}

func TestEffectiveStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name string
		c    Certificate
		want CertStatus
	}{
		{"an unexpired active certificate is active", Certificate{Status: CertActive, NotAfter: now.Add(time.Second)}, CertActive},
		{"an active certificate is expired at NotAfter", Certificate{Status: CertActive, NotAfter: now}, CertExpired},
		{"a revoked certificate stays revoked after expiry", Certificate{Status: CertRevoked, NotAfter: now.Add(-time.Hour)}, CertRevoked},
	}
	for _, tc := range cases {
		if got := tc.c.EffectiveStatus(now); got != tc.want {
			t.Errorf("%s: got %s", tc.name, got)
		}
	}
}

// FuzzCursor: cursors come from HTTP query strings. Any input is either
// refused with ErrInvalidQuery or decodes to a cursor that re-encodes to
// itself.
func FuzzCursor(f *testing.F) {
	f.Add(NextCursor(Certificate{Serial: "1a", CreatedAt: time.Unix(5, 0)}))
	f.Add("")
	f.Add("!!!")
	f.Add("MTIzLg")
	f.Fuzz(func(t *testing.T, cur string) {
		q, err := CertificateFilter{Cursor: cur}.Query()
		if err != nil {
			if !errors.Is(err, ErrInvalidQuery) {
				t.Fatalf("error %v does not wrap ErrInvalidQuery", err)
			}
			return
		}
		if cur == "" {
			return
		}
		again := NextCursor(Certificate{Serial: q.AfterSerial, CreatedAt: q.AfterCreatedAt})
		q2, err := CertificateFilter{Cursor: again}.Query()
		if err != nil || !q2.AfterCreatedAt.Equal(q.AfterCreatedAt) || q2.AfterSerial != q.AfterSerial {
			t.Fatalf("cursor %q decoded to %+v, re-encoded %q decodes to %+v, %v", cur, q, again, q2, err)
		}
	})
}
