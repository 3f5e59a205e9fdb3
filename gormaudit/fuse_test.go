package gormaudit_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// An update whose conditions fix its rows' primary keys runs as one statement that locks, reads
// and changes them (gormaudit/fuse.go). These tests pin down which updates run so, that each
// behaves as it does without the plugin (rows affected, error, tables), that its records hold
// exact before and after images, and that the before image is the row's newest version when a
// concurrent transaction changed it while the statement waited for its lock.

type FzItem struct {
	ID   int64
	Name string
	Qty  int
}

type FzPair struct {
	A   int64 `gorm:"primaryKey;autoIncrement:false"`
	B   int64 `gorm:"primaryKey;autoIncrement:false"`
	Qty int
}

type FzSoft struct {
	ID        int64
	Qty       int
	DeletedAt gorm.DeletedAt
}

var fzModels = []any{&FzItem{}, &FzPair{}, &FzSoft{}}

// sqlSeen is a GORM logger that keeps the text of every statement GORM ran.
type sqlSeen struct {
	mu  sync.Mutex
	sql []string
}

func (s *sqlSeen) LogMode(logger.LogLevel) logger.Interface { return s }
func (s *sqlSeen) Info(context.Context, string, ...any)     {}
func (s *sqlSeen) Warn(context.Context, string, ...any)     {}
func (s *sqlSeen) Error(context.Context, string, ...any)    {}
func (s *sqlSeen) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	q, _ := fc()
	s.add(q)
}

func (s *sqlSeen) add(q string) {
	s.mu.Lock()
	s.sql = append(s.sql, q)
	s.mu.Unlock()
}

// returnsOld reports whether e's server is PostgreSQL 18 or later, where the plugin runs an
// update or soft delete as GORM's statement with a RETURNING of both images (fuse.go) whatever
// its conditions, instead of locking and reading the rows first.
func returnsOld(t testing.TB, e *env) bool {
	t.Helper()
	return pgtest.ServerVersion(t, e.pg.URL) >= 180000
}

// oneStatement reports whether the statements sent hold an update the plugin ran as one
// statement: with the locking subquery, or with the RETURNING of both images.
func oneStatement(sent []string) bool {
	for _, q := range sent {
		if strings.Contains(q, "gormaudit_before") || strings.Contains(q, `RETURNING WITH (OLD AS "gormaudit_old"`) {
			return true
		}
	}
	return false
}

// since returns the statements seen after the first n.
func (s *sqlSeen) since(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sql[n:]...)
}

func (s *sqlSeen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sql)
}

func fzFixture(t *testing.T, db *gorm.DB) {
	t.Helper()
	must(t, db.AutoMigrate(fzModels...))
	must(t, db.Create(&[]FzItem{{Name: "a", Qty: 1}, {Name: "b", Qty: 2}, {Name: "c", Qty: 3}}).Error)
	must(t, db.Create(&[]FzPair{{A: 1, B: 1, Qty: 1}, {A: 1, B: 2, Qty: 2}, {A: 2, B: 1, Qty: 3}}).Error)
	must(t, db.Create(&[]FzSoft{{Qty: 1}, {Qty: 2}}).Error)
}

func fzState(t *testing.T, db *gorm.DB) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"fz_items", "fz_pairs", "fz_softs"} {
		var rows []string
		must(t, db.Session(&gorm.Session{NewDB: true}).Raw(`SELECT (to_jsonb(t) - 'deleted_at')::text ||
			CASE WHEN to_jsonb(t) ? 'deleted_at' THEN (to_jsonb(t)->'deleted_at' <> 'null')::text ELSE '' END
			FROM `+table+` t ORDER BY 1`).Scan(&rows).Error)
		b.WriteString(table + ": " + strings.Join(rows, " ") + "\n")
	}
	return b.String()
}

// keepsRead18 names the cases of TestFusedUpdates that read their rows first on PostgreSQL 18
// and later too.
var keepsRead18 = map[string]bool{"Table without a model": true, "caller's Returning": true}

