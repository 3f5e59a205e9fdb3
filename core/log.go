package core

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Entry is a manual audit record, for jobs, consumers and other code outside HTTP requests.
type Entry struct {
	Action       string            // required, e.g. "invoice.sent" or "tenant.provisioned"
	Kind         Kind              // default KindCustom
	Severity     Severity          // default SeverityInfo
	ResourceType string            // what was acted on: a table, an entity or a domain object
	ResourceID   string            // its identifier
	Actor        Actor             // when zero, taken from the context (WithActor)
	Tenant       Tenant            // when zero, taken from the context (WithTenant); must follow ValidateTenant
	RequestID    string            // when empty, taken from the context (WithRequestID)
	IP           netip.Addr        // client address; when invalid, the context's request collector's
	Before       map[string]any    // the object before the change, if any; redacted when written
	After        map[string]any    // the object after the change, if any; redacted when written
	Diff         map[string]Change // the changed fields, if any; redacted when written
	Metadata     map[string]any    // free-form details; redacted when written
	OccurredAt   time.Time         // default now
}

// ErrNoAction is returned by Log for an entry without an action.
var ErrNoAction = errors.New("auditkit: entry has no action")

// Record converts the entry into a record, taking missing identity from ctx. An entry whose
// Tenant breaks the tenant id rule (ValidateTenant) is refused, as WithTenant refuses it: the error
// wraps ErrInvalidRecord and ErrInvalidTenant, and nothing is recorded.
func (e Entry) Record(ctx context.Context) (*Record, error) {
	if strings.TrimSpace(e.Action) == "" {
		return nil, ErrNoAction
	}
	if err := ValidateTenant(e.Tenant); err != nil {
		return nil, fmt.Errorf("%w: entry tenant: %w", ErrInvalidRecord, err)
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
		IP:           e.IP,
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
//
// Under FailClosed (w's policy, or ctx's: WithFailurePolicy) room for the record is reserved first,
// and a record that cannot be accepted is reported with an error wrapping ErrAuditUnavailable, so
// that the caller can refuse the work it was about to do. Under FailOpen the error of a refused
// record is returned as it is (ErrQueueFull, ErrClosed) and the refusal is counted and reported.
func Log(ctx context.Context, w *Writer, e Entry) (uuid.UUID, error) {
	r, err := e.Record(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	r.normalize(time.Now())
	res, err := Admit(ctx, w, 1)
	if err != nil {
		return uuid.Nil, err
	}
	if err := DispatchReserved(ctx, w, res, r); err != nil {
		return uuid.Nil, err
	}
	return r.ID, nil
}

// Execer runs a statement: *sql.DB, *sql.Tx, *sql.Conn, a GORM ConnPool and ent's drivers with
// the sql/execquery feature all satisfy it. Use PgxExecer for pgx.
type Execer interface {
	// ExecContext runs query with args, as database/sql does.
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

// Querier is an Execer that can also read rows: *sql.DB, *sql.Tx, *sql.Conn and GORM's ConnPool
// are Queriers, and so is what PgxExecer returns for a pgx connection, pool or transaction.
// TxWriter needs one (or a RowsQuerier) to chain the records it writes.
type Querier interface {
	Execer
	// QueryContext runs query with args and returns its rows, as database/sql does.
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// RowsQuerier is an Execer that reads rows through a driver of its own, for adapters that cannot
// return *sql.Rows (ent's drivers fill an ent sql.Rows, which satisfies Rows).
type RowsQuerier interface {
	Execer
	// QueryRows runs query with args and returns its rows.
	QueryRows(ctx context.Context, query string, args ...any) (Rows, error)
}

// Rows is what a RowsQuerier returns: *sql.Rows satisfies it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// readChainHeads runs the lock statement q with arg on db and records the heads it returns in c.
// It reports false, without running anything, when db cannot read rows.
func readChainHeads(ctx context.Context, db Execer, q, arg string, c *chainer) (bool, error) {
	var (
		rows Rows
		err  error
	)
	switch d := db.(type) {
	case pgxExecer:
		pq, ok := d.db.(interface {
			Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		})
		if !ok {
			return false, nil
		}
		prows, err := pq.Query(ctx, q, arg)
		if err != nil {
			return true, err
		}
		var (
			key  string
			seq  int64
			hash []byte
		)
		_, err = pgx.ForEachRow(prows, []any{&key, &seq, &hash}, func() error { return c.setHead(key, seq, hash) })
		return true, err
	case interface {
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}:
		var sr *sql.Rows
		if sr, err = d.QueryContext(ctx, q, arg); err == nil {
			rows = sr
		}
	case RowsQuerier:
		rows, err = d.QueryRows(ctx, q, arg)
	default:
		return false, nil
	}
	if err != nil {
		return true, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key  string
			seq  int64
			hash []byte
		)
		if err := rows.Scan(&key, &seq, &hash); err != nil {
			return true, err
		}
		if err := c.setHead(key, seq, hash); err != nil {
			return true, err
		}
	}
	return true, rows.Err()
}

// TxWriter writes records synchronously with one INSERT, through the caller's connection or
// transaction: the records commit or roll back with the caller's change. It is the slower, atomic
// alternative to Writer, for records that must exist if and only if a change committed.
//
// Through a Querier, a RowsQuerier or PgxExecer, TxWriter chains the records as the sink does
// (docs/chain.md): it locks the chain heads of the records' tenants in the caller's transaction,
// links the records and moves the heads. The locks are held until the caller's transaction
// ends, so every other write to those tenants' chains (other transactions and the Writer's
// batches alike) waits for it to commit or roll back: keep such transactions short. Under
// REPEATABLE READ or SERIALIZABLE, a concurrent append to the same chain fails the caller's
// transaction with a serialization error, to be retried as any other. Through an Execer that
// cannot read rows, and after WithoutChain, records are written outside every chain.
type TxWriter struct {
	redactor    *Redactor
	insert      string
	chained     bool
	lock        string // chainSQL.lock with the tenant keys as a JSON array
	chainInsert string // the INSERT with the chain columns, then the heads moved
	pii         *PIICipher
	piiSQL      piiSQL
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
	table := pgx.Identifier{schema, "audit_logs"}.Sanitize()
	heads := pgx.Identifier{schema, "audit_chain_heads"}.Sanitize()
	cols := strings.Join(Columns, ", ")
	chainCols := cols + ", " + strings.Join(ChainColumns, ", ")
	// The whole batch travels as one jsonb parameter that PostgreSQL turns into rows of the
	// table's own type: one statement and one parameter whatever the batch size, and any driver
	// (pgx, pgx stdlib, lib/pq, ent's drivers) can bind a string.
	return &TxWriter{
		redactor: r,
		insert: `INSERT INTO ` + table + ` (` + cols + `) SELECT ` + cols +
			` FROM jsonb_populate_recordset(NULL::` + table + `, $1::jsonb)`,
		chained: true,
		lock: `INSERT INTO ` + heads + ` AS h (tenant_key, seq, row_hash) ` +
			`SELECT u.k, 0, '\x` + hex.EncodeToString(zeroHash[:]) + `'::bytea ` +
			`FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS u(k, o) ORDER BY u.o ` +
			`ON CONFLICT (tenant_key) DO UPDATE SET updated_at = h.updated_at ` +
			`RETURNING h.tenant_key, h.seq, h.row_hash`,
		chainInsert: `WITH ins AS (INSERT INTO ` + table + ` (` + chainCols + `) SELECT ` + chainCols +
			` FROM jsonb_populate_recordset(NULL::` + table + `, $1::jsonb)) ` +
			`UPDATE ` + heads + ` AS h SET seq = u.seq, row_hash = decode(u.hash, 'hex'), updated_at = now() ` +
			`FROM jsonb_to_recordset($2::jsonb) AS u(k text, seq bigint, hash text) WHERE h.tenant_key = u.k`,
		piiSQL: newPIISQL(schema),
	}
}

// WithPII returns a copy of t that stores personal values encrypted with p, as the sink does
// (PostgresSinkOptions.PII): the subject keys are read or created in the caller's transaction,
// which db must be able to read rows from (a Querier, a RowsQuerier or PgxExecer). Nil p stores
// them as they are.
func (t *TxWriter) WithPII(p *PIICipher) *TxWriter {
	c := *t
	c.pii = p
	return &c
}

// WithoutChain returns a copy of t that writes records outside every hash chain, taking no lock.
func (t *TxWriter) WithoutChain() *TxWriter {
	c := *t
	c.chained = false
	return &c
}

// Write validates, normalises, redacts and inserts recs with one statement on db (when chained,
// one more statement first, which locks the chain heads).
func (t *TxWriter) Write(ctx context.Context, db Execer, recs ...*Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := time.Now()
	rows := make([][]any, len(recs))
	// Redacted and encoded in one pass, as the Writer does (see rowBatch); with the chain and
	// nothing to encrypt, the documents' jsonb texts are written on the way, for the chain's fields.
	rb := newRowBatch(t.redactor, len(recs))
	canon := t.chained && t.pii == nil
	if canon {
		rb.chain()
	}
	reds := make([]Record, len(recs))
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
		r.normalize(now)
		vals, err := rb.rowOf(r, &reds[i])
		if err != nil {
			return fmt.Errorf("auditkit: %w", err)
		}
		// Stored as the Writer stores it, the instant the chain hashes.
		vals[1] = truncateMicro(vals[1].(time.Time))
		rows[i] = vals
	}
	if t.pii != nil {
		query := execerQuery(db)
		if query == nil {
			return errors.New("auditkit: encrypting personal values needs an Execer that can read rows (a Querier, a RowsQuerier or PgxExecer)")
		}
		var err error
		if rows, err = t.pii.encryptRows(ctx, query, t.piiSQL, rows); err != nil {
			return fmt.Errorf("auditkit: encrypting the personal values of %d audit records: %w", len(recs), err)
		}
	}
	var c *chainer
	var fields []ChainFields
	if t.chained {
		fields = make([]ChainFields, len(rows))
		for i, vals := range rows {
			var c *rowCanon
			if canon {
				c = reds[i].canon
			}
			var err error
			if fields[i], err = prepareChainWith(vals, c); err != nil {
				return fmt.Errorf("auditkit: chaining audit record %s: %w", recs[i].ID, err)
			}
		}
		keys := chainKeys(rows)
		arg := make([]byte, 0, 16*len(keys))
		arg = append(arg, '[')
		for i, k := range keys {
			if i > 0 {
				arg = append(arg, ',')
			}
			arg = appendJSONString(arg, k)
		}
		arg = append(arg, ']')
		c = newChainer(len(rows))
		ok, err := readChainHeads(ctx, db, t.lock, string(arg), c)
		if err != nil {
			return fmt.Errorf("auditkit: locking the hash chain heads of %d audit records: %w", len(recs), err)
		}
		if !ok {
			c = nil
		}
	}
	buf := make([]byte, 0, 1024*len(recs))
	buf = append(buf, '[')
	for i, vals := range rows {
		if i > 0 {
			buf = append(buf, ',')
		}
		if c == nil {
			buf = appendRowJSON(buf, vals)
			continue
		}
		linked, err := c.link(vals, &fields[i])
		if err != nil {
			return fmt.Errorf("auditkit: chaining audit record %s: %w", recs[i].ID, err)
		}
		buf = appendRowJSON(buf, vals)
		n := len(vals)
		buf = appendChainJSON(buf, linked[n].(int64), linked[n+1].([]byte), linked[n+2].([]byte))
	}
	buf = append(buf, ']')
	if c == nil {
		if _, err := db.ExecContext(ctx, t.insert, string(buf)); err != nil {
			return fmt.Errorf("auditkit: inserting %d audit records: %w", len(recs), err)
		}
		return nil
	}
	heads := make([]byte, 0, 96*len(c.heads))
	heads = append(heads, '[')
	keys, seqs, hashes := c.advanceArgs()
	for i, k := range keys {
		if i > 0 {
			heads = append(heads, ',')
		}
		heads = append(heads, `{"k":`...)
		heads = appendJSONString(heads, k)
		heads = append(heads, `,"seq":`...)
		heads = strconv.AppendInt(heads, seqs[i], 10)
		heads = append(heads, `,"hash":"`...)
		heads = hex.AppendEncode(heads, hashes[i])
		heads = append(heads, `"}`...)
	}
	heads = append(heads, ']')
	if _, err := db.ExecContext(ctx, t.chainInsert, string(buf), string(heads)); err != nil {
		return fmt.Errorf("auditkit: inserting %d chained audit records: %w", len(recs), err)
	}
	return nil
}

// appendRowJSON appends one row as a JSON object keyed by column, in the text forms PostgreSQL
// parses for each column type; jsonb columns are embedded as JSON values.
func appendRowJSON(buf []byte, vals []any) []byte {
	buf = append(buf, '{')
	first := true
	for j, v := range vals {
		if v == nil {
			continue
		}
		if b, ok := v.([]byte); ok && b == nil {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, '"')
		buf = append(buf, Columns[j]...)
		buf = append(buf, '"', ':')
		switch x := v.(type) {
		case []byte: // already a JSON document
			buf = append(buf, x...)
		case string:
			buf = appendJSONString(buf, x)
		case uuid.UUID:
			var u [36]byte
			encodeUUID(u[:], x)
			buf = append(buf, '"')
			buf = append(buf, u[:]...)
			buf = append(buf, '"')
		case time.Time:
			buf = append(buf, '"')
			buf = appendTimestamp(buf, x.UTC())
			buf = append(buf, '"')
		case int16:
			buf = strconv.AppendInt(buf, int64(x), 10)
		case int32:
			buf = strconv.AppendInt(buf, int64(x), 10)
		case int64:
			buf = strconv.AppendInt(buf, x, 10)
		case fmt.Stringer:
			buf = appendJSONString(buf, x.String())
		default:
			buf = appendJSONString(buf, fmt.Sprint(v))
		}
	}
	return append(buf, '}')
}

// appendTimestamp appends t in a form PostgreSQL parses as timestamptz. Years before 1 AD are
// written with BC, as PostgreSQL does: it has no year 0, and Go's year 0 is 1 BC.
func appendTimestamp(buf []byte, t time.Time) []byte {
	if t.Year() > 0 {
		return t.AppendFormat(buf, time.RFC3339Nano)
	}
	buf = fmt.Appendf(buf, "%04d", 1-t.Year())
	buf = t.AppendFormat(buf, "-01-02T15:04:05.999999999Z07:00")
	return append(buf, " BC"...)
}

// appendJSONString appends s as a JSON string, as json.Marshal writes it. s has been sanitised
// (valid UTF-8, no NUL).
func appendJSONString(buf []byte, s string) []byte {
	return appendJSONStr(buf, s)
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
