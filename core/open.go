package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoDatabaseURL is returned by Open when the configuration names no database.
var ErrNoDatabaseURL = errors.New("auditkit: no database URL configured (set Config.DatabaseURL or AUDIT_DATABASE_URL)")

// Open validates cfg, creates a connection pool for cfg.DatabaseURL and returns a Writer that
// writes into cfg.Schema's audit_logs and owns the pool: Close drains the writer, then closes the
// pool. Open does not wait for the database: an application starts, and requests stay fast, while
// PostgreSQL is unreachable; records queue (up to QueueSize) and are written once it answers.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.DatabaseURL == "" {
		return nil, ErrNoDatabaseURL
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("auditkit: %w", err)
	}
	return NewWriter(NewPostgresSink(pool, PostgresSinkOptions{Schema: cfg.Schema}), WriterOptions{
		BatchSize:     cfg.BatchSize,
		FlushInterval: cfg.FlushInterval,
		QueueSize:     cfg.QueueSize,
		Redactor:      cfg.Redactor(),
		Logger:        cfg.Logger,
		OnClose:       func(ctx context.Context) error { return closePool(ctx, pool) },

		DisableORMDiffs: cfg.DisableORMDiffs,
	}), nil
}

// closePool closes pool without letting a stalled server hold the caller past ctx.
func closePool(ctx context.Context, pool *pgxpool.Pool) error {
	done := make(chan struct{})
	go func() {
		pool.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auditkit: closing the connection pool: %w", ctx.Err())
	}
}
