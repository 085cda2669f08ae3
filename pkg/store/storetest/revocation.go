package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func mustRevoke(t *testing.T, s store.Store, c store.Certificate, at time.Time, reason string) {
	t.Helper()
	if _, _, err := s.RevokeCertificate(ctxT(t), c.Serial, at, reason, auditFor("revoke", c.Serial, at)); err != nil {
		t.Fatalf("RevokeCertificate(%s): %v", c.Serial, err)
	}
}

func testRevocationSeqAndEntries(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	mustIssuer(t, s, "b")
	seq := func(id string) int64 {
		t.Helper()
		n, err := s.RevocationSeq(ctx, id)
		if err != nil {
			t.Fatalf("RevocationSeq(%s): %v", id, err)
		}
		return n
	}
	if n := seq("a"); n != 0 {
		t.Fatalf("counter of an issuer without revocations = %d, want 0", n)
	}
	now := t0.Add(2 * time.Hour)
	live1 := leaf("a", "spiffe://example.org/x", t0, 3*time.Hour)
	live2 := leaf("a", "spiffe://example.org/y", t0, 3*time.Hour)
	expired := leaf("a", "spiffe://example.org/z", t0, time.Hour)
	good := leaf("a", "spiffe://example.org/g", t0, 3*time.Hour)
	other := leaf("b", "spiffe://example.org/o", t0, 3*time.Hour)
	for _, c := range []store.Certificate{live1, live2, expired, good, other} {
		mustRecord(t, s, c)
	}
	at := t0.Add(time.Minute)
	mustRevoke(t, s, live1, at, "keyCompromise")
	mustRevoke(t, s, live2, at, "superseded")
	mustRevoke(t, s, expired, at, "unspecified")
	mustRevoke(t, s, other, at, "keyCompromise")
	if _, _, err := s.RevokeCertificate(ctx, live1.Serial, at, "superseded", auditFor("revoke", live1.Serial, at)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revoking twice: %v", err)
	}
	if a, b := seq("a"), seq("b"); a != 3 || b != 1 {
		t.Errorf("counters after 3+1 revocations and one refused repeat = %d, %d; want 3, 1", a, b)
	}

	got, err := s.RevokedEntries(ctx, "a", now)
	if err != nil {
		t.Fatalf("RevokedEntries: %v", err)
	}
	want := []store.RevocationStatus{
		{Serial: live1.Serial, IssuerID: "a", NotAfter: us(live1.NotAfter), Revoked: true, RevokedAt: us(at), Reason: "keyCompromise"},
		{Serial: live2.Serial, IssuerID: "a", NotAfter: us(live2.NotAfter), Revoked: true, RevokedAt: us(at), Reason: "superseded"},
	}
	if want[0].Serial > want[1].Serial {
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RevokedEntries =\n %+v\nwant (by serial, expired and good ones left out)\n %+v", got, want)
	}

	st, err := s.CertificateStatus(ctx, good.Serial)
	if err != nil || st.Revoked || st.IssuerID != "a" || !st.NotAfter.Equal(us(good.NotAfter)) || !st.RevokedAt.IsZero() {
		t.Errorf("CertificateStatus(good) = %+v, %v", st, err)
	}
	st, err = s.CertificateStatus(ctx, live1.Serial)
	if err != nil || !st.Revoked || st.Reason != "keyCompromise" || !st.RevokedAt.Equal(us(at)) {
		t.Errorf("CertificateStatus(revoked) = %+v, %v", st, err)
	}
	_, err = s.CertificateStatus(ctx, "ffff")
	wantErr(t, "status of an unknown serial", err, store.ErrNotFound)
}

