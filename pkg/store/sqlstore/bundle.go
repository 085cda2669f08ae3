package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const bundleColumns = `sequence, created_at, content, reason, actor, coalesce(rolled_back_from, 0), source_digest`

func scanBundleVersion(row Row) (store.BundleVersion, error) {
	var v store.BundleVersion
	var created NullTime
	var content string
	if err := row.Scan(&v.Sequence, &created, &content, &v.Reason, &v.Actor, &v.RolledBackFrom, &v.SourceDigest); err != nil {
		return store.BundleVersion{}, err
	}
	v.CreatedAt = created.Time
	v.Content = []byte(content)
	return v, nil
}

// AppendBundleVersion stores v as sequence prev+1 with its audit entry; see
// store.Store. On Postgres two replicas appending after the same prev both
// try to insert the same primary key: the second waits for the first to
// commit and then fails with a unique violation, mapped to
// store.ErrConflict. On SQLite the write transaction (BEGIN IMMEDIATE)
// serialises appends, so the second reads the new latest sequence.
func (o *Ops) AppendBundleVersion(ctx context.Context, prev int64, v store.BundleVersion, e store.AuditEntry) (store.BundleVersion, store.AuditEntry, error) {
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var latest int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(sequence), 0) FROM bundle_versions`).Scan(&latest); err != nil {
			return o.errorf("read latest bundle sequence: %w", o.d.MapErr(err))
		}
		if latest != prev {
			return o.errorf("bundle sequence is %d, not %d: %w", latest, prev, store.ErrConflict)
		}
		if v.RolledBackFrom < 0 || v.RolledBackFrom > prev {
			return o.errorf("bundle version %d rolls back from unknown version %d: %w", prev+1, v.RolledBackFrom, store.ErrNotFound)
		}
		v.Sequence = prev + 1
		var from any
		if v.RolledBackFrom != 0 {
			from = v.RolledBackFrom
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO bundle_versions (sequence, created_at, content, reason, actor, rolled_back_from, source_digest)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			v.Sequence, o.time(v.CreatedAt), string(v.Content), v.Reason, v.Actor, from, v.SourceDigest)
		if o.d.IsForeignKeyViolation(err) {
			return o.errorf("bundle version %d rolls back from unknown version %d: %w", v.Sequence, v.RolledBackFrom, store.ErrNotFound)
		}
		if err != nil {
			return o.errorf("insert bundle version %d: %w", v.Sequence, o.d.MapErr(err))
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.BundleVersion{}, store.AuditEntry{}, err
	}
	v.CreatedAt = v.CreatedAt.UTC().Truncate(time.Microsecond)
	return v, out, nil
}

// LatestBundleVersion returns the newest version (primary key, backwards).
func (o *Ops) LatestBundleVersion(ctx context.Context) (store.BundleVersion, error) {
	v, err := scanBundleVersion(o.r.QueryRow(ctx, `SELECT `+bundleColumns+` FROM bundle_versions ORDER BY sequence DESC LIMIT 1`))
	if o.d.IsNoRows(err) {
		return store.BundleVersion{}, o.errorf("no bundle published: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.BundleVersion{}, o.errorf("latest bundle version: %w", o.d.MapErr(err))
	}
	return v, nil
}

// LatestBundleSequence returns the highest sequence, 0 if none (an
// index-only max over the primary key).
func (o *Ops) LatestBundleSequence(ctx context.Context) (int64, error) {
	var n int64
	if err := o.r.QueryRow(ctx, `SELECT coalesce(max(sequence), 0) FROM bundle_versions`).Scan(&n); err != nil {
		return 0, o.errorf("latest bundle sequence: %w", o.d.MapErr(err))
	}
	return n, nil
}

// GetBundleVersion returns one version or store.ErrNotFound.
func (o *Ops) GetBundleVersion(ctx context.Context, sequence int64) (store.BundleVersion, error) {
	v, err := scanBundleVersion(o.r.QueryRow(ctx, `SELECT `+bundleColumns+` FROM bundle_versions WHERE sequence = $1`, sequence))
	if o.d.IsNoRows(err) {
		return store.BundleVersion{}, o.errorf("bundle version %d: %w", sequence, store.ErrNotFound)
	}
	if err != nil {
		return store.BundleVersion{}, o.errorf("get bundle version %d: %w", sequence, o.d.MapErr(err))
	}
	return v, nil
}

// ListBundleVersions returns versions with Sequence < before, newest first.
func (o *Ops) ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error) {
	if limit <= 0 {
		limit = 100
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	list, err := queryAll(ctx, o, o.r, scanBundleVersion, `SELECT `+bundleColumns+` FROM bundle_versions
		WHERE sequence < $1 ORDER BY sequence DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, o.errorf("list bundle versions: %w", err)
	}
	return list, nil
}

// MaxLeafNotAfter returns the latest NotAfter of the issuer's certificates,
// zero if none (index certificates_issuer_idx).
func (o *Ops) MaxLeafNotAfter(ctx context.Context, issuerID string) (time.Time, error) {
	var t NullTime
	if err := o.r.QueryRow(ctx, `SELECT max(not_after) FROM certificates WHERE issuer_id = $1`, issuerID).Scan(&t); err != nil {
		return time.Time{}, o.errorf("latest leaf expiry of %q: %w", issuerID, o.d.MapErr(err))
	}
	return t.Time, nil
}
