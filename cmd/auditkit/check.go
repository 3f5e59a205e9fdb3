package main

import (
	"context"
	"fmt"

	"github.com/auditkit/auditkit/core"
)

var checkCommand = &command{
	name:    "check",
	summary: "check, as core.Open does, that a writer can write to the audit tables",
	run:     runCheck,
}

func runCheck(ctx context.Context, env *cmdEnv, _ []string) int {
	cfg, err := env.config()
	if err != nil {
		return env.fail(err)
	}
	if err := core.CheckSchema(ctx, cfg); err != nil {
		return env.fail(err)
	}
	fmt.Fprintf(env.stdout, "schema %s in %s: ready (version %d)\n", cfg.WithDefaults().Schema, describe(cfg.DatabaseURL), core.SchemaVersion)
	return reportDefaultPartition(ctx, env, cfg)
}
