package gormaudit_test

import (
	"context"
	"database/sql"
	"sync/atomic"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// countingPool is a connection pool that counts the statements sent through it and its
// transactions, BEGIN and COMMIT included: the round trips of an operation. With seen, it also
// keeps their texts: GORM's statements as sent, and the plugin's own (its reads, and the
// RETURNING it adds to GORM's), which GORM's logger does not see.
type countingPool struct {
	*sql.DB
	n    *atomic.Int64
	seen *sqlSeen
}

// note counts the statement q and keeps its text.
func note(n *atomic.Int64, seen *sqlSeen, q string) {
	n.Add(1)
	if seen != nil {
		seen.add(q)
	}
}

func (p countingPool) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	note(p.n, p.seen, q)
	return p.DB.ExecContext(ctx, q, args...)
}

func (p countingPool) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	note(p.n, p.seen, q)
	return p.DB.QueryContext(ctx, q, args...)
}

func (p countingPool) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	note(p.n, p.seen, q)
	return p.DB.QueryRowContext(ctx, q, args...)
}

func (p countingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	note(p.n, p.seen, "BEGIN")
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return countingTx{tx, p.n, p.seen}, nil
}

func (p countingPool) GetDBConn() (*sql.DB, error) { return p.DB, nil }

type countingTx struct {
	*sql.Tx
	n    *atomic.Int64
	seen *sqlSeen
}

func (t countingTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	note(t.n, t.seen, q)
	return t.Tx.ExecContext(ctx, q, args...)
}

func (t countingTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	note(t.n, t.seen, q)
	return t.Tx.QueryContext(ctx, q, args...)
}

func (t countingTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	note(t.n, t.seen, q)
	return t.Tx.QueryRowContext(ctx, q, args...)
}

func (t countingTx) Commit() error {
	note(t.n, t.seen, "COMMIT")
	return t.Tx.Commit()
}

// recordSQL is an envConfig.prepare that sends GORM's statements, and the plugin's, through a
// countingPool keeping their texts in seen.
func recordSQL(seen *sqlSeen) func(*gorm.DB) {
	return func(db *gorm.DB) {
		sqlDB, err := db.DB()
		if err != nil {
			panic(err)
		}
		p := countingPool{DB: sqlDB, n: new(atomic.Int64), seen: seen}
		db.ConnPool, db.Statement.ConnPool = p, p
	}
}

// A create of a row with a serial key takes as many round trips as GORM alone (BEGIN, INSERT ...
// RETURNING, COMMIT): its image comes from the INSERT's own RETURNING, to which the plugin adds
// its columns, and the transaction's id from the same statement. So does an update of one row by
// its key: the locked read of its before image is a subquery of the UPDATE (fuse.go), or from
// PostgreSQL 18 on the UPDATE's RETURNING. GORM sees what it sees without the plugin.
func TestRoundTrips(t *testing.T) {
	pg := pgtest.New(t)
	sqlDB, err := sql.Open("pgx", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	var n atomic.Int64
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: countingPool{DB: sqlDB, n: &n}}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gormaudit.Register(db, gormaudit.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&BenchItem{}); err != nil {
		t.Fatal(err)
	}
	collect := func() (context.Context, *core.Collector) {
		c := core.NewCollector()
		return core.NewContext(context.Background(), c), c
	}
	// The first statement on the table also probes once that its columns can be read.
	ctx, _ := collect()
	if err := db.WithContext(ctx).Create(&BenchItem{SKU: "warm"}).Error; err != nil {
		t.Fatal(err)
	}

	ctx, c := collect()
	it := BenchItem{SKU: "a", Qty: 2}
	before := n.Load()
	if err := db.WithContext(ctx).Create(&it).Error; err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 3 {
		t.Errorf("create: %d round trips, want 3 (BEGIN, INSERT ... RETURNING, COMMIT)", got)
	}
	if it.ID == 0 || it.ID == 1 {
		t.Errorf("GORM did not get the row's serial id: %+v", it)
	}
	recs := c.Records()
	if len(recs) != 1 || recs[0].Kind != core.KindInsert || recs[0].After["sku"] != "a" || recs[0].After["qty"] != int64(2) ||
		recs[0].After["id"] != int64(it.ID) {
		t.Fatalf("create records: %+v", recs)
	}

	ctx, c = collect()
	before = n.Load()
	if err := db.WithContext(ctx).Model(&it).Update("qty", 3).Error; err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 3 {
		t.Errorf("update: %d round trips, want 3 (BEGIN, UPDATE ... FROM (SELECT ... FOR NO KEY UPDATE) ... RETURNING, COMMIT)", got)
	}
	recs = c.Records()
	if len(recs) != 1 || recs[0].Kind != core.KindUpdate || recs[0].Before["qty"] != int64(2) || recs[0].After["qty"] != int64(3) {
		t.Fatalf("update records: %+v", recs)
	}

	// Several rows in one INSERT: GORM gets every id, the plugin every image.
	ctx, c = collect()
	many := []BenchItem{{SKU: "m1"}, {SKU: "m2"}, {SKU: "m3"}}
	if err := db.WithContext(ctx).Create(&many).Error; err != nil {
		t.Fatal(err)
	}
	recs = c.Records()
	if len(recs) != 3 {
		t.Fatalf("bulk create records: %+v", recs)
	}
	for i, r := range recs {
		if many[i].ID == 0 || r.After["id"] != int64(many[i].ID) || r.After["sku"] != many[i].SKU {
			t.Errorf("row %d: GORM has %+v, the record %v", i, many[i], r.After)
		}
	}

	// An update by another column reads and locks its rows first, before PostgreSQL 18; from 18
	// on, its own RETURNING gives their before images (fuse.go).
	want := int64(4) // BEGIN, SELECT ... FOR NO KEY UPDATE, UPDATE ... RETURNING, COMMIT
	if pgtest.ServerVersion(t, pg.URL) >= 180000 {
		want = 3 // BEGIN, UPDATE ... RETURNING WITH (OLD AS ..., NEW AS ...) ..., COMMIT
	}
	ctx, c = collect()
	before = n.Load()
	res := db.WithContext(ctx).Model(&BenchItem{}).Where("qty = ?", 3).Update("qty", 4)
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatal(res.Error, res.RowsAffected)
	}
	if got := n.Load() - before; got != want {
		t.Errorf("update by another column: %d round trips, want %d", got, want)
	}
	recs = c.Records()
	if len(recs) != 1 || recs[0].Before["qty"] != int64(3) || recs[0].After["qty"] != int64(4) {
		t.Fatalf("update by another column, records: %+v", recs)
	}
}
