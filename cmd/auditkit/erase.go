package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/auditkit/auditkit/core"
)

var eraseCommand = &command{
	name:    "erase",
	summary: "erase a data subject of a tenant by destroying its keys (-tenant T -subject S -yes); without -yes, show what would be erased",
	run:     runErase,
	flags: func(fs *flag.FlagSet) any {
		o := &eraseOptions{}
		fs.StringVar(&o.tenant, "tenant", "", "the tenant id (required)")
		fs.StringVar(&o.subject, "subject", "", "the subject: actor:<actor id> or resource:<type>:<id> (required)")
		fs.BoolVar(&o.yes, "yes", false, "erase; without it nothing changes and the command exits 1")
		return o
	},
}

type eraseOptions struct {
	tenant, subject string
	yes             bool
}

// cliActor is the actor of the erasure records the command writes.
var cliActor = core.Actor{ID: "auditkit-cli", Type: core.ActorSystem, Auth: "cli"}

func runErase(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*eraseOptions)
	if o.tenant == "" || o.subject == "" {
		fmt.Fprintf(env.stderr, "%s: -tenant and -subject are required\n", env.flags.Name())
		env.flags.Usage()
		return exitUsage
	}
	if err := core.ValidateTenantID(o.tenant); err != nil {
		return env.fail(fmt.Errorf("-tenant: %w", err))
	}
	if !strings.HasPrefix(o.subject, "actor:") && !strings.HasPrefix(o.subject, "resource:") {
		return env.fail(errors.New("-subject: want actor:<actor id> or resource:<type>:<id>"))
	}
	cfg, pool, err := env.connect(ctx)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	if !o.yes {
		res, err := core.PreviewErasure(ctx, pool, cfg.Schema, o.tenant, o.subject)
		if err != nil {
			return env.fail(err)
		}
		fmt.Fprintf(env.stdout, "would erase subject %q of tenant %q: %d keys %v, %d records hold values under them\n",
			o.subject, o.tenant, res.Keys, res.KeyIDs, res.Records)
		fmt.Fprintf(env.stderr, "%s: nothing erased; add -yes to erase\n", env.flags.Name())
		return exitFail
	}
	res, err := core.EraseSubject(core.WithActor(ctx, cliActor), pool, cfg.Schema, o.tenant, o.subject)
	if err != nil {
		return env.fail(err)
	}
	fmt.Fprintf(env.stdout, "erased subject %q of tenant %q: %d keys %v, %d records hold values now unreadable\n",
		o.subject, o.tenant, res.Keys, res.KeyIDs, res.Records)
	fmt.Fprintf(env.stderr, "the erasure is recorded (action %s) in schema %s of %s\n", core.SubjectErasedAction, cfg.Schema, describe(cfg.DatabaseURL))
	return exitOK
}
