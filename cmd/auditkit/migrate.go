package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/schema"
)

var migrateCommand = &command{
	name:    "migrate",
	summary: "create the audit tables, or apply the migrations they lack; -partition converts a table with records to partitions, online",
	run:     runMigrate,
	flags: func(fs *flag.FlagSet) any {
		o := &migrateOptions{}
		fs.BoolVar(&o.partition, "partition", false, "after migrating, convert an audit_logs that holds records into the partitioned table, online and resumably (give -timeout room: a stopped run resumes when run again)")
		fs.IntVar(&o.batch, "batch", 10000, "with -partition: records copied per transaction")
		fs.DurationVar(&o.lockTimeout, "lock-timeout", time.Second, "with -partition: the longest the conversion waits for a lock on audit_logs (writers queue behind it); retried")
		fs.BoolVar(&o.keepOld, "keep-old", false, "with -partition: keep the former table as audit_logs_unpartitioned")
		fs.StringVar(&o.period, "period", "", "set the length of the partitions created from now on: day, week, month or year")
		fs.IntVar(&o.premake, "ahead", 0, "with -period: how many periods after the current one to create ahead (default 3)")
		return o
	},
}

type migrateOptions struct {
	partition, keepOld bool
	batch, premake     int
	lockTimeout        time.Duration
	period             string
}

func runMigrate(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*migrateOptions)
	if o.batch <= 0 || o.lockTimeout <= 0 || o.premake < 0 || (o.premake > 0 && o.period == "") {
		fmt.Fprintf(env.stderr, "%s: -batch and -lock-timeout must be positive, and -ahead needs -period\n", env.flags.Name())
		env.flags.Usage()
		return exitUsage
	}
	cfg, err := env.config()
	if err != nil {
		return env.fail(err)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	res, err := schema.Migrate(ctx, pool, schema.WithSchema(cfg.Schema))
	if err != nil {
		return env.fail(fmt.Errorf("%s: %w", describe(cfg.DatabaseURL), err))
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(env.stdout, "schema %s in %s: up to date\n", res.Schema, describe(cfg.DatabaseURL))
	} else {
		applied := make([]string, len(res.Applied))
		for i, v := range res.Applied {
			applied[i] = fmt.Sprint(v)
		}
		fmt.Fprintf(env.stdout, "schema %s in %s: applied migration %s\n", res.Schema, describe(cfg.DatabaseURL), strings.Join(applied, ", "))
	}
	fmt.Fprintf(env.stdout, "current version: %d\n", res.Current)
	if o.period != "" {
		if o.premake == 0 {
			o.premake = 3
		}
		if err := schema.SetPartitioning(ctx, pool, o.period, o.premake, schema.WithSchema(cfg.Schema)); err != nil {
			return env.fail(err)
		}
		fmt.Fprintf(env.stdout, "partitions from now on: one per %s, %d ahead\n", o.period, o.premake)
	}
	if o.partition {
		return runPartition(ctx, env, pool, cfg.Schema, o)
	}
	if ok, err := schema.Partitioned(ctx, pool, schema.WithSchema(cfg.Schema)); err == nil && !ok {
		fmt.Fprintln(env.stdout, "audit_logs holds records and is not partitioned: convert it online with auditkit migrate -partition")
	}
	return exitOK
}
