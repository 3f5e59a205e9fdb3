package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// LegalHold keeps every record of a tenant: while it is in place, no cleanup, retention pass,
// partition drop or archive removes any of them (a dropped partition's rows of the tenant are
// moved to the default partition first). A hold is placed with PlaceLegalHold (table
// audit_legal_holds, with a reason and who placed it) or with the legal_hold flag of the tenant
// registry (TenantUpdate.LegalHold); a tenant is held when either says so. Placing, reading and
// releasing holds needs SELECT, INSERT, UPDATE and DELETE on audit_legal_holds; retention checks
// holds through a function that needs no privilege.
type LegalHold struct {
	TenantID string `json:"tenant_id"`
	// Reason says why, for example a case number. At most 1000 bytes, no control characters.
	Reason string `json:"reason"`
	// PlacedBy names who placed it (the API sets the administrator's id).
	PlacedBy string    `json:"placed_by"`
	PlacedAt time.Time `json:"placed_at"`
}

const maxHoldReason = 1000

// heldSQL is true when the tenant in the SQL expression tenantCol is under legal hold (database
// function audit_tenant_held, which runs with its owner's rights).
func (s *Store) heldSQL(tenantCol string) string {
	return s.q("audit_tenant_held") + `(` + tenantCol + `)`
}

func (s *Store) q(name string) string { return pgx.Identifier{s.schema, name}.Sanitize() }

