package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func normIssuer(is store.Issuer) store.Issuer {
	is.NotBefore, is.NotAfter = us(is.NotBefore), us(is.NotAfter)
	is.CreatedAt, is.UpdatedAt = us(is.CreatedAt), us(is.UpdatedAt)
	return is
}

func testIssuersRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	root := rootIssuer("root-1")
	root.CreatedAt = t0.Add(time.Minute)
	inter := store.Issuer{ // offline-root flow: no certificate yet
		ID:        "int-1",
		Kind:      store.KindIntermediate,
		ParentID:  "root-1",
		KeyURI:    "pkcs11:token=ca;object=int-1",
		State:     store.IssuerPrepared,
		CreatedAt: t0.Add(2 * time.Minute),
		UpdatedAt: t0.Add(2 * time.Minute),
	}
	older := rootIssuer("root-0")
	for _, is := range []store.Issuer{root, inter, older} {
		if err := s.InsertIssuer(ctx, is); err != nil {
			t.Fatalf("InsertIssuer(%s): %v", is.ID, err)
		}
	}
	for _, want := range []store.Issuer{root, inter} {
		got, err := s.GetIssuer(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetIssuer(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, normIssuer(want)) {
			t.Errorf("GetIssuer(%s):\n got %+v\nwant %+v", want.ID, got, normIssuer(want))
		}
	}
	list, err := s.ListIssuers(ctx)
	if err != nil {
		t.Fatalf("ListIssuers: %v", err)
	}
	var ids []string
	for _, is := range list {
		ids = append(ids, is.ID)
	}
	if want := []string{"root-0", "root-1", "int-1"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ListIssuers order = %v, want %v", ids, want)
	}
}

func testIssuerKeys(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	wantErr(t, "second issuer with the same ID", s.InsertIssuer(ctx, rootIssuer("root")), store.ErrConflict)
	orphan := rootIssuer("orphan")
	orphan.Kind, orphan.ParentID = store.KindIntermediate, "nobody"
	wantErr(t, "intermediate with a missing parent", s.InsertIssuer(ctx, orphan), store.ErrNotFound)
	_, err := s.GetIssuer(ctx, "nobody")
	wantErr(t, "GetIssuer of a missing ID", err, store.ErrNotFound)
}

func testIssuerStateChanges(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	is := rootIssuer("root")
	is.State = store.IssuerPrepared
	if err := s.InsertIssuer(ctx, is); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	steps := []struct {
		name     string
		id       string
		from, to store.IssuerState
		want     error
		state    store.IssuerState
	}{
		{"prepared issuer becomes active", "root", store.IssuerPrepared, store.IssuerActive, nil, store.IssuerActive},
		{"a stale from state is a conflict and changes nothing", "root", store.IssuerPrepared, store.IssuerRetired, store.ErrConflict, store.IssuerActive},
		{"active issuer starts retiring", "root", store.IssuerActive, store.IssuerRetiring, nil, store.IssuerRetiring},
		{"a missing issuer is not found", "nobody", store.IssuerActive, store.IssuerRetiring, store.ErrNotFound, store.IssuerRetiring},
	}
	for _, st := range steps {
		err := s.SetIssuerState(ctx, st.id, st.from, st.to, later)
		if st.want == nil && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want != nil {
			wantErr(t, st.name, err, st.want)
		}
		got, err := s.GetIssuer(ctx, "root")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != st.state {
			t.Errorf("%s: state = %s, want %s", st.name, got.State, st.state)
		}
		if !got.UpdatedAt.Equal(us(later)) {
			t.Errorf("%s: updated_at = %v, want %v", st.name, got.UpdatedAt, us(later))
		}
	}
}

func testIssuerCertificate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	pending := store.Issuer{ID: "int", Kind: store.KindIntermediate, ParentID: "root", KeyURI: "k",
		State: store.IssuerPrepared, CreatedAt: t0, UpdatedAt: t0}
	if err := s.InsertIssuer(ctx, pending); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	der, skid := []byte{0x30, 1, 2}, []byte{9, 9}
	if err := s.SetIssuerCertificate(ctx, "int", der, skid, t0, t0.Add(48*time.Hour), at); err != nil {
		t.Fatalf("SetIssuerCertificate: %v", err)
	}
	got, err := s.GetIssuer(ctx, "int")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.CertDER) != string(der) || string(got.SubjectKeyID) != string(skid) ||
		!got.NotBefore.Equal(us(t0)) || !got.NotAfter.Equal(us(t0.Add(48*time.Hour))) || !got.UpdatedAt.Equal(us(at)) {
		t.Errorf("after SetIssuerCertificate: %+v", got)
	}
	wantErr(t, "installing a second certificate",
		s.SetIssuerCertificate(ctx, "int", []byte{0x30, 7}, skid, t0, t0, at), store.ErrConflict)
	wantErr(t, "installing on a missing issuer",
		s.SetIssuerCertificate(ctx, "nobody", der, skid, t0, t0, at), store.ErrNotFound)
	again, _ := s.GetIssuer(ctx, "int")
	if string(again.CertDER) != string(der) {
		t.Errorf("a refused second certificate replaced the first")
	}
}

func testTimeRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	// Nanoseconds just below and above a microsecond boundary, in three zones.
	times := []time.Time{
		time.Date(2030, 12, 31, 23, 59, 59, 999999999, time.FixedZone("UTC-11", -11*3600)),
		time.Date(2031, 6, 1, 0, 0, 0, 1, time.FixedZone("UTC+14", 14*3600)),
		time.Date(2031, 6, 1, 0, 0, 0, 1500, time.UTC),
	}
	for _, tm := range times {
		c := leaf("root", "spiffe://example.org/time", tm, time.Hour)
		e := mustRecord(t, s, c)
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		for name, pair := range map[string][2]time.Time{
			"created_at": {got.CreatedAt, tm}, "not_before": {got.NotBefore, tm}, "not_after": {got.NotAfter, tm.Add(time.Hour)},
		} {
			if pair[0].Location() != time.UTC || !pair[0].Equal(us(pair[1])) || pair[0] != us(pair[1]) {
				t.Errorf("%s of %v read back as %v (%s), want %v", name, tm, pair[0], pair[0].Location(), us(pair[1]))
			}
		}
		if e.Time != us(tm) {
			t.Errorf("audit time returned as %v, want %v", e.Time, us(tm))
		}
		entries, err := s.AuditEntries(ctx, e.Seq-1, 1)
		if err != nil || len(entries) != 1 {
			t.Fatalf("AuditEntries: %v %v", entries, err)
		}
		if entries[0].Time != us(tm) {
			t.Errorf("audit time read back as %v, want %v", entries[0].Time, us(tm))
		}
		revokedAt := tm.Add(time.Minute)
		rc, _, err := s.RevokeCertificate(ctx, c.Serial, revokedAt, "keyCompromise", auditFor("revoke", c.Serial, revokedAt))
		if err != nil {
			t.Fatal(err)
		}
		if rc.RevokedAt != us(revokedAt) {
			t.Errorf("revoked_at read back as %v, want %v", rc.RevokedAt, us(revokedAt))
		}
	}
}
