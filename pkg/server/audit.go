package server

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditEntryView is one audit log entry as GET /v1/audit shows it; the hashes
// are hex, so that `ca audit verify` style checks can be done by a client.
type AuditEntryView struct {
	Seq           int64           `json:"seq"`
	Time          time.Time       `json:"time"`
	Actor         string          `json:"actor"`
	Action        string          `json:"action"`
	Target        string          `json:"target,omitempty"`
	Decision      string          `json:"decision"`
	Reason        string          `json:"reason,omitempty"`
	PolicyVersion string          `json:"policy_version,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Details       json.RawMessage `json:"details,omitempty"`
	PrevHash      string          `json:"prev_hash,omitempty"`
	Hash          string          `json:"hash"`
}

// AuditPage is the answer of GET /v1/audit. NextAfterSeq is present when
// there may be more matching entries: pass it as after_seq to continue.
type AuditPage struct {
	Items        []AuditEntryView `json:"items"`
	NextAfterSeq *int64           `json:"next_after_seq,omitempty"`
}

// AuditQuery is the parsed query of GET /v1/audit.
type AuditQuery struct {
	AfterSeq int64
	Limit    int
	// Action, Actor, Target and Decision match exactly when not empty.
	Action, Actor, Target, Decision string
}

// Bounds of GET /v1/audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
	// auditScanLimit bounds how many entries one filtered request reads; a
	// page that reaches it ends early with next_after_seq.
	auditScanLimit = 20000
)

func (q AuditQuery) filtered() bool {
	return q.Action != "" || q.Actor != "" || q.Target != "" || q.Decision != ""
}

func (q AuditQuery) match(action, actor, target, decision string) bool {
	return (q.Action == "" || q.Action == action) && (q.Actor == "" || q.Actor == actor) &&
		(q.Target == "" || q.Target == target) && (q.Decision == "" || q.Decision == decision)
}

// ParseAuditQuery parses the query of GET /v1/audit: after_seq (an integer
// >= 0, default 0), limit (1 to MaxAuditLimit, default DefaultAuditLimit), and
// exact filters action, actor, target and decision (allow or deny). Each may
// appear once; anything else is a 400 bad_request *Error.
func ParseAuditQuery(v url.Values) (AuditQuery, error) {
	q := AuditQuery{Limit: DefaultAuditLimit}
	for key, vals := range v {
		s, err := queryValue(key, vals)
		if err != nil {
			return q, err
		}
		switch key {
		case "after_seq":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return q, badQuery(key, "must be an integer >= 0")
			}
			q.AfterSeq = n
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxAuditLimit {
				return q, badQuery(key, fmt.Sprintf("must be an integer from 1 to %d", MaxAuditLimit))
			}
			q.Limit = n
		case "action":
			q.Action = s
		case "actor":
			q.Actor = s
		case "target":
			q.Target = s
		case "decision":
			if s != "allow" && s != "deny" {
				return q, badQuery(key, "must be allow or deny")
			}
			q.Decision = s
		default:
			return q, badQuery(key, "is not a known parameter")
		}
	}
	return q, nil
}

// listAudit reads the log in Seq order from after_seq. With filters it reads
// batches until it has limit matches, reaches the end, or has read
// auditScanLimit entries; the filters are applied here because the store
// pages by Seq only.
func (rt *Routes) listAudit(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Operators.Store == nil {
		return errOperatorsNotConfigured
	}
	q, err := ParseAuditQuery(r.URL.Query())
	if err != nil {
		return err
	}
	batch := q.Limit
	if q.filtered() {
		batch = MaxAuditLimit
	}
	out := AuditPage{Items: []AuditEntryView{}}
	after, scanned, more := q.AfterSeq, 0, false
	for {
		entries, err := rt.d.Operators.Store.AuditEntries(r.Context(), after, batch)
		if err != nil {
			return fmt.Errorf("reading the audit log: %w", err)
		}
		full := false
		for i, e := range entries {
			after = e.Seq
			scanned++
			if !q.match(e.Action, e.Actor, e.Target, e.Decision) {
				continue
			}
			out.Items = append(out.Items, auditEntryView(e))
			if len(out.Items) == q.Limit {
				full, more = true, i < len(entries)-1 || len(entries) == batch
				break
			}
		}
		if full || len(entries) < batch {
			break // the page is full, or this is the end of the log
		}
		if scanned >= auditScanLimit {
			more = true
			break
		}
	}
	if more {
		out.NextAfterSeq = &after
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

func auditEntryView(e store.AuditEntry) AuditEntryView {
	v := AuditEntryView{
		Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target, Decision: e.Decision,
		Reason: e.Reason, PolicyVersion: e.PolicyVersion, RequestID: e.RequestID, Hash: hex.EncodeToString(e.Hash),
	}
	if len(e.PrevHash) > 0 {
		v.PrevHash = hex.EncodeToString(e.PrevHash)
	}
	if len(e.Details) > 0 && json.Valid(e.Details) {
		v.Details = e.Details
	}
	return v
}
