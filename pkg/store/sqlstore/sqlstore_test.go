package sqlstore

import (
	"testing"
	"time"
)

func TestNullTimeReadsEitherEncoding(t *testing.T) {
	at := time.Date(2026, 12, 5, 13, 0, 0, 123456000, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		src  any
		want time.Time
	}{
		{"NULL is zero", nil, time.Time{}},
		{"a Postgres timestamptz in UTC", at, at.UTC()},
		{"SQLite unix microseconds in UTC", at.UnixMicro(), at.UTC()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt := NullTime{Time: time.Unix(1, 0), Valid: tt.src == nil} // a stale value is overwritten
			if err := nt.Scan(tt.src); err != nil {
				t.Fatal(err)
			}
			if !nt.Time.Equal(tt.want) || nt.Time.Location() != time.UTC {
				t.Errorf("Scan(%v) = %v, want %v in UTC", tt.src, nt.Time, tt.want)
			}
			if nt.Valid != (tt.src != nil) {
				t.Errorf("Scan(%v).Valid = %v, want %v", tt.src, nt.Valid, tt.src != nil)
			}
		})
	}
	var nt NullTime
	if err := nt.Scan("2026-12-05"); err == nil {
		t.Error("Scan of a string succeeded, want an error")
	}
}

func TestZeroTimeIsNULL(t *testing.T) {
	o := New(Dialect{Time: func(t time.Time) any { return t.UnixMicro() }}, nil, nil)
	if v := o.time(time.Time{}); v != nil {
		t.Errorf("time(zero) = %v, want NULL", v)
	}
	at := time.UnixMicro(1_700_000_000_000_001)
	if v := o.time(at); v != at.UnixMicro() {
		t.Errorf("time(%v) = %v, want the dialect's %d", at, v, at.UnixMicro())
	}
}
