package dashboard

import (
	"context"
	"net/http"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// HoldLister lists the identity holds in force; *hold.Holds fits.
type HoldLister interface {
	Active(ctx context.Context, limit int) ([]store.Hold, error)
}

// holds is /ui/holds: the identities on hold now (no new certificates,
// renewals or JWT-SVIDs until the hold ends), soonest-ending first. It is
// read-only: holds are placed with `ca identity revoke --hold` or `ca
// identity hold`, and released by an admin with `ca identity release`.
func (db *Dashboard) holds(w http.ResponseWriter, r *http.Request) {
	if db.d.Holds == nil {
		db.fail(w, r, nil, http.StatusNotFound, "Identity holds are not served by this CA.")
		return
	}
	list, err := db.d.Holds.Active(r.Context(), 1000)
	if err != nil {
		db.internal(w, r, "reading identity holds", err)
		return
	}
	db.render(w, r, http.StatusOK, "holds", "holds", "Identity holds", map[string]any{"Holds": list, "Now": db.clock.Now()})
}
