package gormaudit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"sync"
)

// An INSERT whose RETURNING GORM reads itself (database defaults, such as a serial id) would
// need its rows read again for their images: one more round trip. Instead the plugin runs the
// INSERT with its own columns added to GORM's RETURNING, keeps the images, and hands GORM a
// result that holds only GORM's columns, with the very values and column types the driver
// returned: GORM scans it as it would have scanned the statement's own result. database/sql has
// no way to make a *sql.Rows from values, so they are served by a small in-memory driver.

// replayed is the part of a statement's result handed back to GORM.
type replayed struct {
	cols  []string
	types []*sql.ColumnType
	vals  []any // the rows' values, len(cols) per row
	rr    replayRows

	// Room for the usual result (a key or a few columns of one row) without more allocations.
	colsBuf [4]string
	valsBuf [4]any
}

// newReplayed returns a replayed result with the given column types.
func newReplayed(types []*sql.ColumnType) *replayed {
	r := &replayed{types: types}
	r.cols, r.vals = r.colsBuf[:0], r.valsBuf[:0]
	for _, ct := range types {
		r.cols = append(r.cols, ct.Name())
	}
	return r
}

var (
	replayOnce sync.Once
	replayDB   *sql.DB
)

// replay returns rows that yield r.
func replay(r *replayed) (*sql.Rows, error) {
	replayOnce.Do(func() {
		replayDB = sql.OpenDB(replayConnector{})
		replayDB.SetMaxIdleConns(256)
	})
	// Not the statement's context: the statement has run, and a cancellation now must not
	// close rows that hold its result.
	return replayDB.QueryContext(context.Background(), "", r)
}

type replayConnector struct{}

func (replayConnector) Connect(context.Context) (driver.Conn, error) { return replayConn{}, nil }
func (replayConnector) Driver() driver.Driver                        { return replayDriver{} }

type replayDriver struct{}

func (replayDriver) Open(string) (driver.Conn, error) { return replayConn{}, nil }

type replayConn struct{}

func (replayConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("gormaudit: the replay connection prepares no statements")
}
func (replayConn) Close() error { return nil }
func (replayConn) Begin() (driver.Tx, error) {
	return nil, errors.New("gormaudit: the replay connection begins no transactions")
}

// CheckNamedValue lets the *replayed argument through unconverted.
func (replayConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (replayConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) != 1 {
		return nil, errors.New("gormaudit: replay wants one argument")
	}
	r, ok := args[0].Value.(*replayed)
	if !ok {
		return nil, errors.New("gormaudit: replay wants a result to replay")
	}
	r.rr = replayRows{r: r}
	return &r.rr, nil
}

// replayRows yields a replayed result, with the column types of the statement's own.
type replayRows struct {
	r *replayed
	i int
}

func (rr *replayRows) Columns() []string { return rr.r.cols }
func (rr *replayRows) Close() error      { return nil }

func (rr *replayRows) Next(dest []driver.Value) error {
	n := len(rr.r.cols)
	if n == 0 || rr.i+n > len(rr.r.vals) {
		return io.EOF
	}
	for i, v := range rr.r.vals[rr.i : rr.i+n] {
		dest[i] = v
	}
	rr.i += n
	return nil
}

func (rr *replayRows) ColumnTypeScanType(i int) reflect.Type { return rr.r.types[i].ScanType() }
func (rr *replayRows) ColumnTypeDatabaseTypeName(i int) string {
	return rr.r.types[i].DatabaseTypeName()
}
func (rr *replayRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	return rr.r.types[i].Nullable()
}
func (rr *replayRows) ColumnTypeLength(i int) (length int64, ok bool) {
	return rr.r.types[i].Length()
}
func (rr *replayRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	return rr.r.types[i].DecimalSize()
}

// keep appends the lead values of one row to r, for scanResult (database/sql copied any bytes
// when it scanned them into an any).
func (r *replayed) keep(vals []any) {
	r.vals = append(r.vals, vals...)
}
