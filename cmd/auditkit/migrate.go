package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/schema"
)

var migrateCommand = &command{
	name:    "migrate",
	summary: "create the audit tables, or apply the migrations they lack",
	run:     runMigrate,
}

func runMigrate(ctx context.Context, env *cmdEnv, _ []string) int {
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
	return exitOK
}
