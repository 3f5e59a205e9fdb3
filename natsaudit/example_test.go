package natsaudit_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/natsaudit"
)

// An application publishes its audit records to JetStream through a writer with a spool, which
// keeps them on disk while NATS cannot be reached.
func ExampleSink() {
	ctx := context.Background()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if _, err := natsaudit.EnsureStream(ctx, nc, natsaudit.StreamOptions{}); err != nil {
		log.Fatal(err)
	}
	sink, err := natsaudit.NewSink(nc, natsaudit.SinkOptions{})
	if err != nil {
		log.Fatal(err)
	}
	w, err := core.OpenWriter(sink, core.WriterOptions{
		Spool:           core.SpoolOptions{Dir: "/var/lib/myapp/audit-spool"},
		RecheckInterval: time.Second, // how soon a write is tried again while NATS is down
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}}); err != nil {
		log.Print(err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		log.Print(err)
	}
}

// An ingest process stores the stream's records in PostgreSQL until it is interrupted; run as
// many as the database takes, with the same durable name.
func ExampleIngest() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	pool, err := pgxpool.New(ctx, os.Getenv("AUDIT_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	err = natsaudit.Ingest(ctx, natsaudit.IngestOptions{
		Conn: nc,
		Sink: core.NewPostgresSink(pool, core.PostgresSinkOptions{}),
	})
	if err != nil {
		log.Fatal(err)
	}
}
