package gormaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
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
	db *gorm.DB
	w  *core.Writer
}

// variants: bare GORM; bare GORM plus the one extra round trip a before image needs (a locked
// SELECT of the row in the statement's transaction: the floor); GORM with the plugin and the
// asynchronous Writer; GORM with the plugin writing inside the transaction.
// "discard" is the plugin with a Writer whose sink stores nothing: the capture alone.
var benchVariants = []string{"bare", "floor", "audited", "discard", "intx"}

type discardSink struct{}

func (discardSink) Write(context.Context, []*core.Record) error { return nil }

func openBench(b *testing.B, variant string) *benchDB {
	b.Helper()
	pg := pgtest.New(b)
	db, err := gorm.Open(postgres.Open(pg.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	b.Cleanup(func() { _ = sqlDB.Close() })
	out := &benchDB{db: db}
	switch variant {
	case "floor":
		err = db.Callback().Update().Before("gorm:update").Register("bench:lock", func(tx *gorm.DB) {
			rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context,
				`SELECT id, grp, sku, qty FROM bench_items WHERE id = $1 FOR NO KEY UPDATE`, tx.Statement.ReflectValue.FieldByName("ID").Interface())
			if err != nil {
				_ = tx.AddError(err)
				return
			}
			defer rows.Close()
			vals := make([]any, 4)
			ptrs := []any{&vals[0], &vals[1], &vals[2], &vals[3]}
			for rows.Next() {
				_ = tx.AddError(rows.Scan(ptrs...))
			}
		})
	case "audited":
		out.w = core.NewWriter(core.NewPostgresSink(pg.Pool, core.PostgresSinkOptions{Schema: pg.Schema}), core.WriterOptions{})
		b.Cleanup(func() { _ = out.w.Close(context.Background()) })
		_, err = gormaudit.Register(db, gormaudit.Options{Writer: out.w})
	case "discard":
		out.w = core.NewWriter(discardSink{}, core.WriterOptions{})
		b.Cleanup(func() { _ = out.w.Close(context.Background()) })
		_, err = gormaudit.Register(db, gormaudit.Options{Writer: out.w})
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
			ctx := core.WithActor(context.Background(), core.Actor{ID: "bench"})
			db := d.db.WithContext(ctx)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				it := BenchItem{SKU: fmt.Sprint("sku-", benchSeq.Add(1)), Qty: 1}
				if err := db.Create(&it).Error; err != nil {
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
			ctx := core.WithActor(context.Background(), core.Actor{ID: "bench"})
			db := d.db.WithContext(ctx)
			i := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				i++
				if err := db.Model(&it).Update("qty", i).Error; err != nil {
					b.Fatal(err)
				}
			}
			d.flush(b)
		})
	}
}

func BenchmarkBulkUpdate1000(b *testing.B) {
	for _, v := range []string{"bare", "audited", "discard", "intx"} {
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
				res := d.db.Model(&BenchItem{}).Where("grp = ?", 1).Update("qty", gorm.Expr("qty + 1"))
				if res.Error != nil || res.RowsAffected != 1000 {
					b.Fatal(res.Error, res.RowsAffected)
				}
			}
			d.flush(b)
		})
	}
}

var _ = sql.ErrNoRows