// PlaceLegalHold places (or updates the reason of) a legal hold on a tenant, registered or not,
// and sets the registry's legal_hold flag when the tenant is registered. PlacedAt is set by the
// database when the hold is new and kept when it is updated.
func (s *Store) PlaceLegalHold(ctx context.Context, h LegalHold) (LegalHold, error) {
	if err := ValidateTenantID("tenant_id", h.TenantID); err != nil {
		return LegalHold{}, err
	}
	if len(h.Reason) > maxHoldReason || !utf8.ValidString(h.Reason) || strings.IndexFunc(h.Reason, unicode.IsControl) >= 0 {
		return LegalHold{}, paramErr("reason", "must be valid UTF-8 without control characters, at most %d bytes", maxHoldReason)
	}
	if len(h.PlacedBy) > 256 || !utf8.ValidString(h.PlacedBy) {
		return LegalHold{}, paramErr("placed_by", "must be valid UTF-8, at most 256 bytes")
	}
	var out LegalHold
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO `+s.q("audit_legal_holds")+` (tenant_id, reason, placed_by) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET reason = excluded.reason, placed_by = excluded.placed_by
			RETURNING tenant_id, reason, placed_by, placed_at`, h.TenantID, h.Reason, h.PlacedBy).
			Scan(&out.TenantID, &out.Reason, &out.PlacedBy, &out.PlacedAt)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+s.tenants+` SET legal_hold = true, updated_at = now() WHERE id = $1 AND NOT legal_hold`, h.TenantID)
		return err
	})
	if err != nil {
		return LegalHold{}, fmt.Errorf("store: place legal hold: %w", err)
	}
	out.PlacedAt = out.PlacedAt.UTC()
	return out, nil
}

// GetLegalHold returns the legal hold of a tenant, or ErrNotFound when it is not held. A hold set
// only through the registry's legal_hold flag has no reason and is dated by the tenant's last
// update.
func (s *Store) GetLegalHold(ctx context.Context, tenantID string) (LegalHold, error) {
	if err := ValidateTenantID("tenant_id", tenantID); err != nil {
		return LegalHold{}, ErrNotFound
	}
	var h LegalHold
	err := s.pool.QueryRow(ctx, `SELECT tenant_id, reason, placed_by, placed_at FROM `+s.q("audit_legal_holds")+` WHERE tenant_id = $1
		UNION ALL
		SELECT id, '', '', updated_at FROM `+s.tenants+` WHERE id = $1 AND legal_hold
		LIMIT 1`, tenantID).Scan(&h.TenantID, &h.Reason, &h.PlacedBy, &h.PlacedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return LegalHold{}, ErrNotFound
	}
	if err != nil {
		return LegalHold{}, fmt.Errorf("store: get legal hold: %w", err)
	}
	h.PlacedAt = h.PlacedAt.UTC()
	return h, nil
}

// ReleaseLegalHold lifts a tenant's legal hold, both the audit_legal_holds row and the registry's
// flag. It returns ErrNotFound when the tenant was not held. Retention applies to the tenant's
// records again from its next pass.
func (s *Store) ReleaseLegalHold(ctx context.Context, tenantID string) error {
	if err := ValidateTenantID("tenant_id", tenantID); err != nil {
		return ErrNotFound
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.q("audit_legal_holds")+` WHERE tenant_id = $1`, tenantID)
		if err != nil {
			return err
		}
		n += tag.RowsAffected()
		tag, err = tx.Exec(ctx, `UPDATE `+s.tenants+` SET legal_hold = false, updated_at = now() WHERE id = $1 AND legal_hold`, tenantID)
		n += tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release legal hold: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// LegalHolds lists the tenants under legal hold, in tenant id order.
func (s *Store) LegalHolds(ctx context.Context) ([]LegalHold, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, reason, placed_by, placed_at FROM `+s.q("audit_legal_holds")+`
		UNION ALL
		SELECT id, '', '', updated_at FROM `+s.tenants+` t WHERE legal_hold
		  AND NOT EXISTS (SELECT 1 FROM `+s.q("audit_legal_holds")+` h WHERE h.tenant_id = t.id)
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("store: legal holds: %w", err)
	}
	var out []LegalHold
	var h LegalHold
	if _, err := pgx.ForEachRow(rows, []any{&h.TenantID, &h.Reason, &h.PlacedBy, &h.PlacedAt}, func() error {
		h.PlacedAt = h.PlacedAt.UTC()
		out = append(out, h)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: legal holds: %w", err)
	}
	return out, nil
}

// heldTenants returns the ids of the tenants under legal hold.
func (s *Store) heldTenants(ctx context.Context, db querier) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT tenant_id FROM `+s.q("audit_legal_holds")+` UNION SELECT id FROM `+s.tenants+` WHERE legal_hold`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Retention says what the log of one tenant keeps.
type Retention struct {
	TenantID string `json:"tenant_id"`
	// RetainedFrom is where the tenant's retained history begins: retention removed (or would
	// have removed) its records that occurred before it, and every record from it on is kept.
	// Nil when nothing was ever removed for the tenant. Records older than it may still exist
	// (kept by a legal hold, or a longer window). A query for an earlier range that finds
	// nothing therefore does not show that nothing happened.
	RetainedFrom *time.Time `json:"retained_from"`
	// RetentionDays is the tenant's own retention window (the registry's retention_days), 0 when
	// the default policy applies.
	RetentionDays int `json:"retention_days,omitempty"`
	// LegalHold is the tenant's legal hold, nil when none.
	LegalHold *LegalHold `json:"legal_hold"`
}

// GetRetention returns what the log of a tenant keeps: where its retained history begins, its
// retention window and its legal hold. The tenant does not have to be registered.
func (s *Store) GetRetention(ctx context.Context, tenantID string) (Retention, error) {
	if err := ValidateTenantID("tenant_id", tenantID); err != nil {
		return Retention{}, fmt.Errorf("%w: %w", ErrInvalidScope, err)
	}
	r := Retention{TenantID: tenantID}
	from, err := s.RetainedFrom(ctx, tenantID)
	if err != nil {
		return Retention{}, err
	}
	if !from.IsZero() {
		r.RetainedFrom = &from
	}
	err = s.pool.QueryRow(ctx, `SELECT coalesce(retention_days, 0) FROM `+s.tenants+` WHERE id = $1`, tenantID).Scan(&r.RetentionDays)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Retention{}, fmt.Errorf("store: retention: %w", err)
	}
	h, err := s.GetLegalHold(ctx, tenantID)
	switch {
	case err == nil:
		r.LegalHold = &h
	case !errors.Is(err, ErrNotFound):
		return Retention{}, err
	}
	return r, nil
}

// RetainedFrom returns where the retained history of a tenant (a tenant id, or "" for the
// records without a tenant) begins: the zero time when retention never removed any of its
// records. See Retention.RetainedFrom.
//
// It is the later of the tenant's own mark (moved by Cleanup, a retention pass with the tenant's
// own window, or a partition drop that removed records of a tenant with its own window) and,
// unless the tenant is under legal hold or has its own window, the mark of the default policy
// (moved by the default retention and by partition drops).
func (s *Store) RetainedFrom(ctx context.Context, tenantKey string) (time.Time, error) {
	var from *time.Time
	err := s.pool.QueryRow(ctx, `SELECT `+s.q("audit_retained_from")+`($1)`, tenantKey).Scan(&from)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: retained from: %w", err)
	}
	if from == nil {
		return time.Time{}, nil
	}
	return from.UTC(), nil
}

// markRetained moves the retention mark of key ("*" for the default policy) to at, if later.
func (s *Store) markRetained(ctx context.Context, db querier, key string, at time.Time) error {
	_, err := db.Exec(ctx, `SELECT `+s.q("audit_mark_retained")+`($1, $2)`, key, at)
	if err != nil {
		return fmt.Errorf("store: retention mark: %w", err)
	}
	return nil
}
