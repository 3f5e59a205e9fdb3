package entaudit

import (
	"log/slog"

	"github.com/auditkit/auditkit/core"
)

// DefaultMaxRows is the number of rows a bulk update or delete records one by one when
// Options.MaxRows is zero.
const DefaultMaxRows = 1000

// Options configure Hook. The zero value is usable inside HTTP requests whose context carries a
// core.Collector; everywhere else records need a Writer (or InTransaction).
type Options struct {
	// Writer receives the records of changes made with a context that carries no request
	// Collector, once the change is committed (core.Dispatch). With a Collector in the context the
	// records join the request instead, and the HTTP middleware writes them. Nil with neither a
	// Collector nor InTransaction means records are lost, and each loss is logged.
	Writer *core.Writer
	// InTransaction writes the records with TxWriter inside the transaction that made the change,
	// just before it commits, so that they exist if and only if the change committed. It costs one
	// INSERT per transaction; a failed INSERT rolls the transaction back and Commit returns the
	// error. Records written this way take actor, tenant and request id from the context
	// (core.WithActor ...) and do not join a request Collector.
	InTransaction bool
	// TxWriter writes the records when InTransaction is set. Nil means core.NewTxWriter("", nil):
	// audit_logs in the public schema, default redaction.
	TxWriter *core.TxWriter
	// MaxRows caps the rows that one bulk update or delete records one by one. Past the cap the
	// statement gets one summary record with its filter, the number of affected rows and the ids
	// that were not itemised. Zero or less means DefaultMaxRows.
	MaxRows int
	// KeepUnchanged records updates that changed no column and no edge. By default they are
	// dropped.
	KeepUnchanged bool
	// IgnoreColumns are columns (such as updated_at) that are left out of diffs: they stay in the
	// images, but an update that changes only them is unchanged.
	IgnoreColumns []string
	// Logger receives records that could not be delivered after their change committed. Nil
	// means slog.Default().
	Logger *slog.Logger
}
