package server

import (
	"fmt"
	"net/http"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// AbandonRequest is the body of POST /v1/issuers/abandon.
type AbandonRequest struct {
	// ID, when set, must name a prepared issuer: a guard against abandoning
	// another rotation than the one the operator looked at.
	ID string `json:"id"`
}

// AbandonResponse is the answer of POST /v1/issuers/abandon.
type AbandonResponse struct {
	// Abandoned lists the prepared issuers now retired.
	Abandoned []string `json:"abandoned"`
	// KeysDeleted are the key URIs removed from the key store; KeysLeft
	// those that could not be (delete them by hand).
	KeysDeleted    []string `json:"keys_deleted"`
	KeysLeft       []string `json:"keys_left"`
	BundleSequence int64    `json:"bundle_sequence"`
}

func (rt *Routes) abandonIssuers(w http.ResponseWriter, r *http.Request) error {
	var req AbandonRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	res, err := rt.d.Trust.Rotation.Abandon(r.Context(), issuer.AbandonOptions{
		ID: req.ID, Actor: actorFrom(r.Context()), RequestID: RequestID(r.Context()),
	})
	if err != nil {
		return fmt.Errorf("abandon: %w", err)
	}
	out := AbandonResponse{Abandoned: res.Abandoned, KeysDeleted: res.KeysDeleted, KeysLeft: res.KeysLeft, BundleSequence: res.Bundle.Sequence}
	for _, l := range []*[]string{&out.Abandoned, &out.KeysDeleted, &out.KeysLeft} {
		if *l == nil {
			*l = []string{}
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
