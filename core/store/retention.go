package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
)

// Cleanup deletes the records of one tenant that occurred before olderThan and returns how many
// it deleted. It deletes in batches of Options.CleanupBatchSize rows, each its own short
// transaction, so it never holds many row locks or one long transaction; when ctx ends it stops
// between batches and returns the count so far with ctx's error. A tenant under legal hold is
// ErrLegalHold (checked before and within every batch): a hold of LegalHold or of the tenant
// registry. After a complete cleanup, RetainedFrom(tenantID) is at least olderThan.
//
// A batch that deletes the first records of the tenant's hash chain records, in the same
// transaction, a signed truncation checkpoint (Options.SigningKey) naming the first remaining
// record, so that the chain still verifies. Records deleted out of chain order (a late record
// older than records chained before it) leave a gap that verification reports.
func (s *Store) Cleanup(ctx context.Context, tenantID string, olderThan time.Time) (int64, error) {
	if err := ValidateTenantID("tenant_id", tenantID); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidScope, err)
	}
	if olderThan.IsZero() {
		return 0, paramErr("older_than", "is required")
	}
	var hold bool
	if err := s.pool.QueryRow(ctx, `SELECT `+s.heldSQL("$1::text"), tenantID).Scan(&hold); err != nil {
		return 0, fmt.Errorf("store: cleanup: %w", err)
	}
	if hold {
		return 0, ErrLegalHold
	}
	stmt := `WITH victims AS (
		SELECT id, occurred_at FROM ` + s.logs + `
		WHERE tenant_id = $1 AND occurred_at < $2
		  AND NOT ` + s.heldSQL("$1::text") + `
		LIMIT $3)
	DELETE FROM ` + s.logs + ` d USING victims v WHERE d.id = v.id AND d.occurred_at = v.occurred_at`
	n, err := s.deleteBatches(ctx, TenantScope(tenantID), stmt, tenantID, olderThan)
	if err != nil {
		return n, err
	}
	// Where the tenant's retained history now begins (unless a hold was placed meanwhile).
	if err := s.markRetained(ctx, s.pool, tenantID, olderThan); err != nil {
		return n, err
	}
	return n, nil
}

// deleteBatches runs a batched DELETE whose last parameter is the batch size until a batch
// deletes less than a full batch. Each batch is one transaction that also anchors the hash chains
// whose first records it deleted (anchorTruncations).
func (s *Store) deleteBatches(ctx context.Context, sc Scope, stmt string, args ...any) (int64, error) {
	batch := s.opts.CleanupBatchSize
	args = append(args, batch)
	stmt += ` RETURNING coalesce(d.tenant_id, ''), d.seq IS NOT NULL`
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := s.setScope(ctx, tx, sc); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, stmt, args...)
			if err != nil {
				return err
			}
			var (
				key     string
				chained bool
			)
			keys := make(map[string]bool)
			if _, err := pgx.ForEachRow(rows, []any{&key, &chained}, func() error {
				n++
				if chained {
					keys[key] = true
				}
				return nil
			}); err != nil {
				return err
			}
			return s.anchorTruncations(ctx, tx, slices.Sorted(maps.Keys(keys)))
		})
		if err != nil {
			return total, fmt.Errorf("store: cleanup after %d rows: %w", total, err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// anchorTruncations records, in tx after a deletion, a signed truncation checkpoint for each of
// the chains (tenant keys, in byte order) whose first remaining record is now later than before:
// its seq is that record's, its row hash that record's prev_hash (the row_hash of the last record
// deleted before it), so the chain verifies from there. A chain deleted entirely is anchored
// after its head, where its next record will link. Without Options.SigningKey it logs a warning
// instead.
func (s *Store) anchorTruncations(ctx context.Context, tx pgx.Tx, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if s.opts.SigningKey == nil {
		s.log.Warn("auditkit: chained records were deleted without a signing key (store.Options.SigningKey); "+
			"those chains now start, unvouched for, at their first remaining record", "chains", len(keys))
		return nil
	}
	now := time.Now()
	for _, key := range keys {
		cp := core.Checkpoint{TenantKey: key, Kind: core.CheckpointKindTruncation, CreatedAt: now}
		var hash []byte
		err := tx.QueryRow(ctx, `SELECT seq, prev_hash FROM `+s.logs+
			` WHERE coalesce(tenant_id, '') = $1 AND seq IS NOT NULL ORDER BY seq LIMIT 1`, key).Scan(&cp.Seq, &hash)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `SELECT seq + 1, row_hash FROM `+pgx.Identifier{s.schema, "audit_chain_heads"}.Sanitize()+` WHERE tenant_key = $1`, key).Scan(&cp.Seq, &hash)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // records chained without a head: nothing to anchor to
			}
		}
		if err != nil {
			return fmt.Errorf("truncation checkpoint of chain %q: %w", key, err)
		}
		if cp.Seq <= 1 || len(hash) != len(cp.RowHash) {
			continue // the chain still starts at its first record
		}
		copy(cp.RowHash[:], hash)
		if _, err := core.AppendCheckpoint(ctx, tx, s.schema, s.opts.SigningKey, &cp); err != nil {
			return err
		}
	}
	return nil
}

