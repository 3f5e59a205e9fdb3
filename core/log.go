package core

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Entry is a manual audit record, for jobs, consumers and other code outside HTTP requests.
type Entry struct {
	Action       string // required, e.g. "invoice.sent" or "tenant.provisioned"
	Kind         Kind   // default KindCustom
	Severity     Severity
	ResourceType string
	ResourceID   string
	Actor        Actor  // when zero, taken from the context (WithActor)
	Tenant       Tenant // when zero, taken from the context (WithTenant)
	RequestID    string // when empty, taken from the context (WithRequestID)
	Before       map[string]any
	After        map[string]any
	Diff         map[string]Change
	Metadata     map[string]any
	OccurredAt   time.Time // default now
}

// ErrNoAction is returned by Log for an entry without an action.
var ErrNoAction = errors.New("auditkit: entry has no action")

// Record converts the entry into a record, taking missing identity from ctx.
func (e Entry) Record(ctx context.Context) (*Record, error) {
	if strings.TrimSpace(e.Action) == "" {
		return nil, ErrNoAction
	}
	kind := e.Kind
	if kind == "" {
		kind = KindCustom
	}
	r := &Record{
		OccurredAt:   e.OccurredAt,
		Kind:         kind,
		Action:       e.Action,
		Severity:     e.Severity,
		Tenant:       e.Tenant,
		Actor:        e.Actor,
		ResourceType: e.ResourceType,
		ResourceID:   e.ResourceID,
		Before:       e.Before,
		After:        e.After,
		Diff:         e.Diff,
		RequestID:    e.RequestID,
		Metadata:     e.Metadata,
	}
	StampFromContext(ctx, r)
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Log enqueues a manual audit record on w and returns its id. It does not wait for the write; use
// w.Flush when the caller must know the record is stored, or LogTx to store it atomically with the
// caller's own change. When ctx carries a request Collector, the record joins that request instead.
func Log(ctx context.Context, w *Writer, e Entry) (uuid.UUID, error) {
	r, err := e.Record(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	r.normalize(time.Now())
	if err := Dispatch(ctx, w, r); err != nil {
		return uuid.Nil, err
	}
	return r.ID, nil
}

// Execer runs a statement: *sql.DB, *sql.Tx, *sql.Conn, a GORM ConnPool and ent's drivers with
// the sql/execquery feature all satisfy it. Use PgxExecer for pgx.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// PgxExecer adapts a pgx connection, pool or transaction to Execer.
func PgxExecer(db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}) Execer {
	return pgxExecer{db}
}

type pgxExecer struct {
	db interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
}

func (p pgxExecer) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	tag, err := p.db.Exec(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return rowsResult(tag.RowsAffected()), nil
}

type rowsResult int64

func (r rowsResult) LastInsertId() (int64, error) { return 0, errors.New("not supported") }
func (r rowsResult) RowsAffected() (int64, error) { return int64(r), nil }

// TxWriter writes records synchronously with INSERT, through the caller's connection or
// transaction: the records commit or roll back with the caller's change. It is the slow, atomic
// alternative to Writer, for records that must exist if and only if a change committed.
type TxWriter struct {
	redactor *Redactor
	prefix   string // INSERT INTO … (cols) VALUES
	casts    []string
}

// NewTxWriter returns a TxWriter for audit_logs in schema ("" means public), redacting with r
// (nil means NewRedactor(nil, nil)).
func NewTxWriter(schema string, r *Redactor) *TxWriter {
	if schema == "" {
		schema = "public"
	}
	if r == nil {
		r = NewRedactor(nil, nil)
	}
	q := pgx.Identifier{schema}.Sanitize()
	// Parameters travel as text with explicit casts, so any driver (pgx stdlib, lib/pq, ent's
	// drivers) can bind them.
	casts := []string{"uuid", "timestamptz", q + ".audit_kind", "text", q + ".audit_severity",
		"text", "text",
		"text", q + ".audit_actor_type", "text", "text",
		"text", "text",
		"jsonb", "jsonb", "jsonb",
		"text", "text", "text", "text", "jsonb", "integer", "bigint",
		"inet", "text", "jsonb", "jsonb", "jsonb", "smallint"}
	return &TxWriter{
		redactor: r,
		prefix:   `INSERT INTO ` + q + `.audit_logs (` + strings.Join(Columns, ", ") + `) VALUES `,
		casts:    casts,
	}
}

// Write validates, normalises, redacts and inserts recs with one statement on db.
func (t *TxWriter) Write(ctx context.Context, db Execer, recs ...*Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := time.Now()
	var sb strings.Builder
	sb.WriteString(t.prefix)
	args := make([]any, 0, len(recs)*len(Columns))
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
		r.normalize(now)
		vals, err := rowValues(t.redactor.Record(r))
		if err != nil {
			return fmt.Errorf("auditkit: %w", err)
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j, v := range vals {
			if j > 0 {
				sb.WriteString(", ")
			}
			args = append(args, textArg(v))
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(len(args)))
			sb.WriteString("::")
			sb.WriteString(t.casts[j])
		}
		sb.WriteByte(')')
	}
	if _, err := db.ExecContext(ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("auditkit: inserting %d audit records: %w", len(recs), err)
	}
	return nil
}

// textArg renders a COPY value as the text form PostgreSQL parses for its cast.
func textArg(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return x
	case []byte:
		if x == nil {
			return nil
		}
		return string(x)
	case uuid.UUID:
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case int16:
		return strconv.Itoa(int(x))
	case int32:
		return strconv.Itoa(int(x))
	case int64:
		return strconv.FormatInt(x, 10)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// LogTx writes a manual audit record synchronously through db (typically the caller's
// transaction), so that it commits or rolls back with the caller's change, and returns its id.
func LogTx(ctx context.Context, db Execer, t *TxWriter, e Entry) (uuid.UUID, error) {
	r, err := e.Record(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	if err := t.Write(ctx, db, r); err != nil {
		return uuid.Nil, err
	}
	return r.ID, nil
}
