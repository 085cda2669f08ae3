package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// DenialStore groups recent denied decisions of the audit log; the Postgres
// and SQLite stores fit (an index of denials by time makes it cheap). It is
// part of OperatorStore.
type DenialStore interface {
	Denials(ctx context.Context, q store.DenialQuery) ([]store.DenialGroup, error)
}

// Bounds and defaults of GET /v1/denials.
const (
	DefaultDenialWindow = 24 * time.Hour
	MaxDenialWindow     = 90 * 24 * time.Hour
)

// denialActions are the audit actions GET /v1/denials may select.
var denialActions = map[string]bool{"enroll": true, "renew": true, "jwt": true, "authz": true, "revoke": true}

// DefaultDenialActions are the denials shown when no action is asked for:
// refused enrollments and failed renewals.
var DefaultDenialActions = []string{"enroll", "renew"}

// DenialGroupView is one group of GET /v1/denials: how often one identity was
// refused one action for one reason in the window.
type DenialGroupView struct {
	Action   string    `json:"action"`
	Identity string    `json:"identity"`
	Reason   string    `json:"reason"`
	Count    int64     `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	// LastTarget, LastRequestID and LastDetails describe the most recent
	// denial of the group.
	LastTarget    string          `json:"last_target,omitempty"`
	LastRequestID string          `json:"last_request_id,omitempty"`
	LastDetails   json.RawMessage `json:"last_details,omitempty"`
}

// DenialReport is the answer of GET /v1/denials.
type DenialReport struct {
	Since   time.Time         `json:"since"`
	Actions []string          `json:"actions"`
	Groups  []DenialGroupView `json:"groups"`
}

// DenialQuery is the parsed query of GET /v1/denials.
type DenialQuery struct {
	Window  time.Duration
	Actions []string
	Limit   int
}

// ParseDenialQuery parses window (a positive Go duration up to 90 days,
// default 24h), action (comma-separated among enroll, renew, jwt, authz,
// revoke; default enroll,renew) and limit (1 to store.MaxDenialGroups). Each
// may appear once; anything else is a 400 bad_request *Error.
func ParseDenialQuery(v url.Values) (DenialQuery, error) {
	q := DenialQuery{Window: DefaultDenialWindow, Actions: DefaultDenialActions, Limit: store.DefaultDenialGroups}
	for key, vals := range v {
		s, err := queryValue(key, vals)
		if err != nil {
			return q, err
		}
		switch key {
		case "window":
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > MaxDenialWindow {
				return q, badQuery(key, "must be a positive duration such as 24h, at most 2160h")
			}
			q.Window = d
		case "action":
			q.Actions = nil
			for _, a := range strings.Split(s, ",") {
				if !denialActions[a] {
					return q, badQuery(key, "must list enroll, renew, jwt, authz or revoke, comma-separated")
				}
				q.Actions = append(q.Actions, a)
			}
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > store.MaxDenialGroups {
				return q, badQuery(key, fmt.Sprintf("must be an integer from 1 to %d", store.MaxDenialGroups))
			}
			q.Limit = n
		default:
			return q, badQuery(key, "is not a known parameter")
		}
	}
	return q, nil
}

// listDenials is GET /v1/denials: recent refusals grouped by identity and
// reason, so that renewal failures are alerted on, not only expiry.
func (rt *Routes) listDenials(w http.ResponseWriter, r *http.Request) error {
	ds := rt.d.Operators.Store
	if ds == nil {
		return errOperatorsNotConfigured
	}
	q, err := ParseDenialQuery(r.URL.Query())
	if err != nil {
		return err
	}
	since := rt.d.Clock.Now().Add(-q.Window).UTC().Truncate(time.Second)
	groups, err := ds.Denials(r.Context(), store.DenialQuery{Since: since, Actions: q.Actions, Limit: q.Limit})
	if err != nil {
		return fmt.Errorf("reading denials: %w", err)
	}
	out := DenialReport{Since: since, Actions: q.Actions, Groups: make([]DenialGroupView, 0, len(groups))}
	for _, g := range groups {
		out.Groups = append(out.Groups, denialGroupView(g))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

func denialGroupView(g store.DenialGroup) DenialGroupView {
	v := DenialGroupView{
		Action: g.Action, Identity: g.Actor, Reason: g.Reason, Count: g.Count, First: g.First, Last: g.Last,
		LastTarget: g.LastTarget, LastRequestID: g.LastRequestID,
	}
	if len(g.LastDetails) > 0 && json.Valid(g.LastDetails) {
		v.LastDetails = g.LastDetails
	}
	return v
}
