package core

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresSink writes records into audit_logs with COPY. It satisfies the Sink contract: a batch
// whose earlier attempt may have committed is written again with duplicates skipped, and records
// PostgreSQL refuses are reported as *RejectedError with their position when the server names it.
//
// Unless DisableChain is set, every record becomes the next link of its tenant's hash chain
// (docs/chain.md): each batch is one transaction that locks the chain heads of the batch's
// tenants, links the records in batch order, copies them and moves the heads. A retried batch
// chains only the records its earlier attempt did not store.
type PostgresSink struct {
	pool      *pgxpool.Pool
	schema    string
	table     pgx.Identifier
	stage     string // INSERT … SELECT from the staging table, skipping ids already stored
	chained   bool
	chain     chainSQL
	heads     chainCache    // the heads of the chains this sink appended to
	ahead     atomic.Uint64 // batches stored linked ahead (writeLinked)
	adopted   atomic.Uint64 // of those, the batches linked by the Writer's encoding goroutine (prelink)
	chainCols []string      // Columns, then ChainColumns
	pii       *PIICipher
	piiSQL    piiSQL
	bin       *binaryCopy // whether audit_logs takes the binary COPY
}

// PostgresSinkOptions configure a PostgresSink.
type PostgresSinkOptions struct {
	// Schema holds audit_logs. Empty means "public".
	Schema string
	// DisableChain stores records without seq, prev_hash and row_hash: outside every hash chain,
	// so that nobody can prove later that they were not edited or removed. The zero value
	// chains. Chaining needs migration 0003 and, for the writer's role, SELECT, INSERT and UPDATE
	// on audit_chain_heads.
	DisableChain bool
	// PII, when set, stores the personal values of every record encrypted with its data
	// subject's key, read or created in the batch's transaction before the record is chained,
	// so that EraseSubject can erase them (docs/chain.md, "Erasure"). Nil stores them as they
	// are. It needs migration 0004 and, for the writer's role, SELECT and INSERT on
	// audit_subject_keys.
	PII *PIICipher
}

// NewPostgresSink returns a sink writing through pool. The caller keeps ownership of the pool.
func NewPostgresSink(pool *pgxpool.Pool, opts PostgresSinkOptions) *PostgresSink {
	schema := opts.Schema
	if schema == "" {
		schema = "public"
	}
	table := pgx.Identifier{schema, "audit_logs"}
	// The staging table has the columns of audit_logs in its order; naming the columns keeps
	// the chain columns NULL there whatever their position.
	cols := strings.Join(Columns, ", ")
	return &PostgresSink{
		pool:   pool,
		schema: schema,
		table:  table,
		stage: `INSERT INTO ` + table.Sanitize() + ` (` + cols + `) SELECT ` + cols +
			` FROM pg_temp.auditkit_stage ON CONFLICT DO NOTHING`,
		chained:   !opts.DisableChain,
		chain:     newChainSQL(schema),
		chainCols: append(slices.Clip(Columns), ChainColumns...),
		pii:       opts.PII,
		piiSQL:    newPIISQL(schema),
		bin:       &binaryCopy{table: table},
	}
}

// storesRows makes PostgresSink a rowSink: it stores the rows the Writer encodes.
func (*PostgresSink) storesRows() {}

// Write stores recs in one COPY. See the Sink contract.
func (s *PostgresSink) Write(ctx context.Context, recs []*Record) error {
	var pl *prelinked
	if len(recs) > 0 && recs[0].link != nil {
		// The links the Writer made ahead serve this attempt only: a later one links again.
		// Only the Writer's own records carry links; a caller's records are not written to.
		pl, recs[0].link = recs[0].link, nil
	}
	rows, err := encodeRows(recs)
	if err != nil {
		return err
	}
	s.bin.check(ctx, s.pool)
	if s.chained {
		return s.writeChainedRecs(ctx, rows, recs, pl)
	}
	if s.pii != nil {
		if rows, err = s.pii.encryptRows(ctx, pgxQuery(s.pool), s.piiSQL, rows); err != nil {
			var rej *RejectedError
			if errors.As(err, &rej) {
				return err
			}
			return classify(err)
		}
	}
	err = s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		_, err := copyRows(ctx, s.bin, c, s.table, Columns, rows)
		return err
	})
	if err == nil {
		return nil
	}
	if isUniqueViolation(err) {
		// An earlier attempt of this batch (or a record enqueued twice) is already stored.
		err = s.writeSkippingDuplicates(ctx, rows)
		if err == nil {
			return nil
		}
	}
	return classify(err)
}

// writeChainedBatch stores rows chained. After a unique violation (an earlier attempt of the
// batch committed, or a record is in the batch twice) it runs again in a new transaction that
// skips the ids already stored.
func (s *PostgresSink) writeChainedBatch(ctx context.Context, rows [][]any) error {
	return s.writeChainedRecs(ctx, rows, nil, nil)
}