func TestFusedUpdates(t *testing.T) {
	cases := []struct {
		name  string
		run   func(db *gorm.DB) *gorm.DB
		fused bool
		// moved: the records name the rows' previous keys (previous_id).
		moved bool
	}{
		{"Model(&row).Update", func(db *gorm.DB) *gorm.DB { return db.Model(&FzItem{ID: 2}).Update("qty", 7) }, true, false},
		{"Updates struct", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{ID: 2}).Updates(FzItem{Name: "x", Qty: 8})
		}, true, false},
		{"Save", func(db *gorm.DB) *gorm.DB { return db.Save(&FzItem{ID: 2, Name: "s", Qty: 1}) }, true, false},
		{"IN list, expression", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id IN ?", []int64{1, 2, 3}).Update("qty", gorm.Expr("qty + 1"))
		}, true, false},
		{"key and unqualified names in WHERE and SET", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id = ?", 2).Where("qty > ?", 0).Update("name", gorm.Expr("name || qty"))
		}, true, false},
		{"key and a condition that fails", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{ID: 2}).Where("qty > ?", 50).Update("qty", 9)
		}, true, false},
		{"Where map", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where(map[string]any{"id": 3}).Update("qty", 10)
		}, true, false},
		{"Where struct", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where(&FzItem{ID: 3}).Update("qty", 11)
		}, true, false},
		{"key written in capitals", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("ID = ?", 1).Update("qty", 12)
		}, true, false},
		{"no such row", func(db *gorm.DB) *gorm.DB { return db.Model(&FzItem{ID: 99}).Update("qty", 13) }, true, false},
		{"primary keys changed", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id IN ?", []int64{1, 3}).Update("id", gorm.Expr("id + 100"))
		}, true, true},
		// db.Table names the table through a table expression: the separate read.
		{"Table without a model", func(db *gorm.DB) *gorm.DB {
			return db.Table("fz_items").Where("id = ?", 2).Updates(map[string]any{"qty": 14})
		}, false, false},
		{"composite key", func(db *gorm.DB) *gorm.DB { return db.Model(&FzPair{A: 1, B: 2}).Update("qty", 15) }, true, false},
		{"soft delete", func(db *gorm.DB) *gorm.DB { return db.Delete(&FzSoft{ID: 1}) }, true, false},
		// Conditions that do not fix the key keep the separate locking read (before PostgreSQL 18).
		{"no key", func(db *gorm.DB) *gorm.DB { return db.Model(&FzItem{}).Where("qty = ?", 2).Update("qty", 16) }, false, false},
		{"key OR another row", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id = ?", 1).Or("qty = ?", 3).Update("qty", 17)
		}, false, false},
		{"OR written in the condition", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id = ? or id = ?", 1, 2).Update("qty", 18)
		}, false, false},
		{"key compared with an expression", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzItem{}).Where("id = ?", gorm.Expr("qty")).Update("qty", 19)
		}, false, false},
		{"part of a composite key", func(db *gorm.DB) *gorm.DB {
			return db.Model(&FzPair{}).Where("a = ?", 1).Update("qty", 20)
		}, false, false},
		{"caller's Returning", func(db *gorm.DB) *gorm.DB {
			var out []FzItem
			return db.Model(&out).Clauses(clause.Returning{}).Where("id = ?", 1).Update("qty", 21)
		}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bareDB := openBare(t, gorm.Config{})
			fzFixture(t, bareDB)
			bare := c.run(bareDB)

			seen := &sqlSeen{}
			e := newEnv(t, envConfig{prepare: recordSQL(seen)})
			fzFixture(t, e.db)
			fixture := len(e.audit(""))
			n := seen.len()
			got := c.run(e.db)

			if !sameError(bare.Error, got.Error) || bare.RowsAffected != got.RowsAffected {
				t.Fatalf("error %v, %d rows; without the plugin %v, %d rows", got.Error, got.RowsAffected, bare.Error, bare.RowsAffected)
			}
			if b, a := fzState(t, bareDB), fzState(t, e.db); a != b {
				t.Errorf("tables:\n  with the plugin:\n%s  without:\n%s", a, b)
			}
			// From PostgreSQL 18 on, every update runs as one statement (with RETURNING OLD)
			// but those with a table expression or the caller's Returning.
			want := c.fused || returnsOld(t, e) && !keepsRead18[c.name]
			if fused := oneStatement(seen.since(n)); fused != want {
				t.Errorf("ran as one statement: %v, want %v:\n%s", fused, want, strings.Join(seen.since(n), "\n"))
			}
			recs := e.audit("")[fixture:]
			if int64(len(recs)) != got.RowsAffected {
				t.Fatalf("%d records for %d rows:%s", len(recs), got.RowsAffected, dump(recs))
			}
			for _, r := range recs {
				if r.Before == nil || r.After == nil || r.Metadata["before_unknown"] != nil {
					t.Errorf("record without both images:%s", dump([]auditRow{r}))
				}
				if prev, ok := r.Metadata["previous_id"]; ok != c.moved || ok && r.Before["id"] == r.After["id"] {
					t.Errorf("previous_id %v in:%s", prev, dump([]auditRow{r}))
				}
			}
		})
	}
}

