package sqlite_test

import (
	"context"
	"maps"
	"testing"
)

// The write connection keeps a returned certificate durable (WAL,
// synchronous=FULL, SQLite's own checkpoints every 4,000 pages) and its
// savepoints' statement journal in memory (temp_store=MEMORY: in a temporary
// file it cost a pwrite per page changed, issue 20).
func TestTheWriteConnectionIsDurableWithItsStatementJournalInMemory(t *testing.T) {
	s := groupStore(t)
	got, err := s.WriteConnectionSettingsForTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"synchronous": 2, "wal": 1, "wal_autocheckpoint": 4000, "temp_store": 2}
	if !maps.Equal(got, want) {
		t.Errorf("write connection settings %v; want %v", got, want)
	}
}
