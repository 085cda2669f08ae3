package sqlite_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

// checkpointStore opens a migrated file with the checkpointer's ticks out of
// the way (an hour apart: the test runs its passes itself) and its WAL limit
// at limit frames.
func checkpointStore(t *testing.T, limit int) (*sqlite.Store, string) {
	t.Helper()
	path := strings.TrimPrefix(testkit.SQLiteURL(t), "sqlite:")
	s, err := sqlite.OpenCheckpointTest(context.Background(), path, time.Hour, limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	root := store.Issuer{ID: "root", Kind: store.KindRoot, KeyURI: "software:root", CertDER: []byte("root"),
		SubjectKeyID: []byte{1}, NotBefore: gt0, NotAfter: gt0.Add(24 * time.Hour), State: store.IssuerActive,
		CreatedAt: gt0, UpdatedAt: gt0}
	if err := s.InsertIssuer(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	return s, path
}

func recordSome(t *testing.T, s *sqlite.Store, n int) []string {
	t.Helper()
	var serials []string
	for range n {
		w := groupLeaf("root")
		if _, err := s.RecordIssuance(context.Background(), w.Cert, w.Entry); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, w.Cert.Serial)
	}
	return serials
}

func walSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// The write connection does not checkpoint after its commits (no
// auto-checkpoint: the WAL only grows between the checkpointer's passes),
// and once the WAL holds the limit the checkpointer copies it all and
// truncates the file.
func TestTheCheckpointerBoundsTheWAL(t *testing.T) {
	ctx := context.Background()
	const limit = 1200 // past SQLite's auto-checkpoint (1,000 pages)
	s, path := checkpointStore(t, limit)
	if _, err := s.CheckpointForTest(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Each commit writes several pages: well past the limit.
	serials := recordSome(t, s, 300)
	frames, err := s.CheckpointForTest(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if frames < limit {
		t.Fatalf("the WAL held %d frames after 300 commits, want >= %d: something checkpointed and restarted it", frames, limit)
	}
	if n := walSize(t, path); n != 0 {
		t.Errorf("WAL file is %d bytes after a pass over the limit, want 0 (TRUNCATE)", n)
	}
	for _, serial := range serials {
		if _, err := s.GetCertificate(ctx, serial); err != nil {
			t.Fatalf("after the checkpoint: %v", err)
		}
	}
	// Under the limit a pass checkpoints (PASSIVE) without truncating, and
	// a pass with nothing committed since the last one does nothing.
	recordSome(t, s, 3)
	if frames, err := s.CheckpointForTest(ctx, false); err != nil || frames <= 0 || frames >= limit {
		t.Fatalf("pass after 3 commits: %d frames, %v; want 0 < frames < %d", frames, err, limit)
	}
	if walSize(t, path) == 0 {
		t.Error("WAL file truncated under the limit")
	}
	if frames, err := s.CheckpointForTest(ctx, false); err != nil || frames != -1 {
		t.Errorf("pass with nothing new: %d frames, %v; want -1 (skipped)", frames, err)
	}
}

// A checkpoint that fails is kept as the checkpointer's error and costs
// nothing else: writes go on and are committed, the frames stay in the WAL.
func TestACheckpointFailureIsNotFatal(t *testing.T) {
	ctx := context.Background()
	s, path := checkpointStore(t, 1<<20)
	s.BreakCheckpointerForTest()
	if _, err := s.CheckpointForTest(ctx, true); err == nil {
		t.Fatal("checkpoint on a closed connection succeeded")
	}
	if s.CheckpointErr() == nil {
		t.Error("the failed checkpoint was not kept")
	}
	serials := recordSome(t, s, 5)
	if walSize(t, path) == 0 {
		t.Error("no WAL after 5 commits")
	}
	if err := s.Close(); err == nil {
		t.Error("Close hid the failure of its last checkpoint")
	}
	r, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, serial := range serials {
		if _, err := r.GetCertificate(ctx, serial); err != nil {
			t.Fatalf("certificate committed while checkpoints failed: %v", err)
		}
	}
}

// Close folds the WAL into the database file: what was committed is in the
// file itself, with no WAL left to replay.
func TestCloseCheckpoints(t *testing.T) {
	ctx := context.Background()
	s, path := checkpointStore(t, 1<<20)
	serials := recordSome(t, s, 20)
	if walSize(t, path) == 0 {
		t.Fatal("no WAL after 20 commits")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, path); n != 0 {
		t.Fatalf("WAL is %d bytes after Close, want none", n)
	}
	r, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, serial := range serials {
		if _, err := r.GetCertificate(ctx, serial); err != nil {
			t.Fatal(err)
		}
	}
}

// The settings the checkpointing relies on: both connections sync fully
// (a checkpoint syncs the WAL before copying and the file after), the write
// connection leaves checkpoints to the checkpointer and keeps its savepoint
// journal in memory, and the checkpointer waits briefly (a TRUNCATE
// checkpoint holds new writers back while it waits).
func TestCheckpointConnectionSettings(t *testing.T) {
	s, _ := checkpointStore(t, 1<<20)
	got, err := s.ConnectionSettingsForTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"w.synchronous": 2, "w.wal_autocheckpoint": 0, "w.temp_store": 2, "w.busy_timeout": 10000, "w.wal": 1,
		"ckpt.synchronous": 2, "ckpt.busy_timeout": 250, "ckpt.wal": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
