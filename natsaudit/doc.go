// Package natsaudit carries audit records from many application processes to PostgreSQL through
// a NATS JetStream stream.
//
// In each application, a Sink given to core.OpenWriter publishes every record the writer hands it
// to the stream, on a subject of its tenant (see Subject), with the record id as the message id:
// JetStream's duplicate window drops a record published again (a retried batch, a spool replayed
// after a crash). The writer's spool keeps the records while NATS cannot be reached.
//
// In one or more ingest processes (the auditkit ingest command, or Ingest), a durable pull
// consumer reads the stream in batches and stores each batch with core's PostgreSQL sink (COPY,
// hash-chained unless disabled), acknowledging the messages only after the batch's transaction
// committed. A crash anywhere loses nothing (unacknowledged messages are delivered again) and
// duplicates nothing (the PostgreSQL sink skips ids already stored). Every ingest process that
// names the same durable consumer takes its share of the messages.
//
// Messages carry the record's row in core's binary row encoding (core.AppendRecordRow): the row
// is redacted before it is published, and decodes to exactly the values the PostgreSQL sink
// copies, JSON documents byte for byte, so a record stored through the stream is the record the
// writer would have stored directly. Personal values are encrypted (core.PostgresSinkOptions.PII)
// by the ingest process, when it stores them: the stream holds them as the application redacted
// them, so give it the access control and retention the audit data needs.
//
// A Live follows the same subjects for the read side's live stream (ginaudit.APIOptions.Live):
// each stream is an ordered, ephemeral consumer of its tenant's subject (prefix + ".>" for the
// all-tenants scope) from the stream's next message. Each message is decoded into the Record the
// read API returns for the stored row (store.RecordOf: JSON documents as PostgreSQL's jsonb
// writes them), checked against the stream's tenant and filter in Go (store.Scope.Contains,
// store.Filter.Match), and delivered without blocking: a consumer that falls behind is ended
// with store.ErrLagged, a tenant suspended in the registry ends its users' streams. Events are
// then byte for byte those of the PostgreSQL source, but arrive when the record is published,
// before it is stored. Full-text search (q) is PostgreSQL's and refused; records written to
// PostgreSQL without passing through the stream are not seen.
//
// Start a NATS server with JetStream, for example:
//
//	nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
package natsaudit
