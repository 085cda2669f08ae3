package bundle

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// SPIFFE bundle key uses (SPIFFE Trust Domain and Bundle, section 4.2).
const (
	useX509SVID = "x509-svid"
	useJWTSVID  = "jwt-svid"
)

// spiffeDoc is the SPIFFE bundle: a JWKS plus the two SPIFFE parameters.
type spiffeDoc struct {
	Keys        []jose.JSONWebKey `json:"keys"`
	Sequence    uint64            `json:"spiffe_sequence"`
	RefreshHint int64             `json:"spiffe_refresh_hint"`
}

// RenderJSON renders content as a SPIFFE trust bundle (JWKS): one x509-svid
// key per trust anchor, carrying the certificate as its only x5c entry, and
// one jwt-svid key (with kid) per JWT authority, followed by spiffe_sequence
// and spiffe_refresh_hint (whole seconds, rounded up, at least 1). The output
// is deterministic for given arguments.
func RenderJSON(c Content, sequence int64, refreshHint time.Duration) ([]byte, error) {
	anchors, err := c.Anchors()
	if err != nil {
		return nil, err
	}
	doc := spiffeDoc{Keys: []jose.JSONWebKey{}, Sequence: uint64(sequence)}
	doc.RefreshHint = int64((refreshHint + time.Second - 1) / time.Second)
	if doc.RefreshHint < 1 {
		doc.RefreshHint = 1
	}
	for _, a := range anchors {
		doc.Keys = append(doc.Keys, jose.JSONWebKey{
			Key:          a.PublicKey,
			Certificates: []*x509.Certificate{a},
			Use:          useX509SVID,
		})
	}
	for _, k := range c.JWTAuthorities {
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		doc.Keys = append(doc.Keys, jose.JSONWebKey{Key: pub, KeyID: k.KeyID, Use: useJWTSVID})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("bundle: rendering JWKS: %w", err)
	}
	return b, nil
}

// RenderPEM renders the trust anchors as concatenated PEM CERTIFICATE blocks,
// in content order: the body of /bundle.pem.
func RenderPEM(c Content) []byte {
	var b bytes.Buffer
	for _, der := range c.X509Authorities {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}
