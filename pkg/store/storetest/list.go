package storetest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func serials(list []store.Certificate) []string {
	out := []string{}
	for _, c := range list {
		out = append(out, c.Serial)
	}
	return out
}

func testListFilters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	mustIssuer(t, s, "other")
	now := t0.Add(10 * time.Hour)
	type spec struct {
		issuer, id string
		notAfter   time.Time
		revoke     bool
	}
	specs := map[string]spec{
		"A": {"root", "spiffe://example.org/prod/payments", now.Add(time.Hour), false},
		"B": {"root", "spiffe://example.org/prod/payments", now.Add(10 * time.Hour), false},
		"C": {"root", "spiffe://example.org/prod/orders", now.Add(-time.Hour), false},
		"D": {"other", "spiffe://example.org/ci/acme/x", now.Add(time.Hour), true},
		"E": {"other", "spiffe://example.org/ci/acme/y", now.Add(-time.Hour), true},
		"F": {"root", "spiffe://example.org/prod_x/z", now, false}, // expired exactly at now
		"G": {"root", "spiffe://example.org/PROD/caps", now.Add(30 * time.Minute), false},
	}
	serial := map[string]string{}
	for i, name := range []string{"A", "B", "C", "D", "E", "F", "G"} {
		sp := specs[name]
		created := t0.Add(time.Duration(i+1) * time.Minute)
		c := leaf(sp.issuer, sp.id, created, time.Hour)
		c.NotAfter = sp.notAfter
		mustRecord(t, s, c)
		if sp.revoke {
			if _, _, err := s.RevokeCertificate(ctx, c.Serial, created, "keyCompromise", auditFor("revoke", c.Serial, created)); err != nil {
				t.Fatal(err)
			}
		}
		serial[name] = c.Serial
	}
	cases := []struct {
		name string
		f    store.CertificateFilter
		want string // names, in the filter's order
	}{
		{"no filter lists everything newest first", store.CertificateFilter{}, "GFEDCBA"},
		{"identity matches exactly", store.CertificateFilter{Identity: "spiffe://example.org/prod/payments"}, "BA"},
		{"identity prefix matches a path", store.CertificateFilter{IdentityPrefix: "spiffe://example.org/prod/"}, "CBA"},
		{"identity prefix treats _ literally", store.CertificateFilter{IdentityPrefix: "spiffe://example.org/prod_"}, "F"},
		{"identity prefix is case-sensitive, by identity then newest", store.CertificateFilter{IdentityPrefix: "spiffe://example.org/prod"}, "CBAF"},
		{"active means not revoked and not expired", store.CertificateFilter{Status: store.CertActive, Now: now}, "GBA"},
		{"expired means NotAfter at or before now and not revoked", store.CertificateFilter{Status: store.CertExpired, Now: now}, "FC"},
		{"revoked includes expired revoked ones", store.CertificateFilter{Status: store.CertRevoked, Now: now}, "ED"},
		{"expiring within 2h lists active ones expiring by then, soonest first", store.CertificateFilter{ExpiringWithin: 2 * time.Hour, Now: now}, "GA"},
		{"expiring within 11h with an identity prefix is by identity", store.CertificateFilter{ExpiringWithin: 11 * time.Hour, IdentityPrefix: "spiffe://example.org/", Now: now}, "GBA"},
		{"expiring within 1h includes NotAfter exactly now+1h", store.CertificateFilter{ExpiringWithin: time.Hour, Now: now}, "GA"},
		{"expiring within 59m excludes later ones", store.CertificateFilter{ExpiringWithin: 59 * time.Minute, Now: now}, "G"},
		{"issuer filter", store.CertificateFilter{IssuerID: "other"}, "ED"},
		{"issued since includes the boundary", store.CertificateFilter{IssuedSince: t0.Add(3 * time.Minute)}, "GFEDC"},
		{"filters combine", store.CertificateFilter{IssuerID: "root", Status: store.CertActive, Now: now}, "GBA"},
		{"combined filters can match nothing", store.CertificateFilter{Identity: "spiffe://example.org/prod/payments", Status: store.CertRevoked}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, next, err := s.ListCertificates(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListCertificates: %v", err)
			}
			want := []string{}
			for _, r := range tc.want {
				want = append(want, serial[string(r)])
			}
			if got := serials(page); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v (%s)", got, want, tc.want)
			}
			if next != "" {
				t.Errorf("single page returned next cursor %q", next)
			}
			for _, c := range page {
				if c.Status == store.CertRevoked && c.RevokedAt.IsZero() {
					t.Errorf("revoked certificate without revoked_at: %+v", c)
				}
			}
		})
	}
}

