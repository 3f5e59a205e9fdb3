package gormaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// BenchItem is the benchmarks' table: a serial key and a group for bulk updates.
type BenchItem struct {
	ID  uint `gorm:"primaryKey"`
	Grp int  `gorm:"index"`
	SKU string
	Qty int
}

// benchDB is one variant of GORM on its own schema of the same PostgreSQL.
type benchDB struct {
	db      *gorm.DB
	w       *core.Writer
	collect bool // hand records to a request collector, as in an HTTP request
}

// ctx returns the context of one operation.
func (d *benchDB) ctx() context.Context {
	ctx := core.WithActor(context.Background(), core.Actor{ID: "bench"})
	if d.collect {
		ctx = core.NewContext(ctx, core.NewCollector())
	}
	return ctx
}

// Variants: bare GORM; "floor", bare GORM plus the least a before image needs (before
// PostgreSQL 18, one extra round trip: a locked SELECT of the row in the statement's
// transaction; from 18 on, GORM's UPDATE returning the rows' old and new columns); "capture",
// the plugin handing each operation's records to a request collector (what happens inside an
// HTTP request: the capture alone); "audited", the plugin with the asynchronous Writer storing
// every record (its final Flush is timed); "intx", the plugin inserting the records inside the
// transaction.
var benchVariants = []string{"bare", "floor", "capture", "audited", "intx"}

func openBench(b *testing.B, variant string) *benchDB {
	b.Helper()
	pg := pgtest.New(b)
	url := pg.URL
	if os.Getenv("GORMAUDIT_BENCH_COMMIT") == "async" {
		// Commits do not wait for the WAL flush, the noisiest part of a write on a shared machine:
		// what remains is the round trips and the client's own work.
		url += "&options=-c%20synchronous_commit%3Doff"
	}
	db, err := gorm.Open(postgres.Open(url), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	b.Cleanup(func() { _ = sqlDB.Close() })
	out := &benchDB{db: db}
	switch variant {
	case "floor":
		if pgtest.ServerVersion(b, url) >= 180000 {
			err = db.Callback().Update().Before("gorm:update").Register("bench:returning-old", benchReturnOld)
			if err == nil {
				err = db.Callback().Update().Before("gorm:commit_or_rollback_transaction").Register("bench:returning-old-done", func(tx *gorm.DB) {
					if p, ok := tx.Statement.ConnPool.(returnOldPool); ok {
						tx.Statement.ConnPool = p.ConnPool
					}
				})
			}
		} else {
			err = db.Callback().Update().Before("gorm:update").Register("bench:lock", benchLock)
		}
	case "audited":
		out.w = core.NewWriter(core.NewPostgresSink(pg.Pool, core.PostgresSinkOptions{Schema: pg.Schema}), core.WriterOptions{})
		b.Cleanup(func() { _ = out.w.Close(context.Background()) })
		_, err = gormaudit.Register(db, gormaudit.Options{Writer: out.w})
	case "capture":
		out.collect = true
		_, err = gormaudit.Register(db, gormaudit.Options{})
	case "intx":
		_, err = gormaudit.Register(db, gormaudit.Options{InTransaction: true, Schema: pg.Schema})
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := db.AutoMigrate(&BenchItem{}); err != nil {
		b.Fatal(err)
	}
	return out
}

// benchLock is the floor variant's extra work: in the statement's transaction, the one locked
// read of the rows the UPDATE will change, scanned into database/sql values, which is the least
// that reading a before image through database/sql costs. A statement on a model with its key
// set (Model(&BenchItem{ID: 1})) reads that row; any other, the rows its conditions select.
func benchLock(tx *gorm.DB) {
	stmt := tx.Statement
	q := &gorm.Statement{DB: tx, ConnPool: stmt.ConnPool, Context: stmt.Context, Table: "bench_items",
		Clauses: map[string]clause.Clause{}}
	q.SQL.WriteString("SELECT id, grp, sku, qty ")
	q.AddClause(clause.From{})
	if id := stmt.ReflectValue.FieldByName("ID").Uint(); id != 0 {
		q.AddClause(clause.Where{Exprs: []clause.Expression{clause.Eq{Column: "id", Value: id}}})
	} else if w, ok := stmt.Clauses["WHERE"]; ok {
		q.Clauses["WHERE"] = w
	}
	q.AddClause(clause.Locking{Strength: "NO KEY UPDATE"})
	q.Build("FROM", "WHERE", "FOR")
	rows, err := stmt.ConnPool.QueryContext(stmt.Context, q.SQL.String(), q.Vars...)
	if err != nil {
		_ = tx.AddError(err)
		return
	}
	defer rows.Close()
	vals := make([]any, 4)
	ptrs := []any{&vals[0], &vals[1], &vals[2], &vals[3]}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			_ = tx.AddError(err)
			return
		}
	}
	_ = tx.AddError(rows.Err())
}

