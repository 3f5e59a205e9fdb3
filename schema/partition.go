package schema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Partitioning of audit_logs (migration 0006).
//
// audit_logs is partitioned by range of occurred_at, one partition per period (PeriodMonth
// unless SetPartitioning chose another), aligned on UTC, named audit_logs_pYYYYMMDD after the
// start of their range, plus the DEFAULT partition audit_logs_default for any record no other
// partition covers. A fresh installation is partitioned by Migrate; a table that held records
// before migration 0006 stays a plain table until PartitionExisting converts it.

// The partition periods SetPartitioning accepts.
const (
	PeriodDay   = "day"
	PeriodWeek  = "week" // from Monday 00:00 UTC
	PeriodMonth = "month"
	PeriodYear  = "year"
)

// DefaultPartition is the name of the DEFAULT partition of audit_logs.
const DefaultPartition = "audit_logs_default"

// The tables PartitionExisting works with, next to audit_logs.
const (
	// ConversionTable is the partitioned copy that PartitionExisting fills and then puts in
	// audit_logs' place.
	ConversionTable = "audit_logs_pnew"
	// UnpartitionedTable is what audit_logs is renamed to when its partitioned copy replaces it;
	// PartitionExisting drops it at the end unless PartitionOptions.KeepOld.
	UnpartitionedTable = "audit_logs_unpartitioned"
)

// Partition is one partition of audit_logs.
type Partition struct {
	Name string
	// From and To bound the occurred_at of its records: From <= occurred_at < To. Both are zero
	// for the default partition.
	From, To time.Time
	// Default is true for the DEFAULT partition.
	Default bool
}

// Queryer runs queries: *pgxpool.Pool, *pgx.Conn and pgx.Tx all satisfy it.
type Queryer interface {
	// Query runs a statement that returns rows.
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	// QueryRow runs a statement that returns at most one row.
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	// Exec runs a statement.
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// Partitioned reports whether audit_logs in the target schema is a partitioned table. It is an
// error when the table does not exist.
func Partitioned(ctx context.Context, db Queryer, opts ...Option) (bool, error) {
	o, err := options(opts)
	if err != nil {
		return false, err
	}
	kind, err := relkind(ctx, db, o.Schema, "audit_logs")
	if err != nil {
		return false, err
	}
	if kind == "" {
		return false, fmt.Errorf("schema: table %s.audit_logs does not exist", o.Schema)
	}
	return kind == "p", nil
}

// relkind returns pg_class.relkind of schema.name, or "" when it does not exist.
func relkind(ctx context.Context, db Queryer, schema, name string) (string, error) {
	var kind *string
	err := db.QueryRow(ctx, `SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)`,
		pgx.Identifier{schema, name}.Sanitize()).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && kind == nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("schema: looking up %s.%s: %w", schema, name, err)
	}
	return *kind, nil
}

// Partitions lists the partitions of audit_logs in the target schema, in time order, the default
// partition last. It is empty when audit_logs is not partitioned.
func Partitions(ctx context.Context, db Queryer, opts ...Option) ([]Partition, error) {
	o, err := options(opts)
	if err != nil {
		return nil, err
	}
	return listPartitions(ctx, db, o.Schema, "audit_logs")
}

