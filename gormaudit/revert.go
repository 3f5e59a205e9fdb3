package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// Metadata keys of the records a revert makes.
const (
	// MetaRevertedFrom holds the id of the record whose image a revert wrote back.
	MetaRevertedFrom = "reverted_from"
	// MetaRevertedTo holds the time RevertTo restored the row to (RFC 3339).
	MetaRevertedTo = "reverted_to"
)

// RevertOp says what a revert wrote.
type RevertOp string

// The writes a revert makes.
const (
	RevertUpdated RevertOp = "update" // the row was updated to the image
	RevertCreated RevertOp = "insert" // the row, gone, was created again from the image
	RevertDeleted RevertOp = "delete" // the row did not exist then and was deleted
	RevertNone    RevertOp = "none"   // the row did not exist then and does not exist now
)

// RevertResult says what a revert did.
type RevertResult struct {
	Op RevertOp
	// From is the record whose image was written back: the reverted record for Revert, the
	// record that left the row's state at the time for RevertTo (nil when the row's history
	// starts later).
	From *store.Record
	// Decoded lists the columns that were left as they are: masked in the image (redacted,
	// erased) and missing from it.
	Decoded
}

// Revert undoes the change rec records (a record of kind insert, update or delete of a GORM
// model, as History or store.Store.Get return it): it writes the row's image from before the
// change back through db, so that the plugin records the revert like any change, with metadata
// reverted_from naming rec. An insert is undone by deleting the row, a delete by creating it
// again, an update by updating the row to the before image.
//
// The model is db's (db.Model(&User{})) or, without one, the one the plugin records for rec's
// table (Options.Models, or the one model seen writing to it). The write runs in a transaction
// that locks the row. Columns whose image value is a mask (audit:"redact", a redacted secret, an
// erased value) are never written from it: they keep their current values (or their zero value
// for a row created again), and the result lists them, with the columns the image lacks. Columns
// GORM sets on every write (UpdatedAt) take the time of the revert. An image that no longer fits
// the model or its table is refused with an *IncompatibleError before anything is written.
func Revert(ctx context.Context, db *gorm.DB, rec *store.Record) (*RevertResult, error) {
	before, after, meta, err := rc.Undo(rec)
	if err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("gormaudit: Revert: nil *gorm.DB")
	}
	sch, err := revertModel(db, rec.ResourceType)
	if err != nil {
		return nil, err
	}
	keySrc := before
	if keySrc == nil {
		keySrc = after
	}
	key := map[string]any{}
	for _, f := range sch.PrimaryFields {
		v, ok := keySrc[f.DBName]
		if !ok || v == nil {
			return nil, fmt.Errorf("gormaudit: Revert: record %s: the image lacks the key column %s", rec.ID, f.DBName)
		}
		key[f.DBName] = v
	}
	res, err := writeImage(core.WithMetadata(ctx, meta), db, sch, key, before)
	if err != nil {
		return nil, err
	}
	res.From = rec
	return res, nil
}

// RevertTo writes the row of model with primary key id (a value, or a map of the key's columns)
// back to its state at t, as AsOf reads it, through db: the plugin records the change with
// metadata reverted_from (the record that left the state at t) and reverted_to (t). A row that
// did not exist at t, or was deleted then, is deleted (a soft delete for a model with
// gorm.DeletedAt); a row deleted since is created again. Masked columns are handled as by Revert.
func (h History) RevertTo(ctx context.Context, db *gorm.DB, model any, id any, t time.Time) (*RevertResult, error) {
	if h.Store == nil {
		return nil, errors.New("gormaudit: History.Store is nil")
	}
	sch, err := parseModel(db, model)
	if err != nil {
		return nil, err
	}
	key, err := keyImage(sch, id)
	if err != nil {
		return nil, err
	}
	rid, err := resourceID(sch, id)
	if err != nil {
		return nil, err
	}
	target, from, meta, err := rc.Target(ctx, h.Store, h.Scope, sch.Table, rid, t)
	if err != nil {
		return nil, err
	}
	res, err := writeImage(core.WithMetadata(ctx, meta), db, sch, key, target)
	if err != nil {
		return nil, err
	}
	res.From = from
	return res, nil
}

// revertModel is the model of db's statement, or the one the plugin knows for table.
func revertModel(db *gorm.DB, table string) (*schema.Schema, error) {
	if db.Statement != nil && db.Statement.Model != nil {
		sch, err := parseModel(db, db.Statement.Model)
		if err != nil {
			return nil, err
		}
		if sch.Table != table {
			return nil, fmt.Errorf("gormaudit: Revert: the record is of table %s, the model %s of table %s", table, sch.Name, sch.Table)
		}
		return sch, nil
	}
	if p, ok := db.Config.Plugins[(&Plugin{}).Name()].(*Plugin); ok {
		if v, ok := p.tables.Load(table); ok {
			if s, _ := v.(*schema.Schema); s != nil {
				return s, nil
			}
		}
	}
	return nil, fmt.Errorf("gormaudit: Revert: no model is known for table %s; pass db.Model(&Model{})", table)
}

// writeImage makes the row with key look like target (nil: not there), in a transaction that
// locks it.
func writeImage(ctx context.Context, db *gorm.DB, sch *schema.Schema, key, target map[string]any) (*RevertResult, error) {
	res := &RevertResult{}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		cur := reflect.New(sch.ModelType).Interface()
		if _, _, err := decodeInto(ctx, tx, sch, key, cur); err != nil {
			return err
		}
		rv := reflect.ValueOf(cur).Elem()
		conds := make([]clause.Expression, 0, len(sch.PrimaryFields))
		for _, f := range sch.PrimaryFields {
			v, _ := f.ValueOf(ctx, rv)
			conds = append(conds, clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName}, Value: v})
		}
		err := tx.Unscoped().Clauses(clause.Locking{Strength: "UPDATE"}).Where(clause.And(conds...)).Take(cur).Error
		exists := err == nil
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		live := exists && !softDeleted(ctx, sch, rv)
		if target == nil {
			if !live {
				res.Op = RevertNone
				return nil
			}
			res.Op = RevertDeleted
			return tx.Where(clause.And(conds...)).Delete(cur).Error
		}
		if !exists {
			cur = reflect.New(sch.ModelType).Interface()
		}
		d, set, err := decodeInto(ctx, tx, sch, target, cur)
		if err != nil {
			return err
		}
		res.Decoded = d
		if !exists {
			res.Op = RevertCreated
			return tx.Select(set).Create(cur).Error
		}
		res.Op = RevertUpdated
		cols := slices.DeleteFunc(slices.Clone(set), func(c string) bool {
			f := sch.LookUpField(c)
			return f != nil && f.PrimaryKey
		})
		if len(cols) == 0 {
			return nil
		}
		return tx.Unscoped().Model(cur).Select(cols).Updates(cur).Error
	})
	if err != nil {
		var ie *IncompatibleError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, fmt.Errorf("gormaudit: revert %s: %w", sch.Table, err)
	}
	return res, nil
}

// softDeleted reports whether the row in rv is soft-deleted (its gorm.DeletedAt is set).
func softDeleted(ctx context.Context, sch *schema.Schema, rv reflect.Value) bool {
	for _, c := range sch.QueryClauses {
		if sd, ok := c.(gorm.SoftDeleteQueryClause); ok && sd.Field != nil {
			v, zero := sd.Field.ValueOf(ctx, rv)
			if zero {
				return false
			}
			if da, ok := v.(gorm.DeletedAt); ok {
				return da.Valid
			}
			return true
		}
	}
	return false
}
