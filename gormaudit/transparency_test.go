package gormaudit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// The transparency suite runs each write once on bare GORM and once on GORM with the plugin,
// each on its own schema with the same fixtures, and compares what the application sees: the
// error (nil, or the same GORM error class), RowsAffected, the values GORM wrote back into the
// model, the order in which model hooks ran, and the tables afterwards.

type TrOwner struct {
	ID    int64
	Name  string
	Items []TrItem `gorm:"foreignKey:OwnerID"`
}

type TrItem struct {
	ID        int64
	OwnerID   int64
	Name      string `gorm:"unique"`
	Qty       int
	Note      string `audit:"-"`
	DeletedAt gorm.DeletedAt
	Tags      []TrTag `gorm:"foreignKey:ItemID"`
}

type TrTag struct {
	ID     int64
	ItemID int64
	Label  string
}

func (it *TrItem) log(db *gorm.DB, name string) {
	if l, ok := db.Statement.Context.Value(hookLog{}).(*[]string); ok {
		*l = append(*l, name)
	}
}

type hookLog struct{}

func (it *TrItem) BeforeSave(db *gorm.DB) error   { it.log(db, "BeforeSave"); return nil }
func (it *TrItem) BeforeCreate(db *gorm.DB) error { it.log(db, "BeforeCreate"); return nil }
func (it *TrItem) AfterCreate(db *gorm.DB) error  { it.log(db, "AfterCreate"); return nil }
func (it *TrItem) BeforeUpdate(db *gorm.DB) error { it.log(db, "BeforeUpdate"); return nil }
func (it *TrItem) AfterUpdate(db *gorm.DB) error  { it.log(db, "AfterUpdate"); return nil }
func (it *TrItem) AfterSave(db *gorm.DB) error    { it.log(db, "AfterSave"); return nil }
func (it *TrItem) BeforeDelete(db *gorm.DB) error { it.log(db, "BeforeDelete"); return nil }
func (it *TrItem) AfterDelete(db *gorm.DB) error  { it.log(db, "AfterDelete"); return nil }

var trModels = []any{&TrOwner{}, &TrItem{}, &TrTag{}}

// trFixture is the same on both sides: two owners, four items (one soft-deleted), tags.
func trFixture(t *testing.T, db *gorm.DB) {
	t.Helper()
	must(t, db.Create(&[]TrOwner{{Name: "ann"}, {Name: "bob"}}).Error)
	items := []TrItem{
		{OwnerID: 1, Name: "a", Qty: 1, Note: "n1"},
		{OwnerID: 1, Name: "b", Qty: 2, Note: "n2"},
		{OwnerID: 2, Name: "c", Qty: 3, Note: "n3"},
		{OwnerID: 2, Name: "d", Qty: 4, Note: "n4"},
	}
	must(t, db.Create(&items).Error)
	must(t, db.Create(&[]TrTag{{ItemID: 1, Label: "x"}, {ItemID: 3, Label: "y"}}).Error)
	must(t, db.Delete(&TrItem{}, 4).Error)
}

// outcome is what one run of an operation showed the application.
type outcome struct {
	err      error
	rows     int64
	returned string
	hooks    []string
	state    string
}

// trCase is one write. run returns the *gorm.DB the finisher returned (nil when the operation
// reports no result, as ToSQL) and the value GORM wrote into, if any.
type trCase struct {
	name   string
	config gorm.Config
	setup  func(*gorm.DB) // runs on both sides right after gorm.Open
	run    func(ctx context.Context, db *gorm.DB) (*gorm.DB, any)
	// flagged names a metadata flag each record of the operation must carry (the operation
	// cannot be audited fully), or is empty; before18 says it is carried only before PostgreSQL
	// 18, where the update cannot return the rows' before images itself.
	flagged  string
	before18 bool
	// records is the number of audit records wanted (-1: any).
	records int
}

