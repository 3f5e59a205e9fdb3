package gormaudit

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/auditkit/auditkit/core"
)

// DefaultMaxRowsPerStatement is the number of rows one statement records individually when
// Options.MaxRowsPerStatement is zero.
const DefaultMaxRowsPerStatement = 1000

// ErrInvalidOptions is wrapped by the errors Register and Initialize return for bad Options.
var ErrInvalidOptions = errors.New("gormaudit: invalid options")

// Options configure the plugin. The zero value is usable: records join the request's collector
// when the context carries one and are otherwise dropped with an error in the log, so set Writer
// (or InTransaction) in any program that writes outside HTTP requests.
type Options struct {
	// Writer receives the records of committed changes whose context carries no request
	// collector (core.Dispatch decides). Nil means such records are dropped and logged.
	// Unused when InTransaction is set. Its FailurePolicy (or the context's,
	// core.WithFailurePolicy) decides what happens when it cannot accept them: under
	// core.FailClosed room is reserved before each COMMIT and the transaction is rolled back
	// when it is refused (see the package documentation, Failure policy).
	Writer *core.Writer

	// Redactor masks secrets in what the plugin writes itself: the audit rows of InTransaction
	// mode, raw SQL text (CaptureRawSQL) and the filter of bulk summaries. Nil means
	// core.NewRedactor(nil, nil). Records handed to Writer are redacted by the Writer.
	Redactor *core.Redactor

	// InTransaction writes the audit rows with an INSERT through the application's own
	// transaction, just before it commits, instead of handing them to Writer: an audit row then
	// exists if and only if the change committed, and a failing audit INSERT fails the COMMIT
	// (the change is rolled back). audit_logs must be in the same database. It costs one INSERT
	// per transaction that changed audited rows. The records do not join the request collector,
	// so the HTTP middleware does not stamp them (see the package documentation).
	InTransaction bool

	// Schema is the PostgreSQL schema holding audit_logs in InTransaction mode. Empty means
	// "public".
	Schema string

	// MaxRowsPerStatement bounds the rows one statement records individually (with images and
	// diff). The rows past the bound are recorded by one summary record (kind custom, action
	// "<table>.bulk_<kind>", or "<table>.bulk_upsert" with the counts inserted and updated for
	// an upsert) carrying the statement's filter, the affected count and the ids of the rows not
	// itemised. Zero means DefaultMaxRowsPerStatement; negative is an error.
	MaxRowsPerStatement int

	// IgnoreFields names columns (database names) or Go field names, such as "updated_at", that
	// are left out of diffs and do not count when deciding whether an update changed anything.
	// They stay in the before and after images.
	IgnoreFields []string

	// ExcludeTables names tables whose changes are not recorded. A plain name ("items") matches
	// the table in any schema (db.Table("archive.items") too); a qualified name
	// ("archive.items") matches statements that name that schema, through db.Table or a
	// model's TableName.
	ExcludeTables []string

	// Models lists models (values or pointers, e.g. &Item{}) by whose table name the plugin
	// records writes that GORM runs without a model: db.Table("items").Where(...).Updates(map)
	// is recorded as a change of Item's rows. Without it, a table is resolved to the one model
	// the plugin has seen writing to it; a table that several models map is not resolved
	// unless one of them is listed here. Such writes are recorded as GORM runs them: without
	// the model's soft-delete scope, hooks or RETURNING.
	Models []any

	// ExcludeModels lists models (values or pointers, e.g. &Session{}) whose changes are not
	// recorded. A model can also opt out by implementing Disabler.
	ExcludeModels []any

	// RecordNoOpUpdates records updates that change no column (ignoring IgnoreFields, and
	// counting a change to an audit:"-" column as a change). By default such an update writes
	// no audit row. It implies RecordTimestampOnlyUpdates.
	RecordNoOpUpdates bool

	// RecordTimestampOnlyUpdates records updates whose only changes are to columns GORM sets
	// on every update (autoUpdateTime fields, such as gorm.Model's UpdatedAt). By default such
	// an update - a Save of an unchanged row, say - is a no-op and writes no audit row; when
	// other columns change, the timestamps stay in the diff.
	RecordTimestampOnlyUpdates bool

	// CaptureRawSQL records data-changing raw statements (db.Exec, and db.Raw with
	// Scan/Row/Rows/Find) that start with INSERT, UPDATE, DELETE, MERGE, TRUNCATE or a WITH
	// that contains one of them, as records of kind custom with action "sql.exec": the
	// statement text (free-text redacted), its bound values masked, and the affected row count.
	// No images or diff are possible for them. Off by default. With InTransaction, a
	// data-changing db.Exec outside a transaction runs in one the plugin begins, so that it
	// commits together with its record; db.Raw outside a transaction cannot be wrapped.
	CaptureRawSQL bool

	// Logger receives delivery failures and warnings about writes that cannot be captured.
	// Nil means slog.Default().
	Logger *slog.Logger

	// DisableORMDiffs records no changes at all: the plugin registers no callbacks and leaves
	// the connection pool as it is, so GORM runs exactly as without it. Set it from
	// core.Config.DisableORMDiffs (AUDIT_CAPTURE_ORM_DIFFS=false); a Writer opened from such a
	// Config (core.Open) has the same effect, see core.Writer.CaptureORMDiffs.
	DisableORMDiffs bool
}

// Disabler is implemented by models whose changes are not recorded. The plugin calls
// AuditDisabled once per model type, on a zero value, and caches the answer: it switches a
// table's auditing off as a whole, never per row.
type Disabler interface {
	AuditDisabled() bool
}

// settings are the validated Options in the form the callbacks use.
type settings struct {
	Options
	maxRows       int
	ignore        map[string]bool
	excludeTables map[string]bool
	excludeTypes  map[reflect.Type]bool
	log           *slog.Logger
	txw           *core.TxWriter
}

func (o Options) settings() (*settings, error) {
	s := &settings{Options: o, maxRows: o.MaxRowsPerStatement}
	switch {
	case o.MaxRowsPerStatement < 0:
		return nil, fmt.Errorf("%w: MaxRowsPerStatement is %d, want 0 (default %d) or more",
			ErrInvalidOptions, o.MaxRowsPerStatement, DefaultMaxRowsPerStatement)
	case o.MaxRowsPerStatement == 0:
		s.maxRows = DefaultMaxRowsPerStatement
	}
	s.ignore = map[string]bool{}
	for _, f := range o.IgnoreFields {
		if f = strings.TrimSpace(f); f == "" {
			return nil, fmt.Errorf("%w: IgnoreFields holds an empty name", ErrInvalidOptions)
		}
		s.ignore[f] = true
	}
	s.excludeTables = map[string]bool{}
	for _, t := range o.ExcludeTables {
		if t = strings.TrimSpace(t); t == "" {
			return nil, fmt.Errorf("%w: ExcludeTables holds an empty name", ErrInvalidOptions)
		}
		s.excludeTables[t] = true
	}
	s.excludeTypes = map[reflect.Type]bool{}
	for i, m := range o.ExcludeModels {
		t := reflect.TypeOf(m)
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("%w: ExcludeModels[%d] is %T, want a struct or a pointer to one", ErrInvalidOptions, i, m)
		}
		s.excludeTypes[t] = true
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	if o.InTransaction {
		s.txw = core.NewTxWriter(o.Schema, o.Redactor).WithPII(o.Writer.PIICipher())
	}
	return s, nil
}
