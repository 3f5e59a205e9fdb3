package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/natsaudit"
)

var ingestCommand = &command{
	name:    "ingest",
	summary: "store the audit records of a NATS JetStream stream in the database, until Ctrl-C (-drain: until the stream is ingested)",
	run:     runIngest,
	flags: func(fs *flag.FlagSet) any {
		o := &ingestOptions{}
		fs.StringVar(&o.natsURL, "nats-url", "", "NATS server URL(s), comma-separated (default: NATS_URL, else "+nats.DefaultURL+")")
		fs.StringVar(&o.stream, "stream", natsaudit.DefaultStream, "JetStream stream to read")
		fs.StringVar(&o.durable, "durable", natsaudit.DefaultDurable, "durable consumer name; every ingest process with the same name shares the work")
		fs.StringVar(&o.prefix, "subject-prefix", natsaudit.DefaultSubjectPrefix, "subjects read: PREFIX.>")
		fs.IntVar(&o.batch, "batch", 500, "most records stored in one transaction")
		fs.IntVar(&o.workers, "workers", 2, "batches stored at once")
		fs.DurationVar(&o.ackWait, "ack-wait", 30*time.Second, "how long a crashed ingest process holds its messages before they are delivered again")
		fs.DurationVar(&o.progress, "progress", 10*time.Second, "log progress this often (0: never)")
		fs.BoolVar(&o.drain, "drain", false, "exit once every message of the stream is stored")
		fs.BoolVar(&o.create, "create-stream", false, "create the stream, or update its limits, first")
		fs.IntVar(&o.replicas, "replicas", 1, "with -create-stream: servers keeping each message (3 in a three-node cluster)")
		fs.DurationVar(&o.maxAge, "max-age", 7*24*time.Hour, "with -create-stream: drop messages older than this")
		fs.Int64Var(&o.maxBytes, "max-bytes", 0, "with -create-stream: the stream's storage bound, refusing new messages beyond it (0: none)")
		fs.DurationVar(&o.dupWindow, "duplicate-window", 2*time.Minute, "with -create-stream: how long a message id is remembered to drop a record published again")
		return o
	},
}

type ingestOptions struct {
	natsURL, stream, durable, prefix string
	batch, workers, replicas         int
	ackWait, progress, maxAge        time.Duration
	dupWindow                        time.Duration
	maxBytes                         int64
	drain, create                    bool
}

func runIngest(ctx context.Context, env *cmdEnv, _ []string) int {
	o := env.opts.(*ingestOptions)
	switch {
	case o.batch <= 0:
		return env.usageError("-batch %d: want a positive number", o.batch)
	case o.workers <= 0:
		return env.usageError("-workers %d: want a positive number", o.workers)
	case o.replicas <= 0:
		return env.usageError("-replicas %d: want a positive number", o.replicas)
	case o.ackWait < time.Second:
		return env.usageError("-ack-wait %s: want at least 1s", o.ackWait)
	case o.progress < 0:
		return env.usageError("-progress %s: want 0 or more", o.progress)
	}
	natsURL := o.natsURL
	if natsURL == "" {
		natsURL = lookupEnv(env.environ, "NATS_URL")
	}
	if natsURL == "" {
		natsURL = nats.DefaultURL
	}
	cfg, err := env.config()
	if err != nil {
		return env.fail(err)
	}
	cfg = cfg.WithDefaults()
	pii, err := cfg.PIICipher()
	if err != nil {
		return env.fail(err)
	}

	// ingest runs until interrupted (or, with -drain, done): -timeout ends it only when given.
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
	run, stop := signal.NotifyContext(unbounded, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := core.CheckSchema(run, cfg); err != nil {
		return env.fail(err)
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, nil))
	closed := make(chan struct{})
	nc, err := nats.Connect(natsURL, nats.Name("auditkit ingest"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the connection is closed here
				logger.Warn("auditkit: disconnected from NATS; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("auditkit: reconnected to NATS", "server", c.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return env.fail(fmt.Errorf("NATS at %s: %w", natsURL, err))
	}
	defer func() {
		// The connection's callbacks write to stderr: wait for the last before returning.
		nc.Close()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
		}
	}()
	if o.create {
		if _, err := natsaudit.EnsureStream(run, nc, natsaudit.StreamOptions{Name: o.stream, SubjectPrefix: o.prefix, Replicas: o.replicas,
			DuplicateWindow: o.dupWindow, MaxAge: o.maxAge, MaxBytes: o.maxBytes}); err != nil {
			return env.fail(err)
		}
	}
	pool, err := pgxpool.New(run, cfg.DatabaseURL)
	if err != nil {
		return env.fail(err)
	}
	defer pool.Close()
	progress := o.progress
	if progress == 0 {
		progress = -1
	}
	in, err := natsaudit.NewIngester(run, natsaudit.IngestOptions{
		Conn:             nc,
		Sink:             core.NewPostgresSink(pool, core.PostgresSinkOptions{Schema: cfg.Schema, DisableChain: cfg.Chain.Disabled, PII: pii}),
		Stream:           o.stream,
		Durable:          o.durable,
		SubjectPrefix:    o.prefix,
		BatchSize:        o.batch,
		Workers:          o.workers,
		AckWait:          o.ackWait,
		ProgressInterval: progress,
		Logger:           logger,
	})
	if err != nil {
		return env.fail(err)
	}
	logger.Info("auditkit: ingesting", "stream", o.stream, "consumer", o.durable, "nats", nc.ConnectedUrlRedacted(),
		"database", describe(cfg.DatabaseURL), "schema", cfg.Schema, "chained", !cfg.Chain.Disabled)
	work, done := context.WithCancel(run)
	defer done()
	if o.drain {
		go func() {
			defer done()
			for sleepCtx(work, 200*time.Millisecond) {
				b, err := in.Backlog(work)
				if err == nil && b.Empty() {
					return
				}
			}
		}()
	}
	err = in.Run(work)
	st := in.Stats()
	fmt.Fprintf(env.stdout, "stored %d records in %d batches (%d delivered again, %d failed)\n", st.Written, st.Batches, st.Redelivered, st.Failed)
	if err != nil {
		return env.fail(err)
	}
	if o.drain && run.Err() != nil {
		return env.fail(fmt.Errorf("stopped before the stream was ingested: %w", run.Err()))
	}
	if st.Failed > 0 {
		return env.fail(fmt.Errorf("%d messages could not be stored (logged above with their stream sequence)", st.Failed))
	}
	return exitOK
}

// usageError reports a bad flag value and returns exitUsage.
func (env *cmdEnv) usageError(format string, args ...any) int {
	fmt.Fprintf(env.stderr, "%s: %s\n", env.flags.Name(), fmt.Sprintf(format, args...))
	return exitUsage
}

// lookupEnv returns the value of the variable name in environ, or "".
func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// sleepCtx waits d, or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
