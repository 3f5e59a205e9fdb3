package core

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoDatabaseURL is returned by Open when the configuration names no database.
var ErrNoDatabaseURL = errors.New("auditkit: no database URL configured (set Config.DatabaseURL or AUDIT_DATABASE_URL)")

// WriterApplicationName is the application_name of the connections Open makes, unless the
// database URL sets one: operators find the writer's sessions in pg_stat_activity by it.
const WriterApplicationName = "auditkit-writer"

// Open validates cfg, checks once that the audit tables are ready, creates a connection pool for
// cfg.DatabaseURL and returns a Writer that writes into cfg.Schema's audit_logs and owns the pool:
// Close drains the writer, then closes the pool.
//
// Every network step has a deadline: connecting takes at most cfg.ConnectTimeout, one write
// attempt at most cfg.AttemptTimeout, the wait between attempts at most cfg.MaxBackoff, and TCP
// keepalives (cfg.TCPKeepAlive) and, on Linux, TCP_USER_TIMEOUT (cfg.TCPUserTimeout) drop a
// connection whose peer went silent. The pool holds one connection per writer worker plus one.
//
// Unless cfg.SkipSchemaCheck, Open connects once and checks what CheckSchema checks: the schema,
// the migration version, audit_logs, the role's privileges, and that the session can write. A
// problem there is returned as an error wrapping ErrSchemaNotReady that says how to fix it. When
// the database cannot be reached at all (refused, timed out), Open does not fail: an application
// starts, and requests stay fast, while PostgreSQL is down. The check is then skipped with a
// warning, and records queue (up to QueueSize) and are written once it answers.
//
// Records are chained (docs/chain.md) unless cfg.Chain.Disabled. With cfg.Chain.SigningKey, Open
// starts a Checkpointer that signs a checkpoint of every chain that moved every
// cfg.Chain.CheckpointInterval (sending each to cfg.Chain.CheckpointWebhook when set); Close
// stops it after the last batch, with a last round, before it closes the pool.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.DatabaseURL == "" {
		return nil, ErrNoDatabaseURL
	}
	pcfg, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.SkipSchemaCheck {
		err := checkSchema(ctx, cfg, pcfg)
		if errors.Is(err, ErrSchemaNotReady) {
			return nil, err
		}
		if err != nil {
			cfg.Logger.Warn("auditkit: the database is not reachable; the schema check is deferred and records queue until it answers",
				"database", redactDatabaseURL(cfg.DatabaseURL), "schema", cfg.Schema, "err", err)
		}
	}
	opts, err := writerOptions(cfg)
	if err != nil {
		return nil, err
	}
	priv, err := cfg.ChainSigningKey()
	if err != nil {
		return nil, err
	}
	pii, err := cfg.PIICipher()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("auditkit: %w", err)
	}
	var cp *Checkpointer
	if priv != nil {
		cp, err = StartCheckpointer(pool, priv, CheckpointerOptions{
			Schema: cfg.Schema, Interval: cfg.Chain.CheckpointInterval, Webhook: cfg.Chain.CheckpointWebhook, Logger: cfg.Logger,
		})
		if err != nil {
			pool.Close()
			return nil, err
		}
	}
	opts.PII = pii
	parts := startPartitionKeeper(pool, cfg.Schema, cfg.Logger)
	opts.OnClose = func(ctx context.Context) error {
		parts.stop()
		var err error
		if cp != nil {
			// After the last batch: the final checkpoint vouches for every record written.
			err = cp.Stop(ctx)
		}
		return errors.Join(err, closePool(ctx, pool))
	}
	w, err := OpenWriter(NewPostgresSink(pool, PostgresSinkOptions{Schema: cfg.Schema, DisableChain: cfg.Chain.Disabled, PII: pii}), opts)
	if err != nil {
		parts.stop()
		if cp != nil {
			_ = cp.Stop(context.Background())
		}
		pool.Close()
		return nil, err
	}
	return w, nil
}

// writerOptions are the WriterOptions of the Writer that Open returns for cfg (completed with its
// defaults), without OnClose.
func writerOptions(cfg Config) (WriterOptions, error) {
	sync, err := ParseSpoolSync(cfg.Spool.Sync)
	if err != nil {
		return WriterOptions{}, err
	}
	return WriterOptions{
		BatchSize:      cfg.BatchSize,
		FlushInterval:  cfg.FlushInterval,
		QueueSize:      cfg.QueueSize,
		AttemptTimeout: cfg.AttemptTimeout,
		MaxBackoff:     cfg.MaxBackoff,
		Redactor:       cfg.Redactor(),
		Logger:         cfg.Logger,
		FailurePolicy:  cfg.FailurePolicy,
		Spool: SpoolOptions{
			Dir:          cfg.Spool.Dir,
			MaxBytes:     cfg.Spool.MaxBytes,
			Sync:         sync,
			SyncInterval: cfg.Spool.SyncInterval,
		},

		DisableORMDiffs: cfg.DisableORMDiffs,
	}, nil
}

// poolConfig is the pool configuration for cfg (completed with its defaults): connections dialled
// with cfg's timeouts and TCP settings, named WriterApplicationName, as many as the writer uses.
func poolConfig(cfg Config) (*pgxpool.Config, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("auditkit: %w", err)
	}
	cc := pcfg.ConnConfig
	cc.ConnectTimeout = cfg.ConnectTimeout
	cc.DialFunc = dialOptions{timeout: cfg.ConnectTimeout, keepAlive: cfg.TCPKeepAlive, userTimeout: cfg.TCPUserTimeout}.dial
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = make(map[string]string)
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = WriterApplicationName
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		// One connection per worker, and one for the duplicate-skipping retry or a health check.
		pcfg.MaxConns = int32(WriterOptions{}.withDefaults().Workers + 1)
	}
	return pcfg, nil
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
