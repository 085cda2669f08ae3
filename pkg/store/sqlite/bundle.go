package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const bundleColumns = `sequence, created_at, content, reason, actor, coalesce(rolled_back_from, 0), source_digest`

func scanBundleVersion(row scanner) (store.BundleVersion, error) {
	var v store.BundleVersion
	var created int64
	var content string
	if err := row.Scan(&v.Sequence, &created, &content, &v.Reason, &v.Actor, &v.RolledBackFrom, &v.SourceDigest); err != nil {
		return store.BundleVersion{}, err
	}
	v.CreatedAt = time.UnixMicro(created).UTC()
	v.Content = []byte(content)
	return v, nil
}

// AppendBundleVersion stores v as sequence prev+1 with its audit entry; see
// store.Store. The write transaction (BEGIN IMMEDIATE) serialises appends.
func (s *Store) AppendBundleVersion(ctx context.Context, prev int64, v store.BundleVersion, e store.AuditEntry) (store.BundleVersion, store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var latest int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(sequence), 0) FROM bundle_versions`).Scan(&latest); err != nil {
			return fmt.Errorf("sqlite: read latest bundle sequence: %w", mapErr(err))
		}
		if latest != prev {
			return fmt.Errorf("sqlite: bundle sequence is %d, not %d: %w", latest, prev, store.ErrConflict)
		}
		if v.RolledBackFrom < 0 || v.RolledBackFrom > prev {
			return fmt.Errorf("sqlite: bundle version %d rolls back from unknown version %d: %w", prev+1, v.RolledBackFrom, store.ErrNotFound)
		}
		v.Sequence = prev + 1
		var from any
		if v.RolledBackFrom != 0 {
			from = v.RolledBackFrom
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO bundle_versions (sequence, created_at, content, reason, actor, rolled_back_from, source_digest)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			v.Sequence, us(v.CreatedAt), string(v.Content), v.Reason, v.Actor, from, v.SourceDigest)
		if isForeignKeyViolation(err) {
			return fmt.Errorf("sqlite: bundle version %d rolls back from unknown version %d: %w", v.Sequence, v.RolledBackFrom, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: insert bundle version %d: %w", v.Sequence, mapErr(err))
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.BundleVersion{}, store.AuditEntry{}, err
	}
	v.CreatedAt = v.CreatedAt.UTC().Truncate(time.Microsecond)
	return v, out, nil
}

// LatestBundleVersion returns the newest version (primary key, backwards).
func (s *Store) LatestBundleVersion(ctx context.Context) (store.BundleVersion, error) {
	v, err := scanBundleVersion(s.r.QueryRowContext(ctx, `SELECT `+bundleColumns+` FROM bundle_versions ORDER BY sequence DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return store.BundleVersion{}, fmt.Errorf("sqlite: no bundle published: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.BundleVersion{}, fmt.Errorf("sqlite: latest bundle version: %w", mapErr(err))
	}
	return v, nil
}

// LatestBundleSequence returns the highest sequence, 0 if none.
func (s *Store) LatestBundleSequence(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT coalesce(max(sequence), 0) FROM bundle_versions`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: latest bundle sequence: %w", mapErr(err))
	}
	return n, nil
}

// GetBundleVersion returns one version or store.ErrNotFound.
func (s *Store) GetBundleVersion(ctx context.Context, sequence int64) (store.BundleVersion, error) {
	v, err := scanBundleVersion(s.r.QueryRowContext(ctx, `SELECT `+bundleColumns+` FROM bundle_versions WHERE sequence = ?`, sequence))
	if errors.Is(err, sql.ErrNoRows) {
		return store.BundleVersion{}, fmt.Errorf("sqlite: bundle version %d: %w", sequence, store.ErrNotFound)
	}
	if err != nil {
		return store.BundleVersion{}, fmt.Errorf("sqlite: get bundle version %d: %w", sequence, mapErr(err))
	}
	return v, nil
}

// ListBundleVersions returns versions with Sequence < before, newest first.
func (s *Store) ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error) {
	if limit <= 0 {
		limit = 100
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+bundleColumns+` FROM bundle_versions
		WHERE sequence < ? ORDER BY sequence DESC LIMIT ?`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list bundle versions: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanBundleVersion)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list bundle versions: %w", mapErr(err))
	}
	return list, nil
}

// MaxLeafNotAfter returns the latest NotAfter of the issuer's certificates,
// zero if none (index certificates_issuer_idx).
func (s *Store) MaxLeafNotAfter(ctx context.Context, issuerID string) (time.Time, error) {
	var t sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT max(not_after) FROM certificates WHERE issuer_id = ?`, issuerID).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("sqlite: latest leaf expiry of %q: %w", issuerID, mapErr(err))
	}
	return fromUS(t), nil
}