func trCases() []trCase {
	ids := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	return []trCase{
		{name: "Create", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{OwnerID: 1, Name: "e", Qty: 5}
			return db.WithContext(ctx).Create(it), it
		}},
		{name: "Create/duplicate key, TranslateError", config: gorm.Config{TranslateError: true}, records: 0,
			run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
				it := &TrItem{OwnerID: 1, Name: "a"}
				return db.WithContext(ctx).Create(it), it
			}},
		{name: "CreateInBatches", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			its := []TrItem{{OwnerID: 1, Name: "e"}, {OwnerID: 1, Name: "f"}, {OwnerID: 2, Name: "g"}}
			return db.WithContext(ctx).CreateInBatches(&its, 2), &its
		}},
		{name: "Session CreateBatchSize", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			its := []TrItem{{OwnerID: 1, Name: "e"}, {OwnerID: 1, Name: "f"}, {OwnerID: 2, Name: "g"}}
			return db.Session(&gorm.Session{CreateBatchSize: 2}).WithContext(ctx).Create(&its), &its
		}},
		{name: "Create with associations", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{OwnerID: 1, Name: "e", Tags: []TrTag{{Label: "p"}, {Label: "q"}}}
			return db.WithContext(ctx).Create(it), it
		}},
		{name: "Save existing, FullSaveAssociations", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{ID: 1, OwnerID: 1, Name: "a2", Qty: 1, Note: "n1", Tags: []TrTag{{ID: 1, ItemID: 1, Label: "x2"}}}
			return db.Session(&gorm.Session{FullSaveAssociations: true}).WithContext(ctx).Save(it), it
		}},
		{name: "Save new", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{OwnerID: 2, Name: "h", Qty: 9}
			return db.WithContext(ctx).Save(it), it
		}},
		{name: "Updates struct", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{ID: 2}
			return db.WithContext(ctx).Model(it).Updates(TrItem{Name: "b2", Qty: 7}), it
		}},
		{name: "Updates map, Select, Omit", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{ID: 2}
			return db.WithContext(ctx).Model(it).Select("name", "qty").Omit("qty").
				Updates(map[string]any{"name": "b3", "qty": 8}), it
		}},
		{name: "UpdateColumns", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{ID: 3}
			return db.WithContext(ctx).Model(it).UpdateColumns(map[string]any{"qty": gorm.Expr("qty * 10")}), it
		}},
		{name: "Update with IN list, SkipHooks", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.Session(&gorm.Session{SkipHooks: true}).WithContext(ctx).Model(&TrItem{}).
				Where("id IN ?", ids(4)).Update("qty", 0), nil
		}},
		{name: "Update FROM", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Model(&TrItem{}).Clauses(clause.From{Tables: []clause.Table{{Name: "tr_owners"}}}).
				Where("tr_owners.id = tr_items.owner_id AND tr_owners.name = ?", "ann").
				Update("name", gorm.Expr("tr_items.name || tr_owners.name")), nil
		}},
		{name: "Update FROM, SkipDefaultTransaction", config: gorm.Config{SkipDefaultTransaction: true}, records: 1,
			run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
				return db.WithContext(ctx).Model(&TrItem{}).Clauses(clause.From{Tables: []clause.Table{{Name: "tr_owners"}}}).
					Where("tr_owners.id = tr_items.owner_id AND tr_owners.name = ?", "bob").Update("qty", 11), nil
			}},
		{name: "Update FROM inside a transaction", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			var res *gorm.DB
			err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				res = tx.Model(&TrItem{}).Clauses(clause.From{Tables: []clause.Table{{Name: "tr_owners"}}}).
					Where("tr_owners.id = tr_items.owner_id AND tr_owners.name = ?", "ann").Update("qty", 12)
				if res.Error != nil {
					return res.Error
				}
				return tx.Model(&TrItem{}).Where("id = ?", 3).Update("qty", 13).Error
			})
			if err != nil && res.Error == nil {
				res.Error = err
			}
			return res, nil
		}},
		{name: "Update with subquery in WHERE", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			sub := db.Model(&TrOwner{}).Select("id").Where("name = ?", "ann")
			return db.WithContext(ctx).Model(&TrItem{}).Where("owner_id IN (?)", sub).Update("qty", 20), nil
		}},
		{name: "Update with a join in WHERE (EXISTS)", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Model(&TrItem{}).
				Where("EXISTS (SELECT 1 FROM tr_tags JOIN tr_owners ON tr_owners.id = ? WHERE tr_tags.item_id = tr_items.id)", 1).
				Update("qty", 21), nil
		}},
		{name: "Update with WITH and FROM", setup: withClauses, records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Model(&TrItem{}).
				Clauses(with{sql: "sel AS (SELECT id FROM tr_owners WHERE name = ?)", vars: []any{"ann"}},
					clause.From{Tables: []clause.Table{{Name: "sel"}}}).
				Where("tr_items.owner_id = sel.id").Update("qty", 22), nil
		}},
		// A WITH that changes data cannot be run twice: the rows are not read beforehand, and the
		// statement runs as GORM sends it (the tag is deleted once). From PostgreSQL 18 on, the
		// statement returns the before images.
		{name: "Update with a data-changing WITH, in a transaction", setup: withClauses, records: 1, flagged: "before_unknown", before18: true,
			run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
				var res *gorm.DB
				err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					res = tx.Model(&TrItem{}).
						Clauses(with{sql: "gone AS (DELETE FROM tr_tags WHERE id = ? RETURNING item_id)", vars: []any{1}},
							clause.From{Tables: []clause.Table{{Name: "gone"}}}).
						Where("tr_items.id = gone.item_id").Update("qty", 23)
					return res.Error
				})
				if err != nil && res.Error == nil {
					res.Error = err
				}
				return res, nil
			}},
		{name: "Update Returning", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			var out []TrItem
			return db.WithContext(ctx).Model(&out).Clauses(clause.Returning{}).Where("id = ?", 1).Update("qty", 30), &out
		}},
		{name: "Scopes and Table", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			byName := func(n string) func(*gorm.DB) *gorm.DB {
				return func(d *gorm.DB) *gorm.DB { return d.Where("name = ?", n) }
			}
			return db.WithContext(ctx).Table("tr_items").Model(&TrItem{}).Scopes(byName("c")).Update("qty", 31), nil
		}},
		// GORM runs these without a model; the plugin records them with the model it saw
		// writing to the table (or Options.Models).
		{name: "Table without a model: Updates map", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Table("tr_items").Where("owner_id = ?", 2).Updates(map[string]any{"qty": 45}), nil
		}},
		{name: "Table without a model: Create map", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Table("tr_items").Create(map[string]any{"owner_id": 1, "name": "m", "qty": 46}), nil
		}},
		{name: "Table without a model: Delete", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Table("tr_tags").Where("label = ?", "y").Delete(map[string]any{}), nil
		}},
		{name: "Model of a slice", records: 2, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			its := []TrItem{{ID: 1}, {ID: 2}}
			return db.WithContext(ctx).Model(&its).Update("qty", 32), &its
		}},
		{name: "AllowGlobalUpdate", records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.Session(&gorm.Session{AllowGlobalUpdate: true}).WithContext(ctx).Model(&TrItem{}).Update("qty", 33), nil
		}},
		{name: "global update refused", records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Model(&TrItem{}).Update("qty", 34), nil
		}},
		{name: "Session NewDB, QueryFields", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{ID: 1}
			return db.Session(&gorm.Session{NewDB: true, QueryFields: true}).WithContext(ctx).Model(it).Update("qty", 35), it
		}},
		{name: "DryRun", records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.Session(&gorm.Session{DryRun: true}).WithContext(ctx).Model(&TrItem{}).Where("id = ?", 1).Update("qty", 36), nil
		}},
		{name: "ToSQL", records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			s := db.WithContext(ctx).ToSQL(func(tx *gorm.DB) *gorm.DB {
				return tx.Model(&TrItem{}).Where("id = ?", 1).Update("qty", 37)
			})
			return nil, &s
		}},
		{name: "PrepareStmt", config: gorm.Config{PrepareStmt: true}, records: 3, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			if r := db.WithContext(ctx).Model(&TrItem{}).Where("id IN ?", ids(1)).Update("qty", 38); r.Error != nil {
				return r, nil
			}
			return db.WithContext(ctx).Model(&TrItem{}).Where("id IN ?", ids(2)).Update("qty", 39), nil
		}},
		{name: "Delete soft", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Delete(&TrItem{ID: 1}), nil
		}},
		{name: "Delete Unscoped", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Unscoped().Delete(&TrTag{}, 2), nil
		}},
		{name: "Delete USING", setup: usingClauses, records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			return db.WithContext(ctx).Clauses(using{table: "tr_items"}).
				Where("tr_items.id = tr_tags.item_id AND tr_items.name = ?", "a").Delete(&TrTag{}), nil
		}},
		{name: "Delete Returning", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			var out []TrTag
			return db.WithContext(ctx).Clauses(clause.Returning{}).Where("id = ?", 1).Delete(&out), &out
		}},
		{name: "FirstOrCreate", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{}
			return db.WithContext(ctx).Where(TrItem{Name: "z"}).Attrs(TrItem{OwnerID: 2, Qty: 3}).FirstOrCreate(it), it
		}},
		{name: "OnConflict UpdateAll", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{OwnerID: 2, Name: "b", Qty: 40}
			return db.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "name"}},
				DoUpdates: clause.AssignmentColumns([]string{"qty"})}).Create(it), it
		}},
		{name: "OnConflict DoNothing", records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			it := &TrItem{OwnerID: 2, Name: "b", Qty: 41}
			return db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(it), it
		}},
		{name: "cancelled context", records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return db.WithContext(c).Model(&TrItem{ID: 1}).Update("qty", 42), nil
		}},
		{name: "cancelled context, create, SkipDefaultTransaction", config: gorm.Config{SkipDefaultTransaction: true}, records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			c, cancel := context.WithCancel(ctx)
			cancel()
			it := &TrItem{ID: 77, OwnerID: 1, Name: "cancelled", Qty: 1}
			return db.WithContext(c).Create(it), it
		}},
		{name: "cancelled context, hard delete, SkipDefaultTransaction", config: gorm.Config{SkipDefaultTransaction: true}, records: 0, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return db.WithContext(c).Unscoped().Delete(&TrItem{ID: 1}), nil
		}},
		{name: "generics API", records: 1, run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
			n, err := gorm.G[TrTag](db).Where("id = ?", 1).Update(ctx, "label", "g")
			return &gorm.DB{Error: err, RowsAffected: int64(n)}, nil
		}},
		{name: "Update of a column missing from the table", records: 1, flagged: "capture",
			run: func(ctx context.Context, db *gorm.DB) (*gorm.DB, any) {
				return db.WithContext(ctx).Model(&TrDrift{ID: 1}).Update("qty", 44), nil
			}},
	}
}