// RetentionPolicy is the background retention: records older than MaxAge are deleted, except
// for tenants with their own retention_days (which apply instead) and tenants under legal hold
// (whose records are kept). Each pass moves the retention marks that RetainedFrom reads.
type RetentionPolicy struct {
	// MaxAge is the default retention, for rows without a tenant and tenants without an override.
	// Zero applies only the per-tenant overrides.
	MaxAge time.Duration
	// Interval is the time between passes of StartRetention. Zero means one hour.
	Interval time.Duration
	// OnCleanup, when set, is called after each cleanup that deleted rows, so that the deletion
	// itself can be audited.
	OnCleanup func(RetentionReport)
	// DropPartitions, with MaxAge, first drops the partitions of a partitioned audit_logs whose
	// whole range is older than MaxAge (DropPartitions), which costs no row deletes; the
	// batched deletes then remove the rest. Records of tenants under legal hold, and of tenants
	// whose own window keeps them, are moved to the default partition rather than dropped.
	DropPartitions bool
	// ArchiveDir, with DropPartitions, archives each partition there before it is dropped
	// (PartitionDropOptions.ArchiveDir).
	ArchiveDir string
}

// RetentionReport describes one cleanup of a retention pass.
type RetentionReport struct {
	// TenantID is the tenant whose override applied; empty for the default policy.
	TenantID string
	Cutoff   time.Time // records that occurred before it were deleted
	Deleted  int64
	// Partition names the partition dropped, for a report of a partition drop.
	Partition string
	// Archive is the path of the partition's archive, when one was written.
	Archive string
}

// ApplyRetention runs one retention pass and reports the cleanups that deleted rows. It also
// forgets idempotency keys older than Options.IdempotencyWindow.
func (s *Store) ApplyRetention(ctx context.Context, p RetentionPolicy) ([]RetentionReport, error) {
	if p.MaxAge < 0 {
		return nil, errors.New("store: RetentionPolicy.MaxAge is negative")
	}
	now := time.Now().UTC()
	var reports []RetentionReport
	report := func(r RetentionReport) {
		if r.Deleted == 0 {
			return
		}
		reports = append(reports, r)
		if p.OnCleanup != nil {
			p.OnCleanup(r)
		}
	}

	if p.DropPartitions && p.MaxAge > 0 {
		drops, err := s.DropPartitions(ctx, now.Add(-p.MaxAge), PartitionDropOptions{ArchiveDir: p.ArchiveDir})
		for _, d := range drops {
			report(RetentionReport{Cutoff: d.To, Deleted: d.Rows - d.Kept, Partition: d.Partition, Archive: d.Archive})
		}
		if err != nil {
			return reports, err
		}
	}

	rows, err := s.pool.Query(ctx, `SELECT id, retention_days FROM `+s.tenants+` t
		WHERE retention_days IS NOT NULL AND NOT `+s.heldSQL("t.id")+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: retention: %w", err)
	}
	type override struct {
		id   string
		days int
	}
	var overrides []override
	for rows.Next() {
		var o override
		if err := rows.Scan(&o.id, &o.days); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: retention: %w", err)
		}
		overrides = append(overrides, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: retention: %w", err)
	}
	for _, o := range overrides {
		cutoff := now.AddDate(0, 0, -o.days)
		n, err := s.Cleanup(ctx, o.id, cutoff)
		report(RetentionReport{TenantID: o.id, Cutoff: cutoff, Deleted: n})
		if err != nil && !errors.Is(err, ErrLegalHold) {
			return reports, err
		}
	}

	if p.MaxAge > 0 {
		cutoff := now.Add(-p.MaxAge)
		stmt := `WITH victims AS (
			SELECT a.id, a.occurred_at FROM ` + s.logs + ` a
			WHERE a.occurred_at < $1
			  AND NOT EXISTS (SELECT 1 FROM ` + s.tenants + ` t
			                  WHERE t.id = a.tenant_id AND (t.legal_hold OR t.retention_days IS NOT NULL))
			  AND (a.tenant_id IS NULL OR NOT ` + s.heldSQL("a.tenant_id") + `)
			LIMIT $2)
		DELETE FROM ` + s.logs + ` d USING victims v WHERE d.id = v.id AND d.occurred_at = v.occurred_at`
		n, err := s.deleteBatches(ctx, AllTenantsScope(), stmt, cutoff)
		report(RetentionReport{Cutoff: cutoff, Deleted: n})
		if err != nil {
			return reports, err
		}
		if err := s.markRetained(ctx, s.pool, "*", cutoff); err != nil {
			return reports, err
		}
	}

	window := strconv.FormatInt(s.opts.IdempotencyWindow.Microseconds(), 10) + " microseconds"
	if _, err := s.pool.Exec(ctx, `DELETE FROM `+s.idem+` WHERE created_at < now() - $1::interval`, window); err != nil {
		return reports, fmt.Errorf("store: retention: idempotency keys: %w", err)
	}
	return reports, nil
}

// StartRetention runs ApplyRetention now and then every p.Interval until Close. Failures are
// logged and retried at the next interval.
func (s *Store) StartRetention(p RetentionPolicy) error {
	if p.MaxAge < 0 {
		return errors.New("store: RetentionPolicy.MaxAge is negative")
	}
	if p.Interval <= 0 {
		p.Interval = time.Hour
	}
	if s.closed() {
		return ErrClosed
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(p.Interval)
		defer t.Stop()
		for {
			if _, err := s.ApplyRetention(s.life, p); err != nil && s.life.Err() == nil {
				s.log.Error("auditkit: retention pass failed", "error", err)
			}
			select {
			case <-t.C:
			case <-s.life.Done():
				return
			}
		}
	}()
	return nil
}
