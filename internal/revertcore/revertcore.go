// Package revertcore is the part of reading a row's past and writing it back that does not depend
// on the ORM: decoding a stored image, checking a record to undo, and choosing the state that
// RevertTo restores. gormaudit and entaudit build their History, Revert and RevertTo on it, so
// that both ORMs revert by the same rules and record the same metadata; the writing itself, and
// the public types, are each ORM's.
package revertcore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// Metadata keys of the records a revert makes (gormaudit and entaudit export them as
// MetaRevertedFrom and MetaRevertedTo).
const (
	// MetaRevertedFrom holds the id of the record whose image a revert wrote back.
	MetaRevertedFrom = "reverted_from"
	// MetaRevertedTo holds the time RevertTo restored the row to (RFC 3339).
	MetaRevertedTo = "reverted_to"
)

// Prefix is the name of the package that reports an error ("gormaudit"): every error of its
// methods starts with it.
type Prefix string

// ImageMap decodes a stored image into a map, with numbers as json.Number so that no key or
// value loses precision. An absent image (empty or JSON null) is a nil map.
func (p Prefix) ImageMap(image json.RawMessage) (map[string]any, error) {
	if len(image) == 0 || bytes.Equal(image, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(image))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: the image is not a JSON object: %w", p, err)
	}
	return m, nil
}

// Undo checks that rec records a change of one row that can be undone (an insert, an update or
// a delete; all but an insert with a before image) and returns its before and after images and
// the metadata of the revert, to attach to the context of the write (core.WithMetadata).
func (p Prefix) Undo(rec *store.Record) (before, after, meta map[string]any, err error) {
	if rec == nil {
		return nil, nil, nil, fmt.Errorf("%s: Revert: nil record", p)
	}
	switch rec.Kind {
	case core.KindInsert, core.KindUpdate, core.KindDelete:
	default:
		return nil, nil, nil, fmt.Errorf("%s: Revert: record %s is of kind %s; only insert, update and delete records change one row", p, rec.ID, rec.Kind)
	}
	if before, err = p.ImageMap(rec.Before); err != nil {
		return nil, nil, nil, err
	}
	if after, err = p.ImageMap(rec.After); err != nil {
		return nil, nil, nil, err
	}
	if rec.Kind != core.KindInsert && before == nil {
		return nil, nil, nil, fmt.Errorf("%s: Revert: record %s has no before image (before_unknown): there is nothing to write back", p, rec.ID)
	}
	return before, after, map[string]any{MetaRevertedFrom: rec.ID.String()}, nil
}

// Target is the state RevertTo writes back: the row of resource type table with resource id rid
// as it was at t, read from st in scope sc. target is its image, nil when the row did not exist
// at t (its history starts later) or was deleted then; from is the record that left that state
// (nil when the history starts later); meta is the metadata of the revert.
func (p Prefix) Target(ctx context.Context, st *store.Store, sc store.Scope, table, rid string, t time.Time) (target map[string]any, from *store.Record, meta map[string]any, err error) {
	sn, err := st.AsOf(ctx, sc, table, rid, t)
	switch {
	case errors.Is(err, store.ErrBeforeHistory):
	case err != nil:
		return nil, nil, nil, err
	case sn.Deleted:
		from = sn.Record
	default:
		from = sn.Record
		if target, err = p.ImageMap(sn.Image); err != nil {
			return nil, nil, nil, err
		}
	}
	meta = map[string]any{MetaRevertedTo: t.UTC().Format(time.RFC3339Nano)}
	if from != nil {
		meta[MetaRevertedFrom] = from.ID.String()
	}
	return target, from, meta, nil
}
