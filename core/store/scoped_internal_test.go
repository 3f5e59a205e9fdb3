package store

import "context"

// ExecInScope runs sql through the transaction the Store's own statements run in for sc, so a
// test can send statements without any tenant condition and see what the database alone allows.
func ExecInScope(ctx context.Context, s *Store, sc Scope, sql string, args ...any) (int64, error) {
	var n int64
	err := s.scoped(ctx, sc, func(db querier) error {
		tag, err := db.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// CountInScope counts every audit_logs row the database lets sc see: the query has no WHERE
// clause at all.
func CountInScope(ctx context.Context, s *Store, sc Scope) (int64, error) {
	var n int64
	err := s.scoped(ctx, sc, func(db querier) error {
		return db.QueryRow(ctx, `SELECT count(*) FROM `+s.logs).Scan(&n)
	})
	return n, err
}
