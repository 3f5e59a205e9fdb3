package core

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PartitionCheckInterval is how often a writer opened by Open creates the partitions of
// audit_logs ahead of time (the current period and the configured number after it; see
// schema.EnsurePartitions). The first check runs when the writer opens. A write never waits for
// it and never fails for a missing partition: the default partition takes a record no other
// covers.
const PartitionCheckInterval = 6 * time.Hour

// maxDefaultRowsCounted bounds the count of the default partition's rows that a check logs.
const maxDefaultRowsCounted = 1_000_000

// partitionKeeper runs the partition checks of one writer in the background.
type partitionKeeper struct {
	pool   *pgxpool.Pool
	schema string
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startPartitionKeeper checks the partitions of schema's audit_logs now and then every
// PartitionCheckInterval until stop.
func startPartitionKeeper(pool *pgxpool.Pool, schema string, log *slog.Logger) *partitionKeeper {
	ctx, cancel := context.WithCancel(context.Background())
	k := &partitionKeeper{pool: pool, schema: schema, log: log, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		t := time.NewTicker(PartitionCheckInterval)
		defer t.Stop()
		for {
			if !k.check(ctx) {
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return k
}

// stop ends the background checks and waits for a check in progress (its statements end with
// the cancelled context).
func (k *partitionKeeper) stop() {
	k.once.Do(k.cancel)
	<-k.done
}

// check creates the partitions ahead and logs a warning when records wait in the default
// partition. It returns false when the schema has no partition functions (tables migrated by
// another tool), so that checking again is pointless.
func (k *partitionKeeper) check(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	created, stray, err := EnsurePartitions(ctx, k.pool, k.schema)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42883": // undefined_function: before migration 0006
		k.log.Debug("auditkit: audit_logs has no partition functions; partitions are not created ahead", "schema", k.schema)
		return false
	case err != nil:
		if ctx.Err() == nil {
			k.log.Warn("auditkit: creating the partitions of audit_logs ahead failed; records of a period without a partition go to its default partition",
				"schema", k.schema, "err", err)
		}
		return true
	}
	if created > 0 {
		k.log.Info("auditkit: created partitions of audit_logs ahead", "schema", k.schema, "partitions", created)
	}
	if stray > 0 {
		k.log.Warn("auditkit: records are in the default partition of audit_logs (no partition covers their time, or they belong to a tenant under legal hold); "+
			"partition retention cannot drop them: create partitions for their range (schema.CreatePartitions) or let retention delete them",
			"schema", k.schema, "records", stray)
	}
	return true
}

// EnsurePartitions creates, in schema's audit_logs, the partitions of the current period and the
// configured number of periods after it that do not exist yet (database function
// audit_ensure_partitions of migration 0006, which runs with its owner's rights, so a writer
// role may call it), and counts the records in the default partition (up to a million). It
// waits at most two seconds for a lock and returns created = 0 for an audit_logs that is not
// partitioned. Writers opened with Open call it when they open and every PartitionCheckInterval.
func EnsurePartitions(ctx context.Context, db *pgxpool.Pool, schema string) (created int, defaultRows int64, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT `+pgx.Identifier{schema, "audit_ensure_partitions"}.Sanitize()+`()`).Scan(&created); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT `+pgx.Identifier{schema, "audit_default_partition_rows"}.Sanitize()+`($1)`,
			maxDefaultRowsCounted).Scan(&defaultRows)
	})
	return created, defaultRows, err
}
