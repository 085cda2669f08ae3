package store

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// AuditHash is the chain hash of entry e appended after an entry whose hash is
// prev (nil for the first entry). It covers every field but Hash itself, each
// length-prefixed so that no two different entries encode alike. Both store
// implementations and `ca audit verify` use it.
func AuditHash(prev []byte, e AuditEntry) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	// The seq gets its own buffer: field reuses n for the length prefix.
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(e.Seq))
	field(seq[:])
	field([]byte(e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)))
	field([]byte(e.Actor))
	field([]byte(e.Action))
	field([]byte(e.Target))
	field([]byte(e.Decision))
	field([]byte(e.Reason))
	field([]byte(e.PolicyVersion))
	field([]byte(e.RequestID))
	field(e.Details)
	field(prev)
	return h.Sum(nil)
}
