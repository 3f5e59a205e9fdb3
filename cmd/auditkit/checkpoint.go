package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
)

var checkpointCommand = &command{
	name:    "checkpoint",
	summary: "sign a checkpoint of every chain that moved, now, with AUDIT_SIGNING_KEY (-webhook URL to push them)",
	run:     runCheckpoint,
	flags: func(fs *flag.FlagSet) any {
		return fs.String("webhook", "", "POST every new checkpoint as JSON to this URL (default: AUDIT_CHECKPOINT_WEBHOOK)")
	},
}

func runCheckpoint(ctx context.Context, env *cmdEnv, _ []string) int {
	webhook := env.opts.(*string)
	cfg, err := env.config()
	if err != nil {
		return env.fail(err)
	}
	priv, err := cfg.ChainSigningKey()
	if err != nil {
		return env.fail(err)
	}
	if priv == nil {
		return env.fail(errors.New("no signing key: set AUDIT_SIGNING_KEY to an Ed25519 private key (PEM text or a file)"))
	}
	url := cfg.Chain.CheckpointWebhook
	if *webhook != "" {
		if msg := core.WebhookURLProblem(*webhook); msg != "" {
			return env.fail(fmt.Errorf("-webhook: %s", msg))
		}
		url = *webhook
	}
	cfg = cfg.WithDefaults()
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	cps, err := core.CreateCheckpoints(ctx, pool, cfg.Schema, priv, time.Now())
	for _, cp := range cps {
		fmt.Fprintf(env.stdout, "%s chain=%q seq=%d row_hash=%s key_id=%s\n", cp.CreatedAt.Format(time.RFC3339Nano),
			cp.TenantKey, cp.Seq, hex.EncodeToString(cp.RowHash[:]), cp.KeyID)
	}
	if err != nil {
		return env.fail(err)
	}
	fmt.Fprintf(env.stderr, "%d checkpoints signed with key %s in schema %s of %s\n", len(cps), core.KeyID(priv.Public().(ed25519.PublicKey)), cfg.Schema, describe(cfg.DatabaseURL))
	if url == "" {
		return exitOK
	}
	client := &http.Client{Timeout: 10 * time.Second}
	failed := 0
	for _, cp := range cps {
		if err := core.SendCheckpoint(ctx, client, url, cp); err != nil {
			failed++
			fmt.Fprintf(env.stderr, "%s: chain %q seq %d: %v\n", env.flags.Name(), cp.TenantKey, cp.Seq, err)
		}
	}
	if failed > 0 {
		return env.fail(fmt.Errorf("%d of %d checkpoints were not delivered to the webhook (they are stored in audit_checkpoints)", failed, len(cps)))
	}
	return exitOK
}