// A row changed and committed by another transaction while the update waits for its lock is
// read in its newest version: the record's before image is what the update changed.
func TestFusedUpdateBeforeImageIsNewest(t *testing.T) {
	seen := &sqlSeen{}
	e := newEnv(t, envConfig{prepare: recordSQL(seen)})
	fzFixture(t, e.db)
	fixture := len(e.audit(""))
	other, err := e.db.DB()
	must(t, err)
	tx, err := other.Begin()
	must(t, err)
	_, err = tx.Exec(`UPDATE fz_items SET qty = 50, name = 'other' WHERE id = 2`)
	must(t, err)

	n := seen.len()
	done := make(chan *gorm.DB)
	go func() { done <- e.db.Model(&FzItem{ID: 2}).Update("qty", gorm.Expr("qty + 1")) }()
	waitForLock(t, other, "fz_items")
	must(t, tx.Commit())
	res := <-done
	must(t, res.Error)
	if res.RowsAffected != 1 {
		t.Fatalf("%d rows affected, want 1", res.RowsAffected)
	}
	if sent := seen.since(n); !oneStatement(sent) {
		t.Fatalf("the update did not run as one statement:\n%s", strings.Join(sent, "\n"))
	}
	recs := e.audit("")[fixture:]
	if len(recs) != 1 {
		t.Fatalf("records:%s", dump(recs))
	}
	wantDiff(t, recs[0].Diff, map[string][2]any{"qty": {50, 51}})
	if recs[0].Before["name"] != "other" || recs[0].After["name"] != "other" {
		t.Errorf("images:%s", dump(recs))
	}
}

// An update that fixes the key misses a row whose key another transaction changed meanwhile,
// with the plugin as without it; an update by other conditions follows the row to its new key,
// with the plugin as without it.
func TestFusedUpdateKeyChangedConcurrently(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(db *gorm.DB) *gorm.DB
		rows int64
	}{
		{"by key", func(db *gorm.DB) *gorm.DB { return db.Model(&FzItem{ID: 3}).Update("qty", 60) }, 0},
		{"by another column", func(db *gorm.DB) *gorm.DB { return db.Model(&FzItem{}).Where("name = ?", "c").Update("qty", 61) }, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := func(db *gorm.DB) (*gorm.DB, string) {
				fzFixture(t, db)
				other, err := db.DB()
				must(t, err)
				tx, err := other.Begin()
				must(t, err)
				_, err = tx.Exec(`UPDATE fz_items SET id = 30 WHERE id = 3`)
				must(t, err)
				done := make(chan *gorm.DB)
				go func() { done <- c.run(db) }()
				waitForLock(t, other, "fz_items")
				must(t, tx.Commit())
				return <-done, fzState(t, db)
			}
			bare, bareState := run(openBare(t, gorm.Config{}))
			got, gotState := run(newEnv(t, envConfig{}).db)
			must(t, bare.Error)
			must(t, got.Error)
			if bare.RowsAffected != c.rows || got.RowsAffected != c.rows {
				t.Errorf("rows affected %d, without the plugin %d, want %d", got.RowsAffected, bare.RowsAffected, c.rows)
			}
			if gotState != bareState {
				t.Errorf("tables:\n  with the plugin:\n%s  without:\n%s", gotState, bareState)
			}
		})
	}
}