func testCRLStorage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	_, err := s.GetCRL(ctx, "a")
	wantErr(t, "GetCRL before any was stored", err, store.ErrNotFound)
	_, err = s.CRLInfo(ctx, "a")
	wantErr(t, "CRLInfo before any was stored", err, store.ErrNotFound)

	c := store.CRL{IssuerID: "a", Number: 2, ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), RevocationSeq: 5, Entries: 3, DER: []byte{0x30, 1, 2}}
	if err := s.PutCRL(ctx, c); err != nil {
		t.Fatalf("PutCRL: %v", err)
	}
	got, err := s.GetCRL(ctx, "a")
	want := c
	want.ThisUpdate, want.NextUpdate = us(c.ThisUpdate), us(c.NextUpdate)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetCRL = %+v, %v; want %+v", got, err, want)
	}
	info, err := s.CRLInfo(ctx, "a")
	want.DER = nil
	if err != nil || !reflect.DeepEqual(info, want) {
		t.Errorf("CRLInfo = %+v, %v; want %+v (no DER)", info, err, want)
	}

	for _, n := range []int64{1, 2} {
		stale := c
		stale.Number, stale.DER = n, []byte{0x30, 0}
		wantErr(t, "storing a CRL whose number is not higher", s.PutCRL(ctx, stale), store.ErrConflict)
	}
	if got, _ := s.GetCRL(ctx, "a"); got.Number != 2 || string(got.DER) != string(c.DER) {
		t.Errorf("a refused PutCRL changed the stored CRL: %+v", got)
	}
	newer := c
	newer.Number, newer.Entries, newer.DER = 7, 0, []byte{0x30, 9}
	if err := s.PutCRL(ctx, newer); err != nil {
		t.Fatalf("PutCRL(newer): %v", err)
	}
	if got, _ := s.GetCRL(ctx, "a"); got.Number != 7 || got.Entries != 0 || string(got.DER) != string(newer.DER) {
		t.Errorf("after a higher number, GetCRL = %+v", got)
	}
	unknown := c
	unknown.IssuerID = "nobody"
	wantErr(t, "PutCRL for an unknown issuer", s.PutCRL(ctx, unknown), store.ErrNotFound)
}

func testOCSPResponses(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	now := t0.Add(time.Minute)
	c1 := leaf("a", "spiffe://example.org/1", t0, time.Hour)
	c2 := leaf("a", "spiffe://example.org/2", t0, time.Hour)
	gone := leaf("a", "spiffe://example.org/3", t0.Add(-2*time.Hour), time.Hour) // expired at now
	for _, c := range []store.Certificate{c1, c2, gone} {
		mustRecord(t, s, c)
	}
	work := func(refreshBefore time.Time) map[string]bool {
		t.Helper()
		list, err := s.OCSPWork(ctx, "a", now, refreshBefore, 100)
		if err != nil {
			t.Fatalf("OCSPWork: %v", err)
		}
		m := map[string]bool{}
		for _, w := range list {
			m[w.Serial] = w.Revoked
		}
		return m
	}
	if w := work(now); len(w) != 2 || !hasKey(w, c1.Serial) || !hasKey(w, c2.Serial) {
		t.Fatalf("work without responses = %v; want both unexpired leaves", w)
	}
	if list, _ := s.OCSPWork(ctx, "a", now, now, 1); len(list) != 1 {
		t.Errorf("OCSPWork ignores its limit: %d rows", len(list))
	}

	resp := func(c store.Certificate, revoked bool, this time.Time, der string) store.OCSPResponse {
		return store.OCSPResponse{Serial: c.Serial, IssuerID: "a", Revoked: revoked, ThisUpdate: this, NextUpdate: this.Add(time.Hour), DER: []byte(der)}
	}
	if err := s.PutOCSPResponse(ctx, resp(c1, false, now, "good1")); err != nil {
		t.Fatalf("PutOCSPResponse(good): %v", err)
	}
	got, err := s.GetOCSPResponse(ctx, c1.Serial)
	wantResp := store.OCSPResponse{Serial: c1.Serial, IssuerID: "a", ThisUpdate: us(now), NextUpdate: us(now.Add(time.Hour)), CertNotAfter: us(c1.NotAfter), DER: []byte("good1")}
	if err != nil || !reflect.DeepEqual(got, wantResp) {
		t.Errorf("GetOCSPResponse = %+v, %v; want %+v", got, err, wantResp)
	}
	if w := work(now); len(w) != 1 || !hasKey(w, c2.Serial) {
		t.Errorf("work with one fresh response = %v; want only %s", w, c2.Serial)
	}
	if w := work(now.Add(time.Hour)); len(w) != 2 {
		t.Errorf("work with refreshBefore at the response's nextUpdate = %v; want both", w)
	}

	wantErr(t, "a revoked response for a good certificate", s.PutOCSPResponse(ctx, resp(c2, true, now, "x")), store.ErrConflict)
	wantErr(t, "an older good response", s.PutOCSPResponse(ctx, resp(c1, false, now.Add(-time.Second), "old")), store.ErrConflict)
	wantErr(t, "a response for an unknown serial", s.PutOCSPResponse(ctx, store.OCSPResponse{Serial: "ffff", ThisUpdate: now, NextUpdate: now, DER: []byte("x")}), store.ErrNotFound)

	mustRevoke(t, s, c1, now, "keyCompromise")
	if w := work(now); len(w) != 2 || !w[c1.Serial] {
		t.Errorf("work after revoking a certificate with a good response = %v; want it listed as revoked", w)
	}
	wantErr(t, "a good response for a revoked certificate", s.PutOCSPResponse(ctx, resp(c1, false, now.Add(time.Minute), "good2")), store.ErrConflict)
	// A revoked response replaces a good one even if its thisUpdate is older
	// (another replica's clock).
	if err := s.PutOCSPResponse(ctx, resp(c1, true, now.Add(-time.Minute), "revoked1")); err != nil {
		t.Fatalf("PutOCSPResponse(revoked): %v", err)
	}
	if got, _ := s.GetOCSPResponse(ctx, c1.Serial); !got.Revoked || string(got.DER) != "revoked1" {
		t.Errorf("after revocation the stored response is %+v", got)
	}
	if w := work(now); hasKey(w, c1.Serial) {
		t.Errorf("work after storing the revoked response still lists it: %v", w)
	}
	_, err = s.GetOCSPResponse(ctx, c2.Serial)
	wantErr(t, "GetOCSPResponse without a response", err, store.ErrNotFound)

	oldest, ok, err := s.OCSPOldest(ctx, "a", now)
	if err != nil || !ok || !oldest.Equal(us(now.Add(-time.Minute))) {
		t.Errorf("OCSPOldest = %v, %v, %v; want %v", oldest, ok, err, us(now.Add(-time.Minute)))
	}
	if _, ok, err := s.OCSPOldest(ctx, "a", c1.NotAfter); ok || err != nil {
		t.Errorf("OCSPOldest after every leaf expired = %v, %v; want none", ok, err)
	}
}

