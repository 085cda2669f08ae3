package store

import (
	"bytes"
	"testing"
	"time"
)

func TestAuditHashCoversEveryField(t *testing.T) {
	base := AuditEntry{
		Seq: 7, Time: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), Actor: "a", Action: "issue",
		Target: "t", Decision: "allow", Reason: "r", PolicyVersion: "v", RequestID: "q", Details: []byte(`{}`),
	}
	prev := []byte("prev")
	h := AuditHash(prev, base)
	changes := map[string]func(e *AuditEntry){
		"seq":            func(e *AuditEntry) { e.Seq = 8 },
		"time":           func(e *AuditEntry) { e.Time = e.Time.Add(time.Microsecond) },
		"actor":          func(e *AuditEntry) { e.Actor = "b" },
		"action":         func(e *AuditEntry) { e.Action = "deny" },
		"target":         func(e *AuditEntry) { e.Target = "u" },
		"decision":       func(e *AuditEntry) { e.Decision = "deny" },
		"reason":         func(e *AuditEntry) { e.Reason = "s" },
		"policy version": func(e *AuditEntry) { e.PolicyVersion = "w" },
		"request id":     func(e *AuditEntry) { e.RequestID = "p" },
		"details":        func(e *AuditEntry) { e.Details = []byte(`{"a":1}`) },
		"moved bytes":    func(e *AuditEntry) { e.Actor, e.Action = "ai", "ssue" },
	}
	for name, change := range changes {
		e := base
		change(&e)
		if bytes.Equal(AuditHash(prev, e), h) {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	if bytes.Equal(AuditHash([]byte("other"), base), h) {
		t.Error("the previous hash is not covered")
	}
}
