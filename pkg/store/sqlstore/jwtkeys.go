package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ store.JWTKeyStore = (*Ops)(nil)

const jwtKeyColumns = `kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at`

func scanJWTKey(row Row) (store.JWTKey, error) {
	var k store.JWTKey
	var jwk string
	var created, activated, retiring, retired NullTime
	if err := row.Scan(&k.KeyID, &k.KeyURI, &k.Alg, &k.State, &jwk, &created, &activated, &retiring, &retired); err != nil {
		return store.JWTKey{}, err
	}
	k.PublicJWK = []byte(jwk)
	k.CreatedAt, k.ActivatedAt = created.Time, activated.Time
	k.RetiringAt, k.RetiredAt = retiring.Time, retired.Time
	return k, nil
}

// InsertJWTKey records a prepared (or first active) key with its audit
// entry; the partial unique indexes jwt_keys_one_active_idx and
// jwt_keys_one_prepared_idx turn a second prepared or active key into
// store.ErrConflict.
func (o *Ops) InsertJWTKey(ctx context.Context, k store.JWTKey, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO jwt_keys (kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			k.KeyID, k.KeyURI, k.Alg, k.State, string(k.PublicJWK), o.time(k.CreatedAt),
			o.time(k.ActivatedAt), o.time(k.RetiringAt), o.time(k.RetiredAt))
		if err != nil {
			return o.errorf("insert JWT key %q: %w", k.KeyID, o.d.MapErr(err))
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// ListJWTKeys returns every key, oldest first (index jwt_keys_created_idx).
func (o *Ops) ListJWTKeys(ctx context.Context) ([]store.JWTKey, error) {
	list, err := queryAll(ctx, o, o.r, scanJWTKey, `SELECT `+jwtKeyColumns+` FROM jwt_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, o.errorf("list JWT keys: %w", err)
	}
	return list, nil
}

// jwtKeyState reads one key's state inside tx (locking its row when lock);
// store.ErrNotFound if there is no such key. what names the operation.
func (o *Ops) jwtKeyState(ctx context.Context, tx Tx, kid, what string, lock bool) (store.JWTKeyState, error) {
	q := `SELECT state FROM jwt_keys WHERE kid = $1`
	if lock {
		q += o.d.ForUpdate
	}
	var state store.JWTKeyState
	err := tx.QueryRow(ctx, q, kid).Scan(&state)
	if o.d.IsNoRows(err) {
		return "", o.errorf("JWT key %q: %w", kid, store.ErrNotFound)
	}
	if err != nil {
		return "", o.errorf("%s JWT key %q: %w", what, kid, o.d.MapErr(err))
	}
	return state, nil
}

// ActivateJWTKey activates a prepared key and demotes the active one in one
// transaction; see store.JWTKeyStore. The previously active key is demoted
// first, so the one-active index never sees two.
func (o *Ops) ActivateJWTKey(ctx context.Context, kid string, at time.Time, previous store.JWTKeyState, e store.AuditEntry) (store.AuditEntry, error) {
	if previous != store.JWTKeyRetiring && previous != store.JWTKeyRetired {
		return store.AuditEntry{}, o.errorf("activate JWT key %q: previous key cannot become %q: %w", kid, previous, store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		state, err := o.jwtKeyState(ctx, tx, kid, "activate", true)
		if err != nil {
			return err
		}
		if state != store.JWTKeyPrepared {
			return o.errorf("JWT key %q is %s, not prepared: %w", kid, state, store.ErrConflict)
		}
		var retiredAt any
		if previous == store.JWTKeyRetired {
			retiredAt = o.time(at)
		}
		if _, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = $1, retiring_at = $2, retired_at = $3 WHERE state = 'active'`,
			previous, o.time(at), retiredAt); err != nil {
			return o.errorf("demote the active JWT key: %w", o.d.MapErr(err))
		}
		n, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = 'active', activated_at = $2 WHERE kid = $1 AND state = 'prepared'`, kid, o.time(at))
		if err != nil {
			return o.errorf("activate JWT key %q: %w", kid, o.d.MapErr(err))
		}
		if n != 1 {
			return o.errorf("JWT key %q changed concurrently: %w", kid, store.ErrConflict)
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// RetireJWTKey moves a retiring key to retired as a conditional update.
func (o *Ops) RetireJWTKey(ctx context.Context, kid string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = 'retired', retired_at = $2 WHERE kid = $1 AND state = 'retiring'`, kid, o.time(at))
		if err != nil {
			return o.errorf("retire JWT key %q: %w", kid, o.d.MapErr(err))
		}
		if n == 0 {
			state, err := o.jwtKeyState(ctx, tx, kid, "retire", false)
			if err != nil {
				return err
			}
			return o.errorf("JWT key %q is %s, not retiring: %w", kid, state, store.ErrConflict)
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}
