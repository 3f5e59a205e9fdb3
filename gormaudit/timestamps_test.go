package gormaudit_test

import (
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/gormaudit"
)

type TsItem struct {
	ID        int64
	Name      string
	UpdatedAt time.Time
	CheckedAt int64 `gorm:"autoUpdateTime:milli"`
}

// A diff that only touches the columns GORM sets on every update is a no-op by default.
func TestTimestampOnlyUpdateIsNoOp(t *testing.T) {
	cases := []struct {
		name    string
		opts    gormaudit.Options
		op      func(db *gorm.DB, it *TsItem) error
		records int
		diff    []string
	}{
		{"Save unchanged", gormaudit.Options{}, func(db *gorm.DB, it *TsItem) error { return db.Save(it).Error }, 0, nil},
		{"Update to the same value", gormaudit.Options{}, func(db *gorm.DB, it *TsItem) error {
			return db.Model(it).Update("name", it.Name).Error
		}, 0, nil},
		{"Save unchanged, recorded by option", gormaudit.Options{RecordTimestampOnlyUpdates: true},
			func(db *gorm.DB, it *TsItem) error { return db.Save(it).Error }, 1, []string{"checked_at", "updated_at"}},
		{"Save changed", gormaudit.Options{}, func(db *gorm.DB, it *TsItem) error {
			it.Name = "new"
			return db.Save(it).Error
		}, 1, []string{"checked_at", "name", "updated_at"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: c.opts}, &TsItem{})
			it := &TsItem{Name: "old"}
			must(t, e.db.Create(it).Error)
			time.Sleep(2 * time.Millisecond) // so that the timestamps move
			n := e.count()
			must(t, c.op(e.db, it))
			recs := e.audit("")[n:]
			if len(recs) != c.records {
				t.Fatalf("%d records, want %d:%s", len(recs), c.records, dump(recs))
			}
			for _, r := range recs {
				if len(r.Diff) != len(c.diff) {
					t.Fatalf("diff = %v, want the columns %v", r.Diff, c.diff)
				}
				for _, col := range c.diff {
					if _, ok := r.Diff[col]; !ok {
						t.Fatalf("diff = %v, want the columns %v", r.Diff, c.diff)
					}
				}
			}
		})
	}
}