func testListPagination(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	var all []store.Certificate
	for i := 0; i < 25; i++ {
		// Three certificates share each creation time: the serial breaks ties.
		c := leaf("root", fmt.Sprintf("spiffe://example.org/w%d", i%2), t0.Add(time.Duration(i/3)*time.Second), time.Hour)
		mustRecord(t, s, c)
		all = append(all, c)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.After(all[j].CreatedAt)
		}
		return all[i].Serial > all[j].Serial
	})

	walk := func(f store.CertificateFilter, insertAfterFirst bool) ([]string, int) {
		var got []string
		pages := 0
		for {
			page, next, err := s.ListCertificates(ctx, f)
			if err != nil {
				t.Fatalf("ListCertificates page %d: %v", pages, err)
			}
			pages++
			if len(page) > f.Limit {
				t.Fatalf("page of %d rows with limit %d", len(page), f.Limit)
			}
			got = append(got, serials(page)...)
			if insertAfterFirst && pages == 1 {
				// A newer certificate issued meanwhile must not shift later pages.
				mustRecord(t, s, leaf("root", "spiffe://example.org/w0", t0.Add(time.Hour), time.Hour))
			}
			if next == "" {
				return got, pages
			}
			if pages > 30 {
				t.Fatal("pagination does not end")
			}
			f.Cursor = next
		}
	}
	got, pages := walk(store.CertificateFilter{Limit: 7}, true)
	if want := serials(all); !reflect.DeepEqual(got, want) {
		t.Errorf("pages joined = %v\nwant %v", got, want)
	}
	if pages != 4 {
		t.Errorf("25 rows in pages of 7 took %d pages, want 4", pages)
	}

	var w1 []string
	for _, c := range all {
		if c.SPIFFEID == "spiffe://example.org/w1" {
			w1 = append(w1, c.Serial)
		}
	}
	got, _ = walk(store.CertificateFilter{Identity: "spiffe://example.org/w1", Limit: 5}, false)
	if !reflect.DeepEqual(got, w1) {
		t.Errorf("identity pages joined = %v\nwant %v", got, w1)
	}

	// The other orders: by identity for a prefix, soonest-expiring first for
	// an expiry window; pages joined are the one big page, which is sorted.
	for _, tc := range []struct {
		name   string
		f      store.CertificateFilter
		before func(a, b store.Certificate) bool
	}{
		{"identity prefix", store.CertificateFilter{IdentityPrefix: "spiffe://example.org/w", Limit: 4}, func(a, b store.Certificate) bool {
			if a.SPIFFEID != b.SPIFFEID {
				return a.SPIFFEID < b.SPIFFEID
			}
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.After(b.CreatedAt)
			}
			return a.Serial > b.Serial
		}},
		{"expiry window", store.CertificateFilter{ExpiringWithin: 3 * time.Hour, Now: t0, Limit: 4}, func(a, b store.Certificate) bool {
			if !a.NotAfter.Equal(b.NotAfter) {
				return a.NotAfter.Before(b.NotAfter)
			}
			return a.Serial < b.Serial
		}},
	} {
		one := tc.f
		one.Limit = 1000
		whole, _, err := s.ListCertificates(ctx, one)
		if err != nil || len(whole) != 26 {
			t.Fatalf("%s in one page: %d rows, %v; want 26", tc.name, len(whole), err)
		}
		if !sort.SliceIsSorted(whole, func(i, j int) bool { return tc.before(whole[i], whole[j]) }) {
			t.Errorf("%s: one page is not in the order's sequence: %v", tc.name, serials(whole))
		}
		if got, _ := walk(tc.f, false); !reflect.DeepEqual(got, serials(whole)) {
			t.Errorf("%s pages joined = %v\nwant %v", tc.name, got, serials(whole))
		}
		// A cursor of one order does not continue another.
		_, next, _ := s.ListCertificates(ctx, tc.f)
		if _, _, err := s.ListCertificates(ctx, store.CertificateFilter{Cursor: next}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s cursor on an unfiltered list: %v, want ErrInvalidQuery", tc.name, err)
		}
	}

	page, next, err := s.ListCertificates(ctx, store.CertificateFilter{Limit: 1_000_000})
	if err != nil || len(page) != 26 || next != "" {
		t.Errorf("huge limit: %d rows, next %q, err %v; want all 26 in one page", len(page), next, err)
	}
	page, _, err = s.ListCertificates(ctx, store.CertificateFilter{})
	if err != nil || len(page) != 26 {
		t.Errorf("default limit: %d rows, err %v", len(page), err)
	}
}

func testListInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cases := []struct {
		name string
		f    store.CertificateFilter
	}{
		{"a cursor that is not base64 is refused", store.CertificateFilter{Cursor: "!!!"}},
		{"a cursor without a serial is refused", store.CertificateFilter{Cursor: base64.RawURLEncoding.EncodeToString([]byte("123"))}},
		{"a cursor with a non-hex serial is refused", store.CertificateFilter{Cursor: base64.RawURLEncoding.EncodeToString([]byte("123.x' OR 1=1"))}},
		{"an unknown status is refused", store.CertificateFilter{Status: "bogus"}},
		{"active without a current time is refused", store.CertificateFilter{Status: store.CertActive}},
		{"expiring within without a current time is refused", store.CertificateFilter{ExpiringWithin: time.Hour}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.ListCertificates(ctx, tc.f)
			wantErr(t, tc.name, err, store.ErrInvalidQuery)
		})
	}
}
