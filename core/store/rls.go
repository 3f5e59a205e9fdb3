package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/schema"
)

// querier is what the read paths run statements on: the pool, or the transaction that carries
// the scope settings when Options.RowLevelSecurity is on.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// scoped runs fn on the pool, or, with Options.RowLevelSecurity, in a transaction that first
// names sc to the row-level security policies (schema.EnableRowLevelSecurity). Every statement
// on audit_logs goes through it (or through setScope in a transaction of its own), so the
// database enforces the scope even where a WHERE clause would not. Without the option nothing
// changes: no transaction, no extra round trip.
func (s *Store) scoped(ctx context.Context, sc Scope, fn func(q querier) error) error {
	if !s.opts.RowLevelSecurity {
		return fn(s.pool)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.setScope(ctx, tx, sc); err != nil {
			return err
		}
		return fn(tx)
	})
}

// setScope sets the row-level security settings for sc, local to tx, when
// Options.RowLevelSecurity is on. Both settings are always written, so nothing of an earlier
// scope can linger.
func (s *Store) setScope(ctx context.Context, tx pgx.Tx, sc Scope) error {
	if !s.opts.RowLevelSecurity {
		return nil
	}
	all := "off"
	if sc.AllTenants {
		all = "on"
	}
	_, err := tx.Exec(ctx, `SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true)`,
		schema.TenantSetting, sc.TenantID, schema.AllTenantsSetting, all)
	return err
}