// benchReturnOld is the floor variant's work on PostgreSQL 18 and later, where an UPDATE returns
// its rows' versions before and after it (RETURNING OLD): GORM's own UPDATE, with both images'
// columns returned and scanned into database/sql values, which is the least that reading both
// images through database/sql costs there. The statement's own pool is put back after the
// UPDATE, for GORM's COMMIT.
func benchReturnOld(tx *gorm.DB) {
	tx.Statement.ConnPool = returnOldPool{tx.Statement.ConnPool}
}

// returnOldPool runs each ExecContext as a query returning the changed rows' old and new
// columns, reads them, and reports their count as the rows affected.
type returnOldPool struct{ gorm.ConnPool }

func (p returnOldPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return pgtest.ExecReading(ctx, p.ConnPool, query+" RETURNING old.id, old.grp, old.sku, old.qty, new.id, new.grp, new.sku, new.qty", args...)
}

func (d *benchDB) flush(b *testing.B) {
	if d.w != nil {
		if err := d.w.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

var benchSeq atomic.Int64

func BenchmarkCreate(b *testing.B) {
	for _, v := range benchVariants {
		if v == "floor" {
			continue // a create needs no before image
		}
		b.Run("gorm="+v, func(b *testing.B) {
			d := openBench(b, v)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				it := BenchItem{SKU: fmt.Sprint("sku-", benchSeq.Add(1)), Qty: 1}
				if err := d.db.WithContext(d.ctx()).Create(&it).Error; err != nil {
					b.Fatal(err)
				}
			}
			d.flush(b)
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, v := range benchVariants {
		b.Run("gorm="+v, func(b *testing.B) {
			d := openBench(b, v)
			it := BenchItem{SKU: "one", Qty: 0}
			if err := d.db.Create(&it).Error; err != nil {
				b.Fatal(err)
			}
			d.flush(b)
			i := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				i++
				if err := d.db.WithContext(d.ctx()).Model(&it).Update("qty", i).Error; err != nil {
					b.Fatal(err)
				}
			}
			d.flush(b)
		})
	}
}

func BenchmarkBulkUpdate1000(b *testing.B) {
	for _, v := range []string{"bare", "capture", "audited", "intx"} {
		b.Run("gorm="+v, func(b *testing.B) {
			d := openBench(b, v)
			rows := make([]BenchItem, 1000)
			for i := range rows {
				rows[i] = BenchItem{Grp: 1, SKU: fmt.Sprint("bulk-", i)}
			}
			if err := d.db.CreateInBatches(&rows, 500).Error; err != nil {
				b.Fatal(err)
			}
			d.flush(b)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res := d.db.WithContext(d.ctx()).Model(&BenchItem{}).Where("grp = ?", 1).Update("qty", gorm.Expr("qty + 1"))
				if res.Error != nil || res.RowsAffected != 1000 {
					b.Fatal(res.Error, res.RowsAffected)
				}
			}
			d.flush(b)
		})
	}
}

// Paired benchmarks run one operation on every variant per iteration, in a random order, and
// report each variant's mean time and its ratio to bare GORM: on a shared, noisy machine the
// variants then see the same load, which separate sub-benchmarks running seconds apart do not.
// The asynchronous Writer is left out of them: its COPY would run under the other variants'
// operations and slow them all. Allocations per operation come from the benchmarks above.

type pairedOp func(b *testing.B, d *benchDB, i int)

func runPaired(b *testing.B, variants []string, setup func(b *testing.B, d *benchDB), op pairedOp) {
	dbs := make([]*benchDB, len(variants))
	for i, v := range variants {
		dbs[i] = openBench(b, v)
		setup(b, dbs[i])
		op(b, dbs[i], 0) // warm up: statement caches, schema parsing
	}
	spent := make([]time.Duration, len(variants))
	cpu := make([]time.Duration, len(variants))
	each := make([][]time.Duration, len(variants)) // per iteration, for the medians
	// Each iteration runs the variants in a new random order, so that each follows each of the
	// others equally often: an operation pays for some of the work the one before it left to the
	// database's background processes (the WAL writer after a commit), and a fixed order, even one
	// reversed every other iteration, makes one variant always follow the heaviest.
	rng := rand.New(rand.NewPCG(1, uint64(len(variants))))
	order := make([]int, len(variants))
	for k := range order {
		order[k] = k
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		rng.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
		for _, j := range order {
			c0 := processCPU()
			t0 := time.Now()
			op(b, dbs[j], i)
			d := time.Since(t0)
			cpu[j] += processCPU() - c0
			spent[j] += d
			each[j] = append(each[j], d)
		}
	}
	b.StopTimer()
	for _, d := range dbs {
		d.flush(b)
	}
	for j, v := range variants {
		b.ReportMetric(float64(spent[j].Microseconds())/float64(i), v+"-µs/op")
		b.ReportMetric(float64(cpu[j].Microseconds())/float64(i), v+"-cpu-µs/op")
		if j > 0 {
			b.ReportMetric(float64(spent[j])/float64(spent[0]), v+"/bare")
			b.ReportMetric(float64(median(each[j]))/float64(median(each[0])), v+"/bare-median")
			b.ReportMetric(float64(cpu[j])/float64(cpu[0]), v+"/bare-cpu")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// processCPU returns the CPU time the process has used (user and system): around one operation,
// the client's own work for it, which the load of other processes on the machine does not
// inflate as it inflates the wall time (garbage collection and the driver's goroutines are
// counted with the operation that runs while they do).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median returns the median of ds; on a loaded machine the ratio of medians is less swayed by the
// few operations that waited for a core than the ratio of means.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func BenchmarkPairedCreate(b *testing.B) {
	runPaired(b, []string{"bare", "capture", "intx"}, func(*testing.B, *benchDB) {},
		func(b *testing.B, d *benchDB, i int) {
			it := BenchItem{SKU: fmt.Sprint("sku-", benchSeq.Add(1)), Qty: i}
			if err := d.db.WithContext(d.ctx()).Create(&it).Error; err != nil {
				b.Fatal(err)
			}
		})
}

// seedOne and updateOne are the single-row update benchmarks' setup and operation.
func seedOne(b *testing.B, d *benchDB) {
	if err := d.db.Create(&BenchItem{ID: 1, SKU: "one"}).Error; err != nil {
		b.Fatal(err)
	}
}

func updateOne(b *testing.B, d *benchDB, i int) {
	if err := d.db.WithContext(d.ctx()).Model(&BenchItem{ID: 1}).Update("qty", i).Error; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkPairedUpdate(b *testing.B) {
	runPaired(b, []string{"bare", "floor", "capture", "intx"}, seedOne, updateOne)
}

// BenchmarkPairedUpdateAlone is BenchmarkPairedUpdate with bare GORM and the capture only: no
// other variant's work runs between their operations. Interleaved with the floor and the
// in-transaction variant as well, the capture's share grows (its longer path through the
// plugin, the driver and PostgreSQL runs colder when more runs between two of its operations);
// bare GORM's does not. BENCHMARKS.md gives both.
func BenchmarkPairedUpdateAlone(b *testing.B) {
	runPaired(b, []string{"bare", "capture"}, seedOne, updateOne)
}

// BenchmarkPairedBulkUpdate1000 runs the bulk update with its floor: bare GORM plus the one
// locked read of the 1,000 rows that a before image needs.
func BenchmarkPairedBulkUpdate1000(b *testing.B) {
	runPaired(b, []string{"bare", "floor", "capture", "intx"},
		func(b *testing.B, d *benchDB) {
			rows := make([]BenchItem, 1000)
			for i := range rows {
				rows[i] = BenchItem{Grp: 1, SKU: fmt.Sprint("bulk-", i)}
			}
			if err := d.db.CreateInBatches(&rows, 500).Error; err != nil {
				b.Fatal(err)
			}
		},
		func(b *testing.B, d *benchDB, _ int) {
			res := d.db.WithContext(d.ctx()).Model(&BenchItem{}).Where("grp = ?", 1).Update("qty", gorm.Expr("qty + 1"))
			if res.Error != nil || res.RowsAffected != 1000 {
				b.Fatal(res.Error, res.RowsAffected)
			}
		})
}

// BenchmarkPairedBulkUpdateByKey1000 is the bulk update of 1,000 rows named by their keys
// (Where("id IN ?", ids)), which the plugin runs as one statement (fuse.go).
func BenchmarkPairedBulkUpdateByKey1000(b *testing.B) {
	ids := make([]int64, 1000)
	runPaired(b, []string{"bare", "capture", "intx"},
		func(b *testing.B, d *benchDB) {
			rows := make([]BenchItem, len(ids))
			for i := range rows {
				rows[i] = BenchItem{Grp: 2, SKU: fmt.Sprint("bykey-", i)}
			}
			if err := d.db.CreateInBatches(&rows, 500).Error; err != nil {
				b.Fatal(err)
			}
			for i, r := range rows {
				ids[i] = int64(r.ID)
			}
		},
		func(b *testing.B, d *benchDB, _ int) {
			res := d.db.WithContext(d.ctx()).Model(&BenchItem{}).Where("id IN ?", ids).Update("qty", gorm.Expr("qty + 1"))
			if res.Error != nil || res.RowsAffected != int64(len(ids)) {
				b.Fatal(res.Error, res.RowsAffected)
			}
		})
}

// BenchmarkPairedUpdateSubquery measures the savepoint around a locking read that is more than
// the statement's table and conditions: the same single-row update with the plugin capturing,
// by a plain condition and by a subquery (read under a savepoint inside GORM's transaction),
// alternating per iteration as runPaired does; "bare" is GORM alone with the subquery.
func BenchmarkPairedUpdateSubquery(b *testing.B) {
	names := []string{"bare-subquery", "plain", "subquery"}
	dbs := []*benchDB{openBench(b, "bare"), openBench(b, "capture"), openBench(b, "capture")}
	op := func(j, i int) {
		d := dbs[j]
		q := d.db.WithContext(d.ctx()).Model(&BenchItem{})
		if j == 1 {
			q = q.Where("id = ?", 1)
		} else {
			q = q.Where("id IN (?)", d.db.Model(&BenchItem{}).Select("id").Where("id = ?", 1))
		}
		if err := q.Update("qty", i).Error; err != nil {
			b.Fatal(err)
		}
	}
	for j, d := range dbs {
		if err := d.db.Create(&BenchItem{ID: 1, SKU: "one"}).Error; err != nil {
			b.Fatal(err)
		}
		op(j, 0)
	}
	spent := make([]time.Duration, len(dbs))
	i := 0
	for b.Loop() {
		i++
		for k := range dbs {
			j := k
			if i%2 == 1 {
				j = len(dbs) - 1 - k
			}
			t0 := time.Now()
			op(j, i)
			spent[j] += time.Since(t0)
		}
	}
	for j, n := range names {
		b.ReportMetric(float64(spent[j].Microseconds())/float64(i), n+"-µs/op")
	}
	b.ReportMetric(float64(spent[2])/float64(spent[1]), "subquery/plain")
	b.ReportMetric(float64(spent[2])/float64(spent[0]), "subquery/bare")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRecordsColumnar1000 is BenchmarkRecordsFloor1000 with a record model that core does
// not have: each record holds its row's two images as one slice of values beside column names
// shared by the statement's records, and its diff as a bit per column, with the records and
// their values allocated for the whole statement at once. The values are boxed and the text
// copied as in BenchmarkRecordsFloor1000. It measures what such a model (a change of
// core.Record's public Before, After and Diff) could save a bulk capture.
func BenchmarkRecordsColumnar1000(b *testing.B) {
	type columnar struct {
		ID           uuid.UUID
		OccurredAt   time.Time
		Kind         core.Kind
		ResourceType string
		ResourceID   string
		Cols         []string
		Vals         []any // before, then after
		Changed      uint64
	}
	cols := []string{"id", "grp", "sku", "qty"}
	skus := make([]string, 1000)
	for i := range skus {
		skus[i] = fmt.Sprint("bulk-", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		recs := make([]*columnar, 0, len(skus))
		arena := make([]columnar, len(skus))
		vals := make([]any, 2*len(cols)*len(skus))
		now := time.Now()
		for i, sku := range skus {
			v := vals[2*len(cols)*i : 2*len(cols)*(i+1) : 2*len(cols)*(i+1)]
			v[0], v[1], v[2], v[3] = int64(i+1000), int64(1), string([]byte(sku)), int64(i+500)
			v[4], v[5], v[6], v[7] = int64(i+1000), int64(1), string([]byte(sku)), int64(i+501)
			r := &arena[i]
			r.ID, r.OccurredAt, r.Kind, r.ResourceType = core.NewID(), now, core.KindUpdate, "bench_items"
			r.ResourceID, r.Cols, r.Vals = strconv.Itoa(i+1000), cols, v
			for c := range cols {
				if !core.Equal(v[c], v[len(cols)+c]) {
					r.Changed |= 1 << c
				}
			}
			recs = append(recs, r)
		}
		if len(recs) != len(skus) || recs[0].Changed != 1<<3 {
			b.Fatal("unexpected records")
		}
	}
}

// BenchmarkRecordsFloor1000 is the least the record model costs a bulk update of 1,000 rows of
// BenchItem, without any database: the two images of each row as maps of its four columns (the
// values boxed, the text copied, as a driver returns them), a diff of its one changed column and
// the record holding them. BenchmarkBulkUpdate1000's capture pays this and its two reads.
func BenchmarkRecordsFloor1000(b *testing.B) {
	skus := make([]string, 1000)
	for i := range skus {
		skus[i] = fmt.Sprint("bulk-", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		recs := make([]*core.Record, 0, len(skus))
		arena := make([]core.Record, len(skus))
		now := time.Now()
		for i, sku := range skus {
			before := make(map[string]any, 4)
			before["id"], before["grp"], before["sku"], before["qty"] = int64(i+1000), int64(1), string([]byte(sku)), int64(i+500)
			after := make(map[string]any, 4)
			after["id"], after["grp"], after["sku"], after["qty"] = int64(i+1000), int64(1), string([]byte(sku)), int64(i+501)
			r := &arena[i]
			*r = core.Record{ID: core.NewID(), OccurredAt: now, Kind: core.KindUpdate, ResourceType: "bench_items",
				ResourceID: strconv.Itoa(i + 1000), Before: before, After: after,
				Diff: map[string]core.Change{"qty": {From: before["qty"], To: after["qty"]}}}
			recs = append(recs, r)
		}
		core.NewCollector().Add(recs...)
	}
}
