package entaudit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/auditkit/auditkit/core"
)

// DefaultMaxRowsPerStatement is the number of rows one statement records individually when
// Options.MaxRowsPerStatement is zero.
const DefaultMaxRowsPerStatement = 1000

// ErrInvalidOptions is wrapped by the error Options.Validate returns, and that Hook logs, for bad
// Options.
var ErrInvalidOptions = errors.New("entaudit: invalid options")

// Options configure Hook. The zero value is usable: records join the request's Collector when
// the context carries one and are otherwise dropped with an error in the log, so set Writer (or
// InTransaction) in any program that writes outside HTTP requests.
type Options struct {
	// Writer receives the records of committed changes whose context carries no request
	// Collector (core.Dispatch decides). Nil means such records are dropped and logged. Unused
	// when InTransaction is set. Its FailurePolicy (or the context's, core.WithFailurePolicy)
	// decides what happens when it cannot accept them: under core.FailClosed room is reserved
	// before each COMMIT and the transaction is rolled back when it is refused (see the package
	// documentation, Failure policy).
	Writer *core.Writer

	// Redactor masks secrets in what the hook writes itself: the audit rows of InTransaction mode
	// and the filter arguments of bulk summaries. Nil means core.NewRedactor(nil, nil). Records
	// handed to Writer are redacted by the Writer.
	Redactor *core.Redactor

	// InTransaction writes the audit rows with an INSERT through the transaction that made the
	// change, just before it commits, instead of handing them to Writer: an audit row then exists
	// if and only if the change committed, and a failing audit INSERT fails the commit (the change
	// is rolled back). audit_logs must be in the same database. It costs one INSERT per
	// transaction that changed audited rows. Records written this way take actor, tenant and
	// request id from the context (core.WithActor ...), not from a request Collector. A create
	// made outside a transaction has none to join: its audit row is inserted right after it.
	InTransaction bool

	// Schema is the PostgreSQL schema holding audit_logs in InTransaction mode. Empty means
	// "public".
	Schema string

	// MaxRowsPerStatement bounds the rows one statement records individually (with images and
	// diff). The rows past the bound are recorded by one summary record (kind custom, action
	// "<table>.bulk_<kind>") carrying the statement's filter, the affected count and the ids of
	// the rows not itemised. Zero means DefaultMaxRowsPerStatement; negative is an error.
	MaxRowsPerStatement int

	// IgnoreFields names columns, such as "updated_at", that are left out of diffs and do not
	// count when deciding whether an update changed anything. They stay in the images.
	IgnoreFields []string

	// ExcludeTables names tables whose changes are not recorded, in addition to the schemas
	// annotated with entaudit.Skip.
	ExcludeTables []string

	// RecordNoOpUpdates records updates that change no column (ignoring IgnoreFields) and no
	// edge. By default such an update writes no audit row. It implies RecordTimestampOnlyUpdates.
	RecordNoOpUpdates bool

	// RecordTimestampOnlyUpdates records updates whose only changes are to time columns ent sets
	// on every update (fields with UpdateDefault, such as the update_time of ent's mixin.Time;
	// see Type.AutoUpdateTime). By default such an update - a Save of an unchanged entity, say -
	// is a no-op and writes no audit row; when other columns change, the timestamps stay in the
	// diff.
	RecordTimestampOnlyUpdates bool

	// DisableORMDiffs records no changes at all: Hook returns a hook that hands every mutation
	// on untouched (no reads, no locks, no RETURNING). Set it from core.Config.DisableORMDiffs
	// (AUDIT_CAPTURE_ORM_DIFFS=false); a Writer opened from such a Config (core.Open) has the
	// same effect, see core.Writer.CaptureORMDiffs.
	DisableORMDiffs bool

	// Logger receives records of committed changes that could not be delivered. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of o, wrapped in ErrInvalidOptions. Hook logs it
// and uses the setting's default instead; call Validate at start-up to stop there.
func (o Options) Validate() error {
	var h hook
	return h.configure(o)
}

// configure fills the hook's settings from o. An invalid setting is replaced by its default
// (a negative MaxRowsPerStatement, an empty name in a list is skipped); the first one is
// returned.
func (h *hook) configure(o Options) error {
	var err error
	bad := func(e error) {
		if err == nil {
			err = e
		}
	}
	h.opts = o
	switch {
	case o.MaxRowsPerStatement < 0:
		bad(fmt.Errorf("%w: MaxRowsPerStatement is %d, want 0 (default %d) or more",
			ErrInvalidOptions, o.MaxRowsPerStatement, DefaultMaxRowsPerStatement))
		h.maxRows = DefaultMaxRowsPerStatement
	case o.MaxRowsPerStatement == 0:
		h.maxRows = DefaultMaxRowsPerStatement
	default:
		h.maxRows = o.MaxRowsPerStatement
	}
	h.ignore = map[string]bool{}
	for _, f := range o.IgnoreFields {
		if f = strings.TrimSpace(f); f == "" {
			bad(fmt.Errorf("%w: IgnoreFields holds an empty name", ErrInvalidOptions))
			continue
		}
		h.ignore[f] = true
	}
	h.exclude = map[string]bool{}
	for _, t := range o.ExcludeTables {
		if t = strings.TrimSpace(t); t == "" {
			bad(fmt.Errorf("%w: ExcludeTables holds an empty name", ErrInvalidOptions))
			continue
		}
		h.exclude[t] = true
	}
	h.log = o.Logger
	if h.log == nil {
		h.log = slog.Default()
	}
	h.redactor = o.Redactor
	if h.redactor == nil {
		h.redactor = core.NewRedactor(nil, nil)
	}
	if o.InTransaction {
		h.txw = core.NewTxWriter(o.Schema, h.redactor).WithPII(o.Writer.PIICipher())
	}
	return err
}
