package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/schema"
)

// runPartition converts audit_logs to partitions (migrate -partition), printing progress.
func runPartition(ctx context.Context, env *cmdEnv, pool *pgxpool.Pool, schemaName string, o *migrateOptions) int {
	var last time.Time
	var unsaid *schema.PartitionProgress // the latest copy progress not printed yet
	copied := func(p schema.PartitionProgress) {
		pct := ""
		if p.Estimate > 0 {
			pct = fmt.Sprintf(" (~%d%%)", min(100, p.Copied*100/p.Estimate))
		}
		fmt.Fprintf(env.stderr, "partition: copied %d records%s in %s\n", p.Copied, pct, p.Elapsed.Round(time.Second))
		last, unsaid = time.Now(), nil
	}
	res, err := schema.PartitionExisting(ctx, pool, schema.PartitionOptions{
		BatchSize: o.batch, LockTimeout: o.lockTimeout, KeepOld: o.keepOld,
		Progress: func(p schema.PartitionProgress) {
			if p.Phase == "copy" {
				if time.Since(last) < time.Second {
					unsaid = &p // at most one line a second, and the last count before the next step
					return
				}
				copied(p)
				return
			}
			if unsaid != nil {
				copied(*unsaid)
			}
			switch p.Phase {
			case "prepare":
				fmt.Fprintln(env.stderr, "partition: creating the partitioned copy and the triggers that keep it in step")
			case "swap":
				fmt.Fprintln(env.stderr, "partition: swapping the tables")
			case "drop-old":
				fmt.Fprintf(env.stderr, "partition: dropping %s\n", schema.UnpartitionedTable)
			}
		},
	}, schema.WithSchema(schemaName))
	if err != nil {
		fmt.Fprintf(env.stderr, "%s: stopped after %d records copied; run it again to resume\n", env.flags.Name(), res.Copied)
		return env.fail(err)
	}
	switch {
	case res.AlreadyPartitioned:
		fmt.Fprintln(env.stdout, "audit_logs is partitioned")
	default:
		resumed := ""
		if res.Resumed {
			resumed = ", resuming an earlier run"
		}
		fmt.Fprintf(env.stdout, "audit_logs is partitioned: %d records copied%s; the swap waited %s for its lock and held it %s (attempt %d)\n",
			res.Copied, resumed, res.LockWait.Round(time.Millisecond), res.LockHeld.Round(time.Millisecond), res.SwapAttempts)
	}
	return exitOK
}

var partitionsCommand = &command{
	name:    "partitions",
	summary: "list the partitions of audit_logs and what waits in the default one; -drop-before T drops (-archive DIR: archives) the older ones",
	run:     runPartitions,
	flags: func(fs *flag.FlagSet) any {
		o := &partitionsOptions{}
		fs.StringVar(&o.dropBefore, "drop-before", "", "drop the partitions whose range ends at or before this time (RFC 3339 or YYYY-MM-DD); records of tenants under legal hold are kept")
		fs.StringVar(&o.archive, "archive", "", "with -drop-before: archive each partition into this directory first (gzip NDJSON and a manifest)")
		return o
	},
}

type partitionsOptions struct {
	dropBefore, archive string
}

func runPartitions(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*partitionsOptions)
	var before time.Time
	if o.dropBefore != "" {
		var err error
		if before, err = time.Parse(time.RFC3339, o.dropBefore); err != nil {
			if before, err = time.Parse(time.DateOnly, o.dropBefore); err != nil {
				fmt.Fprintf(env.stderr, "%s: -drop-before %q: want RFC 3339 or YYYY-MM-DD\n", env.flags.Name(), o.dropBefore)
				return exitUsage
			}
		}
	} else if o.archive != "" {
		fmt.Fprintf(env.stderr, "%s: -archive needs -drop-before\n", env.flags.Name())
		return exitUsage
	}
	cfg, pool, err := env.connect(ctx)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	st, err := store.New(pool, store.Options{Schema: cfg.Schema})
	if err != nil {
		return env.fail(err)
	}
	defer st.Close()
	if !before.IsZero() {
		drops, err := st.DropPartitions(ctx, before, store.PartitionDropOptions{ArchiveDir: o.archive})
		for _, d := range drops {
			fmt.Fprintf(env.stdout, "dropped %s (%s to %s): %d records, %d kept in the default partition", d.Partition,
				d.From.Format(time.DateOnly), d.To.Format(time.DateOnly), d.Rows-d.Kept, d.Kept)
			if d.Archive != "" {
				fmt.Fprintf(env.stdout, "; archived to %s", d.Archive)
			}
			fmt.Fprintln(env.stdout)
		}
		if err != nil {
			return env.fail(err)
		}
	}
	parts, err := st.Partitions(ctx)
	if err != nil {
		return env.fail(err)
	}
	if len(parts) == 0 {
		fmt.Fprintln(env.stdout, "audit_logs is not partitioned: convert it with auditkit migrate -partition")
		return exitOK
	}
	for _, p := range parts {
		rng := "default"
		if !p.Default {
			rng = p.From.Format(time.DateOnly) + " to " + p.To.Format(time.DateOnly)
		}
		rows := "?"
		if p.EstimatedRows >= 0 {
			rows = fmt.Sprint(p.EstimatedRows)
		}
		fmt.Fprintf(env.stdout, "%-28s %-26s ~%s records, %d kB\n", p.Name, rng, rows, p.Bytes/1024)
	}
	rep, err := st.DefaultPartition(ctx)
	if err != nil {
		return env.fail(err)
	}
	if stray := rep.Rows - rep.Held; stray > 0 {
		fmt.Fprintf(env.stdout, "default partition: %d records no partition covers (%s to %s), %d kept for tenants under legal hold\n",
			stray, rep.Oldest.Format(time.RFC3339), rep.Newest.Format(time.RFC3339), rep.Held)
		return exitFail
	}
	fmt.Fprintf(env.stdout, "default partition: no strays, %d records kept for tenants under legal hold\n", rep.Held)
	return exitOK
}

// reportDefaultPartition prints, for check, what waits in the default partition of audit_logs:
// strays (records no partition covers) make check fail.
func reportDefaultPartition(ctx context.Context, env *cmdEnv, cfg core.Config) int {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	st, err := store.New(pool, store.Options{Schema: cfg.WithDefaults().Schema})
	if err != nil {
		return env.fail(err)
	}
	defer st.Close()
	rep, err := st.DefaultPartition(ctx)
	if err != nil {
		return env.fail(err)
	}
	switch {
	case !rep.Partitioned:
		fmt.Fprintln(env.stdout, "audit_logs is not partitioned (auditkit migrate -partition converts it online)")
	case rep.Rows > rep.Held:
		fmt.Fprintf(env.stdout, "default partition: %d records no partition covers (%s to %s); create partitions for them with schema.CreatePartitions\n",
			rep.Rows-rep.Held, rep.Oldest.Format(time.RFC3339), rep.Newest.Format(time.RFC3339))
		return exitFail
	}
	return exitOK
}
