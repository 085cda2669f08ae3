//go:build cgo

package hsm

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/ThalesGroup/crypto11"
)

// Delete destroys the key pair a pkcs11: URI names (both halves) on the
// token. It fails with ErrBadURI if the URI is malformed, names another
// token or matches more than one key pair, and with ErrKeyNotFound if
// nothing matches. Signers handed out for the key stop working. Rotation
// calls it for keys of a failed or abandoned rotation, never for a key an
// issuer in use still names.
func (s *PKCS11Store) Delete(ctx context.Context, uri string) error {
	u, err := s.ownURI(uri)
	if err != nil {
		return err
	}
	s.genMu.Lock() // no Generate of the same label while it goes
	defer s.genMu.Unlock()
	c, err := s.connection(ctx)
	if err != nil {
		return err
	}
	var id []byte
	err = s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
		pair, err := onePair(cx, u)
		if err != nil {
			return err
		}
		attrs, err := cx.GetAttributes(pair, []crypto11.AttributeType{crypto11.CkaId})
		if err != nil {
			return err
		}
		id = attrValue(attrs, crypto11.CkaId)
		return pair.Delete()
	})
	if err != nil {
		return fmt.Errorf("hsm: delete %s: %w", uri, err)
	}
	s.mu.Lock()
	delete(s.signers, hex.EncodeToString(id))
	s.mu.Unlock()
	s.log.Info("key deleted from token", "uri", uri)
	return nil
}

// KeyLabels returns the labels (CKA_LABEL) of every key pair on the token,
// sorted; a pair without a label is listed as "id:<hex CKA_ID>". Operators'
// checks and tests use it to find keys no issuer names.
func (s *PKCS11Store) KeyLabels(ctx context.Context) ([]string, error) {
	c, err := s.connection(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	err = s.do(ctx, c, s.cfg.OpTimeout, func(cx *crypto11.Context) error {
		pairs, err := cx.FindAllKeyPairs()
		if err != nil {
			return err
		}
		for _, p := range pairs {
			attrs, err := cx.GetAttributes(p, []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel})
			if err != nil {
				return err
			}
			if l := attrValue(attrs, crypto11.CkaLabel); len(l) > 0 {
				out = append(out, string(l))
			} else {
				out = append(out, "id:"+hex.EncodeToString(attrValue(attrs, crypto11.CkaId)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: listing keys: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