func listPartitions(ctx context.Context, db Queryer, schema, table string) ([]Partition, error) {
	rows, err := db.Query(ctx, `SELECT name, lo, hi, is_default FROM `+pgx.Identifier{schema, "audit_partitions"}.Sanitize()+`($1)`, table)
	if err != nil {
		return nil, fmt.Errorf("schema: listing the partitions of %s.%s: %w", schema, table, err)
	}
	var out []Partition
	var p Partition
	var lo, hi *time.Time
	_, err = pgx.ForEachRow(rows, []any{&p.Name, &lo, &hi, &p.Default}, func() error {
		p.From, p.To = time.Time{}, time.Time{}
		if lo != nil {
			p.From = lo.UTC()
		}
		if hi != nil {
			p.To = hi.UTC()
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("schema: listing the partitions of %s.%s: %w", schema, table, err)
	}
	return out, nil
}

// EnsurePartitions creates the partitions of audit_logs for the current period and the
// configured number of periods after it that do not exist yet, and returns how many it created.
// It does nothing for an audit_logs that is not partitioned. core.Open calls the same database
// function when a writer opens and every few hours after.
func EnsurePartitions(ctx context.Context, db Queryer, opts ...Option) (int, error) {
	o, err := options(opts)
	if err != nil {
		return 0, err
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT `+pgx.Identifier{o.Schema, "audit_ensure_partitions"}.Sanitize()+`()`).Scan(&n); err != nil {
		return 0, fmt.Errorf("schema: creating the partitions of %s.audit_logs: %w", o.Schema, err)
	}
	return n, nil
}

// CreatePartitions creates the partitions of audit_logs that cover [from, through) and do not
// exist yet (for example for records about to be imported from the past), and returns how many
// it created. Records of those ranges that wait in the default partition are moved into them.
func CreatePartitions(ctx context.Context, db Queryer, from, through time.Time, opts ...Option) (int, error) {
	o, err := options(opts)
	if err != nil {
		return 0, err
	}
	if from.IsZero() || through.IsZero() || !from.Before(through) {
		return 0, fmt.Errorf("schema: CreatePartitions needs from before through (got %s and %s)", from.Format(time.RFC3339), through.Format(time.RFC3339))
	}
	var n int
	err = db.QueryRow(ctx, `SELECT `+pgx.Identifier{o.Schema, "audit_create_partitions"}.Sanitize()+`($1, $2, $3)`,
		"audit_logs", from, through).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("schema: creating the partitions of %s.audit_logs: %w", o.Schema, err)
	}
	return n, nil
}

// SetPartitioning sets the length of the partitions created from now on (PeriodDay, PeriodWeek,
// PeriodMonth or PeriodYear) and how many periods after the current one are created ahead (1 to
// 120). Existing partitions keep their ranges; a new one next to them is shortened so as not to
// overlap.
func SetPartitioning(ctx context.Context, db Queryer, period string, premake int, opts ...Option) error {
	o, err := options(opts)
	if err != nil {
		return err
	}
	switch period {
	case PeriodDay, PeriodWeek, PeriodMonth, PeriodYear:
	default:
		return fmt.Errorf("schema: partition period %q is not day, week, month or year", period)
	}
	if premake < 1 || premake > 120 {
		return fmt.Errorf("schema: partitions created ahead must be between 1 and 120, not %d", premake)
	}
	_, err = db.Exec(ctx, `UPDATE `+pgx.Identifier{o.Schema, "audit_partition_settings"}.Sanitize()+` SET period = $1, premake = $2`, period, premake)
	if err != nil {
		return fmt.Errorf("schema: setting the partitioning of %s.audit_logs: %w", o.Schema, err)
	}
	return nil
}

// PartitionOptions configure PartitionExisting.
type PartitionOptions struct {
	// BatchSize is how many records one copying transaction moves. Zero means 10000.
	BatchSize int
	// LockTimeout bounds how long the conversion waits for (and so how long it may make writers
	// queue behind) its locks on audit_logs: when installing its triggers, and for the final
	// swap. A wait that times out is retried. Zero means one second.
	LockTimeout time.Duration
	// Attempts is how many times a step that timed out on a lock is tried. Zero means 60.
	Attempts int
	// MaxPeriods caps how many partitions are created for the existing records, counting back
	// from the current period; older records go to the default partition. Zero means 240.
	MaxPeriods int
	// KeepOld keeps the former table, renamed audit_logs_unpartitioned, after the swap.
	KeepOld bool
	// Progress, when set, is called at the start of every step and after every copied batch.
	Progress func(PartitionProgress)
}

// PartitionProgress reports the state of a conversion.
type PartitionProgress struct {
	// Phase is "prepare", "copy", "swap", "drop-old" or "done".
	Phase string
	// Copied is how many records the copy has moved so far (over all runs of the conversion).
	Copied int64
	// Estimate is PostgreSQL's estimate of the rows of audit_logs (pg_class.reltuples), 0 when
	// unknown.
	Estimate int64
	// Resumed is true when the conversion continues one that an earlier run started.
	Resumed bool
	// Elapsed is the time since this run started.
	Elapsed time.Duration
}

// PartitionResult reports what PartitionExisting did.
type PartitionResult struct {
	// AlreadyPartitioned is true when audit_logs was partitioned before the call (a former table
	// left behind by an interrupted run may have been dropped).
	AlreadyPartitioned bool
	// Resumed is true when the call continued a conversion an earlier run started.
	Resumed bool
	// Copied is the number of records copied, over all runs.
	Copied int64
	// LockWait is how long the swap waited for its ACCESS EXCLUSIVE lock on audit_logs (writers
	// queue behind a waiting lock), and LockHeld how long it then held it, until commit.
	LockWait, LockHeld time.Duration
	// SwapAttempts is how many times the swap was tried (each waits at most LockTimeout).
	SwapAttempts int
}

// ErrConversionRunning is returned by PartitionExisting when another session is converting the
// same schema.
var ErrConversionRunning = errors.New("schema: another session is partitioning this audit_logs")

// PartitionExisting converts audit_logs in the target schema, a plain table that holds records,
// into the partitioned table of migration 0006, online: writers and readers go on throughout,
// and the only exclusive lock on audit_logs is the final swap's, held for the time of a few
// catalog changes. It must run as the owner of audit_logs, after Migrate.
//
// The steps: audit_logs_pnew is created partitioned, with the columns, keys and indexes of
// audit_logs and partitions for the range of its records, and statement triggers on audit_logs
// start copying every change to it; then the rows are copied in id order, in batches of one
// transaction each that also records the last id copied (audit_partition_progress); finally, in
// one transaction with lock_timeout, audit_logs becomes audit_logs_unpartitioned and
// audit_logs_pnew becomes audit_logs, with the triggers, row-level security policies and grants
// of the old table; the old table is dropped. Each step commits on its own, so the conversion
// can be stopped (or crash) anywhere and resumes where it was when called again. Calling it on a
// partitioned audit_logs only finishes an interrupted run's clean-up.
func PartitionExisting(ctx context.Context, pool *pgxpool.Pool, po PartitionOptions, opts ...Option) (PartitionResult, error) {
	o, err := options(opts)
	if err != nil {
		return PartitionResult{}, err
	}
	if po.BatchSize <= 0 {
		po.BatchSize = 10000
	}
	if po.LockTimeout <= 0 {
		po.LockTimeout = time.Second
	}
	if po.Attempts <= 0 {
		po.Attempts = 60
	}
	if po.MaxPeriods <= 0 {
		po.MaxPeriods = 240
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return PartitionResult{}, fmt.Errorf("schema: partition: %w", err)
	}
	defer conn.Release()
	c := &converter{conn: conn.Conn(), schema: o.Schema, po: po, start: time.Now()}
	var locked bool
	if err := c.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended('auditkit.partition.' || $1, 0))`, o.Schema).Scan(&locked); err != nil {
		return PartitionResult{}, fmt.Errorf("schema: partition: lock: %w", err)
	}
	if !locked {
		return PartitionResult{}, ErrConversionRunning
	}
	defer func() {
		_, _ = c.conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended('auditkit.partition.' || $1, 0))`, o.Schema)
	}()
	res, err := c.run(ctx)
	if err != nil {
		return res, fmt.Errorf("schema: partitioning %s.audit_logs: %w", o.Schema, err)
	}
	return res, nil
}

type converter struct {
	conn   *pgx.Conn
	schema string
	po     PartitionOptions
	start  time.Time
	res    PartitionResult
	est    int64
}

func (c *converter) q(name string) string { return pgx.Identifier{c.schema, name}.Sanitize() }

func (c *converter) progress(phase string) {
	if c.po.Progress != nil {
		c.po.Progress(PartitionProgress{Phase: phase, Copied: c.res.Copied, Estimate: c.est, Resumed: c.res.Resumed, Elapsed: time.Since(c.start)})
	}
}

func (c *converter) run(ctx context.Context) (PartitionResult, error) {
	kind, err := relkind(ctx, c.conn, c.schema, "audit_logs")
	if err != nil {
		return c.res, err
	}
	switch kind {
	case "":
		return c.res, errors.New("audit_logs does not exist: run the migrations first")
	case "p":
		c.res.AlreadyPartitioned = true
		return c.res, c.finish(ctx)
	case "r":
	default:
		return c.res, fmt.Errorf("audit_logs is not a table (relkind %q)", kind)
	}
	if k, err := relkind(ctx, c.conn, c.schema, "audit_partition_settings"); err != nil || k == "" {
		return c.res, errors.Join(err, errors.New("migration 0006 is not applied: run the migrations first"))
	}
	_ = c.conn.QueryRow(ctx, `SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)`, c.q("audit_logs")).Scan(&c.est)
	pk, err := relkind(ctx, c.conn, c.schema, ConversionTable)
	if err != nil {
		return c.res, err
	}
	if pk == "" {
		if err := c.prepare(ctx); err != nil {
			return c.res, err
		}
	} else {
		c.res.Resumed = true
	}
	if err := c.copyRows(ctx); err != nil {
		return c.res, err
	}
	if err := c.swap(ctx); err != nil {
		return c.res, err
	}
	return c.res, c.finish(ctx)
}

// withLockRetry runs fn in a transaction with lock_timeout set, again while it fails on a lock
// timeout, up to po.Attempts times; it returns the number of attempts.
func (c *converter) withLockRetry(ctx context.Context, fn func(tx pgx.Tx) error) (int, error) {
	timeout := fmt.Sprintf("%dms", c.po.LockTimeout.Milliseconds())
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true), set_config('search_path', $2, true)`,
				timeout, pgx.Identifier{c.schema}.Sanitize()); err != nil {
				return err
			}
			return fn(tx)
		})
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || attempt >= c.po.Attempts {
			return attempt, err
		}
		select {
		case <-ctx.Done():
			return attempt, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// prepare creates the partitioned copy, its partitions and the triggers that keep it in step.
func (c *converter) prepare(ctx context.Context) error {
	c.progress("prepare")
	var period string
	var premake int
	if err := c.conn.QueryRow(ctx, `SELECT period, premake FROM `+c.q("audit_partition_settings")).Scan(&period, &premake); err != nil {
		return err
	}
	// The range of the existing records: min over the BRIN-indexed column is a scan, done once
	// and outside any lock.
	var oldest *time.Time
	if err := c.conn.QueryRow(ctx, `SELECT min(occurred_at) FROM `+c.q("audit_logs")).Scan(&oldest); err != nil {
		return err
	}
	_, err := c.withLockRetry(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT audit_partition_clone('audit_logs', $1)`, ConversionTable); err != nil {
			return err
		}
		// Partitions from the oldest record (at most MaxPeriods back) through the periods ahead.
		if _, err := tx.Exec(ctx, `SELECT audit_create_partitions($1, greatest(coalesce($2, now()), now() - $3::int * ('1 ' || $4)::interval),
				audit_partition_floor(now(), $4) + ($5::int + 1) * ('1 ' || $4)::interval)`,
			ConversionTable, oldest, c.po.MaxPeriods, period, premake); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_partition_progress`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_partition_progress (cursor, copied) VALUES (NULL, 0)`); err != nil {
			return err
		}
		// Last: it takes a SHARE ROW EXCLUSIVE lock on audit_logs, which waits for the writing
		// transactions in progress, so every write committed after this one reaches the copy
		// through the triggers, and every write committed before it through the copy.
		_, err := tx.Exec(ctx, `SELECT audit_partition_sync_start('audit_logs', $1)`, ConversionTable)
		return err
	})
	return err
}

// copyRows copies the rows of audit_logs after the recorded cursor, in id order, one batch per
// transaction. The rows are read FOR SHARE, so that a concurrent UPDATE or DELETE either commits
// before the batch reads the row (the batch sees the result) or waits until the batch commits
// (and its trigger then changes the copy).
func (c *converter) copyRows(ctx context.Context) error {
	copyStmt := `WITH src AS (
			SELECT * FROM ` + c.q("audit_logs") + ` WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2 FOR SHARE),
		ins AS (INSERT INTO ` + c.q(ConversionTable) + ` SELECT * FROM src ON CONFLICT DO NOTHING)
		SELECT (SELECT id FROM src ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM src)`
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n int64
		err := pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
			var cursor pgtype.UUID
			if err := tx.QueryRow(ctx, `SELECT cursor, copied FROM `+c.q("audit_partition_progress")+` FOR UPDATE`).Scan(&cursor, &c.res.Copied); err != nil {
				return fmt.Errorf("reading the progress: %w", err)
			}
			var next pgtype.UUID
			if err := tx.QueryRow(ctx, copyStmt, cursor, c.po.BatchSize).Scan(&next, &n); err != nil {
				return fmt.Errorf("copying: %w", err)
			}
			if n == 0 {
				return nil
			}
			_, err := tx.Exec(ctx, `UPDATE `+c.q("audit_partition_progress")+` SET cursor = $1, copied = copied + $2, updated_at = now()`, next, n)
			return err
		})
		if err != nil {
			return err
		}
		c.res.Copied += n
		c.progress("copy")
		if n < int64(c.po.BatchSize) {
			return nil
		}
	}
}

// swap puts the partitioned copy in the place of audit_logs.
func (c *converter) swap(ctx context.Context) error {
	c.progress("swap")
	var t1 time.Time
	n, err := c.withLockRetry(ctx, func(tx pgx.Tx) error {
		t0 := time.Now()
		if _, err := tx.Exec(ctx, `LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE`); err != nil {
			return err
		}
		t1 = time.Now()
		c.res.LockWait = t1.Sub(t0)
		if _, err := tx.Exec(ctx, `SELECT audit_partition_swap('audit_logs', $1, $2)`, ConversionTable, UnpartitionedTable); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM audit_partition_progress`)
		return err
	})
	if err == nil {
		c.res.LockHeld = time.Since(t1) // until the commit returned
	}
	c.res.SwapAttempts = n
	return err
}

// finish drops the former table unless KeepOld and creates the partitions ahead.
func (c *converter) finish(ctx context.Context) error {
	old, err := relkind(ctx, c.conn, c.schema, UnpartitionedTable)
	if err != nil {
		return err
	}
	if old != "" && !c.po.KeepOld {
		c.progress("drop-old")
		if _, err := c.withLockRetry(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DROP TABLE `+c.q(UnpartitionedTable))
			return err
		}); err != nil {
			return err
		}
	}
	if _, err := EnsurePartitions(ctx, c.conn, WithSchema(c.schema)); err != nil {
		return err
	}
	c.progress("done")
	return nil
}
