package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ store.JWTKeyStore = (*Store)(nil)

const jwtKeyColumns = `kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at`

func scanJWTKey(row scanner) (store.JWTKey, error) {
	var k store.JWTKey
	var jwk string
	var created, activated, retiring, retired sql.NullInt64
	if err := row.Scan(&k.KeyID, &k.KeyURI, &k.Alg, &k.State, &jwk, &created, &activated, &retiring, &retired); err != nil {
		return store.JWTKey{}, err
	}
	k.PublicJWK = []byte(jwk)
	k.CreatedAt, k.ActivatedAt = fromUS(created), fromUS(activated)
	k.RetiringAt, k.RetiredAt = fromUS(retiring), fromUS(retired)
	return k, nil
}

// InsertJWTKey records a prepared (or first active) key with its audit
// entry; the partial unique indexes turn a second prepared or active key
// into store.ErrConflict.
func (s *Store) InsertJWTKey(ctx context.Context, k store.JWTKey, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO jwt_keys (kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.KeyID, k.KeyURI, k.Alg, k.State, string(k.PublicJWK), us(k.CreatedAt),
			us(k.ActivatedAt), us(k.RetiringAt), us(k.RetiredAt))
		if err != nil {
			return fmt.Errorf("sqlite: insert JWT key %q: %w", k.KeyID, mapErr(err))
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// ListJWTKeys returns every key, oldest first (index jwt_keys_created_idx).
func (s *Store) ListJWTKeys(ctx context.Context) ([]store.JWTKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+jwtKeyColumns+` FROM jwt_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list JWT keys: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanJWTKey)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list JWT keys: %w", mapErr(err))
	}
	return list, nil
}

// jwtKeyState reads one key's state inside tx.
func jwtKeyState(ctx context.Context, tx *sql.Tx, kid string) (store.JWTKeyState, error) {
	var state store.JWTKeyState
	err := tx.QueryRowContext(ctx, `SELECT state FROM jwt_keys WHERE kid = ?`, kid).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: JWT key %q: %w", kid, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: read JWT key %q: %w", kid, mapErr(err))
	}
	return state, nil
}

// ActivateJWTKey activates a prepared key and demotes the active one in one
// write transaction; see store.JWTKeyStore.
func (s *Store) ActivateJWTKey(ctx context.Context, kid string, at time.Time, previous store.JWTKeyState, e store.AuditEntry) (store.AuditEntry, error) {
	if previous != store.JWTKeyRetiring && previous != store.JWTKeyRetired {
		return store.AuditEntry{}, fmt.Errorf("sqlite: activate JWT key %q: previous key cannot become %q: %w", kid, previous, store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		state, err := jwtKeyState(ctx, tx, kid)
		if err != nil {
			return err
		}
		if state != store.JWTKeyPrepared {
			return fmt.Errorf("sqlite: JWT key %q is %s, not prepared: %w", kid, state, store.ErrConflict)
		}
		var retiredAt any
		if previous == store.JWTKeyRetired {
			retiredAt = us(at)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jwt_keys SET state = ?, retiring_at = ?, retired_at = ? WHERE state = 'active'`,
			previous, us(at), retiredAt); err != nil {
			return fmt.Errorf("sqlite: demote the active JWT key: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jwt_keys SET state = 'active', activated_at = ? WHERE kid = ? AND state = 'prepared'`,
			us(at), kid); err != nil {
			return fmt.Errorf("sqlite: activate JWT key %q: %w", kid, mapErr(err))
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// RetireJWTKey moves a retiring key to retired as a conditional update.
func (s *Store) RetireJWTKey(ctx context.Context, kid string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE jwt_keys SET state = 'retired', retired_at = ? WHERE kid = ? AND state = 'retiring'`, us(at), kid)
		if err != nil {
			return fmt.Errorf("sqlite: retire JWT key %q: %w", kid, mapErr(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			state, err := jwtKeyState(ctx, tx, kid)
			if err != nil {
				return err
			}
			return fmt.Errorf("sqlite: JWT key %q is %s, not retiring: %w", kid, state, store.ErrConflict)
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}