// waitForLock waits until a session of db waits for a row lock on table.
func waitForLock(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		must(t, db.QueryRow(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE NOT l.granted AND a.query ILIKE '%' || $1 || '%'`, table).Scan(&n))
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no session waits for a lock")
}

// When code between the plugin's callback and GORM's builds the conditions its own way, the
// update runs as GORM sends it, with the same result; its rows are recorded without a before
// image (before_unknown) and a warning is logged. From PostgreSQL 18 on the plugin does not
// write into the conditions, and the rows are recorded with both images.
func TestFusedUpdateBuiltByOthers(t *testing.T) {
	e := newEnv(t, envConfig{})
	fzFixture(t, e.db)
	fixture := len(e.audit(""))
	err := e.db.Callback().Update().After("gormaudit:before_update").Before("gorm:update").
		Register("test:own_where", func(db *gorm.DB) {
			if c, ok := db.Statement.Clauses["WHERE"]; ok {
				c.Builder = func(c clause.Clause, b clause.Builder) {
					c.Builder = nil
					c.Build(b)
				}
				db.Statement.Clauses["WHERE"] = c
			}
		})
	must(t, err)
	res := e.db.Model(&FzItem{}).Where("id = ?", 2).Update("qty", 70)
	must(t, res.Error)
	if res.RowsAffected != 1 {
		t.Fatalf("%d rows affected, want 1", res.RowsAffected)
	}
	var qty int
	must(t, e.db.Raw("SELECT qty FROM fz_items WHERE id = 2").Scan(&qty).Error)
	if qty != 70 {
		t.Fatalf("qty = %d, want 70", qty)
	}
	recs := e.audit("")[fixture:]
	if returnsOld(t, e) {
		// From PostgreSQL 18 on, the plugin writes nothing into the conditions: whoever builds
		// them, the statement returns the row's before image.
		if len(recs) != 1 || recs[0].Metadata["before_unknown"] != nil || str(recs[0].Before["qty"]) != "2" ||
			str(recs[0].After["qty"]) != "70" {
			t.Fatalf("records:%s", dump(recs))
		}
		if strings.Contains(e.logs.String(), "not built as the plugin planned") {
			t.Errorf("a warning was logged:\n%s", e.logs.String())
		}
		return
	}
	if len(recs) != 1 || recs[0].Metadata["before_unknown"] != true || str(recs[0].After["qty"]) != "70" {
		t.Fatalf("records:%s", dump(recs))
	}
	if !strings.Contains(e.logs.String(), "not built as the plugin planned") {
		t.Errorf("no warning logged:\n%s", e.logs.String())
	}
}

// An update by keys past Options.MaxRowsPerStatement records that many rows in full and one
// summary with the statement's own filter, as the update with a separate read does.
func TestFusedUpdateCapWritesSummary(t *testing.T) {
	seen := &sqlSeen{}
	e := newEnv(t, envConfig{prepare: recordSQL(seen), opts: gormaudit.Options{MaxRowsPerStatement: 2}})
	fzFixture(t, e.db)
	fixture := len(e.audit(""))
	n := seen.len()
	res := e.db.Model(&FzItem{}).Where("id IN ?", []int64{1, 2, 3}).Update("qty", gorm.Expr("qty * 10"))
	must(t, res.Error)
	if sent := seen.since(n); !oneStatement(sent) {
		t.Fatalf("the update did not run as one statement:\n%s", strings.Join(sent, "\n"))
	}
	recs := e.audit("")[fixture:]
	if len(recs) != 3 || recs[0].Kind != "update" || recs[1].Kind != "update" {
		t.Fatalf("records:%s", dump(recs))
	}
	wantDiff(t, recs[0].Diff, map[string][2]any{"qty": {1, 10}})
	wantDiff(t, recs[1].Diff, map[string][2]any{"qty": {2, 20}})
	s := recs[2]
	if s.Action != "fz_items.bulk_update" || str(s.Metadata["affected"]) != "3" || str(s.Metadata["itemised"]) != "2" ||
		str(s.Metadata["not_itemised"]) != `["3"]` || s.Metadata["filter"] != "id IN ($1,$2,$3)" || str(s.Metadata["filter_args"]) != "[1,2,3]" {
		t.Fatalf("summary:%s", dump([]auditRow{s}))
	}
}