func hasKey(m map[string]bool, k string) bool { _, ok := m[k]; return ok }

func testOCSPResponseBatches(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	now := t0.Add(time.Minute)
	var leaves []store.Certificate
	for i := range 4 {
		c := leaf("a", fmt.Sprintf("spiffe://example.org/b%d", i), t0, time.Hour)
		mustRecord(t, s, c)
		leaves = append(leaves, c)
	}
	resp := func(c store.Certificate, revoked bool, this time.Time, der string) store.OCSPResponse {
		return store.OCSPResponse{Serial: c.Serial, IssuerID: "a", Revoked: revoked, ThisUpdate: this, NextUpdate: this.Add(time.Hour), DER: []byte(der)}
	}
	if errs, err := s.PutOCSPResponses(ctx, nil); err != nil || len(errs) != 0 {
		t.Fatalf("PutOCSPResponses(nil) = %v, %v", errs, err)
	}
	if errs, err := s.PutOCSPResponses(ctx, []store.OCSPResponse{resp(leaves[3], false, now, "older-first")}); err != nil || errs[0] != nil {
		t.Fatalf("PutOCSPResponses(one) = %v, %v", errs, err)
	}
	mustRevoke(t, s, leaves[2], now, "keyCompromise")
	batch := []store.OCSPResponse{
		resp(leaves[0], false, now, "good0"),
		resp(leaves[1], true, now, "revoked-but-good"), // contradicts the committed status
		resp(leaves[2], true, now, "revoked2"),
		{Serial: "ffff", IssuerID: "a", ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte("x")},
		resp(leaves[3], false, now.Add(-time.Second), "older"), // older than the stored one
	}
	errs, err := s.PutOCSPResponses(ctx, batch)
	if err != nil || len(errs) != len(batch) {
		t.Fatalf("PutOCSPResponses = %v, %v; want one answer per response", errs, err)
	}
	for i, want := range []error{nil, store.ErrConflict, nil, store.ErrNotFound, store.ErrConflict} {
		if want == nil && errs[i] != nil || want != nil && !errors.Is(errs[i], want) {
			t.Errorf("answer %d (%s) = %v; want %v", i, batch[i].DER, errs[i], want)
		}
	}
	for _, c := range []struct {
		serial string
		der    string
	}{{leaves[0].Serial, "good0"}, {leaves[2].Serial, "revoked2"}, {leaves[3].Serial, "older-first"}} {
		if got, err := s.GetOCSPResponse(ctx, c.serial); err != nil || string(got.DER) != c.der {
			t.Errorf("stored response for %s = %q, %v; want %q", c.serial, got.DER, err, c.der)
		}
	}
	if _, err := s.GetOCSPResponse(ctx, leaves[1].Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused response was stored: %v", err)
	}

	// A batch with a response the database refuses (no nextUpdate) stores
	// none of them.
	bad := resp(leaves[1], false, now, "valid-but-in-a-bad-batch")
	broken := resp(leaves[1], false, now, "no-next-update")
	broken.NextUpdate = time.Time{}
	if errs, err := s.PutOCSPResponses(ctx, []store.OCSPResponse{bad, broken}); err == nil {
		t.Errorf("PutOCSPResponses with a response lacking nextUpdate = %v, nil; want an error", errs)
	}
	if _, err := s.GetOCSPResponse(ctx, leaves[1].Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a batch that failed stored its valid response: %v", err)
	}

	// A transaction that cannot run (its context is gone) stores nothing
	// and says so as a whole.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if errs, err := s.PutOCSPResponses(gone, []store.OCSPResponse{resp(leaves[1], false, now, "late")}); err == nil {
		t.Errorf("PutOCSPResponses on a cancelled context = %v, nil; want an error", errs)
	}
	if _, err := s.GetOCSPResponse(ctx, leaves[1].Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed batch stored a response: %v", err)
	}
}