// with is a WITH clause for the update processor (GORM's clause.With is empty).
type with struct {
	sql  string
	vars []any
}

func (w with) Name() string { return "WITH" }
func (w with) Build(b clause.Builder) {
	b.WriteString("WITH ")
	clause.Expr{SQL: w.sql, Vars: w.vars}.Build(b)
}
func (w with) MergeClause(c *clause.Clause) { c.Name, c.Expression = "", w }

// withClauses makes GORM's UPDATE build a WITH clause first.
func withClauses(db *gorm.DB) {
	u := db.Callback().Update()
	if !slices.Contains(u.Clauses, "WITH") {
		u.Clauses = append([]string{"WITH"}, u.Clauses...)
	}
}

// using is a USING clause for the delete processor.
type using struct{ table string }

func (u using) Name() string { return "USING" }
func (u using) Build(b clause.Builder) {
	b.WriteString("USING ")
	b.WriteQuoted(u.table)
}
func (u using) MergeClause(c *clause.Clause) { c.Name, c.Expression = "", u }

// usingClauses makes GORM's DELETE build a USING clause after FROM.
func usingClauses(db *gorm.DB) {
	d := db.Callback().Delete()
	if i := slices.Index(d.Clauses, "FROM"); i >= 0 && !slices.Contains(d.Clauses, "USING") {
		d.Clauses = slices.Insert(slices.Clone(d.Clauses), i+1, "USING")
	}
}