// writeChainedRecs is writeChainedBatch for the rows of recs (recs[i] carries rows[i], or recs
// is nil): the jsonb texts the records carry for their rows' documents are used, not parsed again,
// unless personal values are encrypted (which rewrites the documents).
func (s *PostgresSink) writeChainedRecs(ctx context.Context, rows [][]any, recs []*Record, pl *prelinked) error {
	var (
		fields []*ChainFields
		stored bool
		err    error
	)
	if s.pii == nil {
		// Without personal values to encrypt in the transaction, the rows' fields are built
		// once, and the batch is linked ahead when the sink knows its chains' heads.
		if fields, err = prepareChainRecs(rows, recs); err != nil {
			return err
		}
		stored, err = s.writeLinked(ctx, rows, fields, pl)
	}
	if err == nil && !stored {
		err = s.writeChained(ctx, rows, fields, false)
	}
	if err != nil && isUniqueViolation(err) {
		err = s.writeChained(ctx, rows, fields, true)
	}
	var rej *RejectedError
	if err == nil || errors.As(err, &rej) {
		return err
	}
	return classify(err)
}

// writeSkippingDuplicates copies into a session-local staging table and moves the rows over with
// ON CONFLICT DO NOTHING, in one transaction. It costs a second pass, so it runs only after a
// unique violation showed that some ids are already stored.
func (s *PostgresSink) writeSkippingDuplicates(ctx context.Context, rows [][]any) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS auditkit_stage (LIKE `+s.table.Sanitize()+
			` INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		// A previous transaction on this connection may have left rows if it failed before commit.
		if _, err := tx.Exec(ctx, `TRUNCATE pg_temp.auditkit_stage`); err != nil {
			return err
		}
		if _, err := copyRows(ctx, s.bin, tx, pgx.Identifier{"pg_temp", "auditkit_stage"}, Columns, rows); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.stage)
		return err
	})
}

func encodeRows(recs []*Record) ([][]any, error) {
	rows := make([][]any, len(recs))
	for i, r := range recs {
		if r.row != nil { // encoded when it was spooled
			rows[i] = r.row
			continue
		}
		v, err := rowValues(r)
		if err != nil {
			return nil, &RejectedError{Index: i, Err: err}
		}
		rows[i] = v
	}
	return rows, nil
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

var copyLine = regexp.MustCompile(`COPY [^,]+, line (\d+)`)

// classify turns errors that say the data itself is unacceptable into *RejectedError, and errors
// that say the database refuses the writer whatever it sends (a missing table, schema or column,
// a missing privilege, a read-only server, a failed login) into *UnavailableError; everything else
// (connection loss, shutdown, timeouts, lock and serialization failures) stays transient.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "42P01", // undefined table
		"42703",          // undefined column
		"3F000",          // invalid schema name
		"42501",          // insufficient privilege
		"25006",          // read-only SQL transaction (a standby, or default_transaction_read_only)
		"3D000",          // invalid catalog name: the database does not exist
		"28000", "28P01": // invalid authorization, invalid password
		return &UnavailableError{Err: fmt.Errorf("%s (SQLSTATE %s): %w", pgErr.Message, pgErr.Code, err)}
	}
	switch {
	case pgErr.Code[:2] == "22", // data exception: bad encoding, invalid JSON, out of range
		pgErr.Code == "23502", pgErr.Code == "23514", // not null, check
		pgErr.Code == "54000", // program limit exceeded (a value too large)
		pgErr.Code == "42804": // datatype mismatch
		idx := -1
		if m := copyLine.FindStringSubmatch(pgErr.Where); m != nil {
			if n, convErr := strconv.Atoi(m[1]); convErr == nil {
				idx = n - 1
			}
		}
		return &RejectedError{Index: idx, Err: fmt.Errorf("%s (SQLSTATE %s): %w", pgErr.Message, pgErr.Code, err)}
	}
	return err
}

// copySource hands rows to pgx's CopyFrom as they are, except for two values that pgx encodes
// through detours: the id (a uuid.UUID is a driver.Valuer, so pgx has it written as text, fails
// to encode the text as a binary uuid, parses it and encodes the result) and the time (boxed again
// into one of pgx's wrappers). Each becomes a pointer to a copy held by the source, a type with
// the pgtype valuer interface of its column, which pgx encodes directly and which costs no
// allocation. The bytes sent are the same.
type copySource struct {
	rows [][]any
	next int
	vals []any
	id   copyID
	at   copyTime
}

// newCopySource returns a pgx.CopyFromSource of rows.
func newCopySource(rows [][]any) *copySource {
	return &copySource{rows: rows, vals: make([]any, 0, len(Columns)+len(ChainColumns))}
}

// Next reports whether a row is left, and moves to it.
func (s *copySource) Next() bool {
	s.next++
	return s.next <= len(s.rows)
}

// Values returns the values of the current row, valid until the next call: pgx encodes them
// before it asks for the next row.
func (s *copySource) Values() ([]any, error) {
	row := s.rows[s.next-1]
	s.vals = append(s.vals[:0], row...)
	if id, ok := row[0].(uuid.UUID); ok {
		s.id = copyID(id)
		s.vals[0] = &s.id
	}
	if at, ok := row[1].(time.Time); ok {
		s.at = copyTime(at)
		s.vals[1] = &s.at
	}
	return s.vals, nil
}

// Err is always nil: the rows are already made.
func (*copySource) Err() error { return nil }

// copyID is an id as pgx's uuid codec takes it.
type copyID uuid.UUID

// UUIDValue returns the id.
func (u *copyID) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: *u, Valid: true}, nil }

// copyTime is a time as pgx's timestamptz codec takes it.
type copyTime time.Time

// TimestamptzValue returns the time as pgx's own wrapper of a time.Time does.
func (t *copyTime) TimestamptzValue() (pgtype.Timestamptz, error) {
	return pgtype.Timestamptz{Time: time.Time(*t), Valid: true}, nil
}