func testOCSPResponders(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	_, err := s.LatestOCSPResponder(ctx, "a")
	wantErr(t, "LatestOCSPResponder without one", err, store.ErrNotFound)
	r1 := store.OCSPResponder{Serial: randSerial(), IssuerID: "a", KeyURI: "pkcs11:object=r1", CertDER: []byte{0x30, 1},
		NotBefore: t0, NotAfter: t0.Add(48 * time.Hour), CreatedAt: t0}
	r2 := r1
	r2.Serial, r2.KeyURI, r2.NotAfter, r2.CreatedAt = randSerial(), "pkcs11:object=r2", t0.Add(72*time.Hour), t0.Add(time.Hour)
	for _, r := range []store.OCSPResponder{r2, r1} {
		if err := s.InsertOCSPResponder(ctx, r); err != nil {
			t.Fatalf("InsertOCSPResponder: %v", err)
		}
	}
	got, err := s.LatestOCSPResponder(ctx, "a")
	want := r2
	want.NotBefore, want.NotAfter, want.CreatedAt = us(r2.NotBefore), us(r2.NotAfter), us(r2.CreatedAt)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LatestOCSPResponder = %+v, %v; want %+v", got, err, want)
	}
	wantErr(t, "a taken responder serial", s.InsertOCSPResponder(ctx, r1), store.ErrConflict)
	bad := r1
	bad.Serial, bad.IssuerID = randSerial(), "nobody"
	wantErr(t, "a responder of an unknown issuer", s.InsertOCSPResponder(ctx, bad), store.ErrNotFound)

	// A retired issuer gets no new responder: its keys are being deleted.
	if err := s.SetIssuerState(ctx, "a", store.IssuerActive, store.IssuerRetired, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("retire a: %v", err)
	}
	late := r1
	late.Serial = randSerial()
	wantErr(t, "a responder of a retired issuer", s.InsertOCSPResponder(ctx, late), store.ErrConflict)
}

func testLeadership(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	release, ok, err := s.TryLeadership(ctx, "crl")
	if err != nil || !ok {
		t.Fatalf("first TryLeadership = %v, %v; want granted", ok, err)
	}
	if _, ok, err := s.TryLeadership(ctx, "crl"); ok || err != nil {
		t.Fatalf("second TryLeadership while held = %v, %v; want refused", ok, err)
	}
	other, ok, err := s.TryLeadership(ctx, "other-job")
	if err != nil || !ok {
		t.Fatalf("a different leadership name = %v, %v; want granted", ok, err)
	}
	other()
	release()
	release() // idempotent
	again, ok, err := s.TryLeadership(ctx, "crl")
	if err != nil || !ok {
		t.Fatalf("TryLeadership after release = %v, %v; want granted", ok, err)
	}
	again()
}