// TrDrift maps tr_items with a column the table does not have (a model ahead of its table).
type TrDrift struct {
	ID    int64
	Qty   int
	Extra string `gorm:"-:migration"`
}

func (TrDrift) TableName() string { return "tr_items" }

// openBare opens GORM on a schema of its own, without the plugin.
func openBare(t *testing.T, cfg gorm.Config) *gorm.DB {
	t.Helper()
	pg := pgtest.New(t)
	if cfg.Logger == nil {
		cfg.Logger = logger.Discard
	}
	db, err := gorm.Open(postgres.Open(pg.URL), &cfg)
	must(t, err)
	sqlDB, err := db.DB()
	must(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

func (c trCase) runOn(t *testing.T, db *gorm.DB) outcome {
	t.Helper()
	if c.setup != nil {
		c.setup(db)
	}
	must(t, db.AutoMigrate(trModels...))
	trFixture(t, db)
	var hooks []string
	ctx := context.WithValue(context.Background(), hookLog{}, &hooks)
	res, val := c.run(ctx, db)
	var o outcome
	if res != nil {
		o.err, o.rows = res.Error, res.RowsAffected
	}
	if val != nil {
		b, err := json.Marshal(val)
		must(t, err)
		o.returned = string(b)
	}
	o.hooks = hooks
	o.state = tableState(t, db)
	return o
}

// tableState dumps the fixture tables, the moments of soft deletes reduced to whether they are set.
func tableState(t *testing.T, db *gorm.DB) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"tr_owners", "tr_items", "tr_tags"} {
		var rows []string
		err := db.Session(&gorm.Session{NewDB: true}).Raw(`SELECT (to_jsonb(t) - 'deleted_at')::text ||
			CASE WHEN to_jsonb(t) ? 'deleted_at' THEN (to_jsonb(t)->'deleted_at' <> 'null')::text ELSE '' END
			FROM ` + table + ` t ORDER BY id`).Scan(&rows).Error
		must(t, err)
		fmt.Fprintf(&b, "%s: %s\n", table, strings.Join(rows, " "))
	}
	return b.String()
}

