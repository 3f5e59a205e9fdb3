package pgtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// QueryRunner runs a query: a *sql.DB, *sql.Tx or *sql.Conn, or an ORM's connection pool.
type QueryRunner interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ExecReading runs query through q, reads every row it returns into database/sql values (the
// least any reader of those rows pays), and returns their count as the rows affected. Benchmarks
// use it for a statement that returns what an audit capture would read, such as an UPDATE with
// RETURNING OLD and NEW, in place of the plain statement.
func ExecReading(ctx context.Context, q QueryRunner, query string, args ...any) (sql.Result, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}
