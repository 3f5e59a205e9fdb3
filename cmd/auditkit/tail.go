package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core/store"
)

var tailCommand = &command{
	name:    "tail",
	summary: "follow new audit records live (-tenant ID for one tenant, -format json), until Ctrl-C",
	run:     runTail,
	flags: func(fs *flag.FlagSet) any {
		o := &tailOptions{}
		fs.StringVar(&o.tenant, "tenant", "", "follow only this tenant's records (default: every tenant)")
		fs.StringVar(&o.format, "format", "text", "text (one line per record) or json (one object per line)")
		return o
	},
}

type tailOptions struct {
	tenant, format string
}

func runTail(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*tailOptions)
	if o.format != "text" && o.format != "json" {
		fmt.Fprintf(env.stderr, "%s: -format %q: want text or json\n", env.flags.Name(), o.format)
		return exitUsage
	}
	sc := store.AllTenantsScope()
	if o.tenant != "" {
		if err := store.ValidateTenantID("-tenant", o.tenant); err != nil {
			fmt.Fprintf(env.stderr, "%s: %v\n", env.flags.Name(), err)
			return exitUsage
		}
		sc = store.TenantScope(o.tenant)
	}
	cfg, err := env.config()
	if err != nil {
		return env.fail(err)
	}
	cfg = cfg.WithDefaults()

	// tail runs until interrupted: -timeout ends it only when given explicitly.
	timeoutSet := false
	env.flags.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	unbounded, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			if timeoutSet || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel()
			}
		case <-unbounded.Done():
		}
	}()
	follow, stop := signal.NotifyContext(unbounded, os.Interrupt, syscall.SIGTERM)
	defer stop()

	pool, err := pgxpool.New(follow, cfg.DatabaseURL)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	st, err := store.New(pool, store.Options{Schema: cfg.Schema, Logger: cfg.Logger})
	if err != nil {
		return env.fail(err)
	}
	defer st.Close()
	sub, err := st.Subscribe(follow, sc, store.Filter{})
	if err != nil {
		return env.fail(err)
	}
	who := "every tenant"
	if o.tenant != "" {
		who = "tenant " + o.tenant
	}
	fmt.Fprintf(env.stderr, "following %s in schema %s of %s; Ctrl-C ends\n", who, cfg.Schema, describe(cfg.DatabaseURL))
	enc := json.NewEncoder(env.stdout)
	for rec := range sub.C {
		if o.format == "json" {
			if err := enc.Encode(rec); err != nil {
				return env.fail(err)
			}
			continue
		}
		tenant := rec.TenantID
		if tenant == "" {
			tenant = "-"
		}
		actor := rec.ActorID
		if actor == "" {
			actor = string(rec.ActorType)
		}
		resource := rec.ResourceType
		if rec.ResourceID != "" {
			resource += "/" + rec.ResourceID
		}
		if resource == "" {
			resource = "-"
		}
		fmt.Fprintf(env.stdout, "%s %s %s %s %s\n", rec.OccurredAt.UTC().Format(time.RFC3339Nano), tenant, actor, rec.Action, resource)
	}
	if err := sub.Err(); err != nil && follow.Err() == nil {
		return env.fail(err)
	}
	return exitOK
}