// sameError holds when both are nil, or both fail with the same message, the same GORM error
// (errors.Is with GORM's sentinels) and the same database error code.
func sameError(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	if a.Error() != b.Error() {
		return false
	}
	for _, s := range []error{gorm.ErrDuplicatedKey, gorm.ErrForeignKeyViolated, gorm.ErrMissingWhereClause,
		gorm.ErrRecordNotFound, context.Canceled, gorm.ErrInvalidData, gorm.ErrCheckConstraintViolated} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	var sa, sb interface{ SQLState() string }
	if errors.As(a, &sa) != errors.As(b, &sb) {
		return false
	}
	return sa == nil || sa.SQLState() == sb.SQLState()
}

func TestTransparency(t *testing.T) {
	for _, c := range trCases() {
		t.Run(c.name, func(t *testing.T) {
			bare := c.runOn(t, openBare(t, c.config))
			e := newEnv(t, envConfig{gorm: c.config})
			audited := c.runOn(t, e.db)
			if !sameError(bare.err, audited.err) {
				t.Errorf("error = %v, without the plugin %v", audited.err, bare.err)
			}
			if bare.rows != audited.rows {
				t.Errorf("RowsAffected = %d, without the plugin %d", audited.rows, bare.rows)
			}
			if bare.returned != audited.returned {
				t.Errorf("returned values:\n  with    %s\n  without %s", audited.returned, bare.returned)
			}
			if !slices.Equal(bare.hooks, audited.hooks) {
				t.Errorf("hooks = %v, without the plugin %v", audited.hooks, bare.hooks)
			}
			if bare.state != audited.state {
				t.Errorf("tables:\n  with the plugin:\n%s  without:\n%s", audited.state, bare.state)
			}
			// Fixture records: 2 owners, 4 items, 2 tags, 1 soft delete.
			recs := e.audit("")[9:]
			if c.records >= 0 && len(recs) != c.records {
				t.Errorf("%d records, want %d:%s", len(recs), c.records, dump(recs))
			}
			flagged := c.flagged
			if c.before18 && returnsOld(t, e) {
				flagged = ""
			}
			for _, r := range recs {
				if flagged != "" && r.Metadata[flagged] == nil {
					t.Errorf("record lacks the flag %q:%s", flagged, dump([]auditRow{r}))
				}
				if flagged == "" && (r.Metadata["before_unknown"] != nil || r.Metadata["after_unknown"] != nil || r.Metadata["capture"] != nil) {
					t.Errorf("record flagged as not fully captured:%s", dump([]auditRow{r}))
				}
			}
		})
	}
}
