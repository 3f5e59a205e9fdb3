package core

import (
	"bytes"
	"encoding/json"
	"reflect"
	"time"
)

// Diff returns the fields whose values differ between two row images, or nil when none does. A
// field missing from one image (or a nil image: an insert's before, a delete's after) counts as
// null there. skip, when not nil, leaves fields out: omitted or ignored columns.
//
// The ORM integrations compute diffs with it before they mask redacted fields, so that a diff
// shows that a redacted field changed; see MaskChange.
func Diff(before, after map[string]any, skip func(field string) bool) map[string]Change {
	var d map[string]Change
	add := func(k string, b, a any) {
		if (skip != nil && skip(k)) || Equal(b, a) {
			return
		}
		if d == nil {
			d = make(map[string]Change)
		}
		d[k] = Change{From: b, To: a}
	}
	shared := 0 // fields of after that before has too
	for k, a := range after {
		b, ok := before[k]
		if ok {
			shared++
		}
		add(k, b, a)
	}
	if shared == len(before) {
		return d // before has no field that after lacks: the usual update, whose images share their fields
	}
	for k, b := range before {
		if _, ok := after[k]; !ok {
			add(k, b, nil)
		}
	}
	return d
}

// Equal reports whether two image values are the same: scalars by value, times as instants,
// byte slices by content, anything else (decoded JSON documents) deeply.
func Equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && x == y
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return reflect.DeepEqual(a, b)
}

// Mask returns Redacted for a value that is set and nil for nil, so that a masked image still
// tells an unset field from a set one.
func Mask(v any) any {
	if v == nil {
		return nil
	}
	return Redacted
}

// MaskChange masks both sides of a change (see Mask): the diff shows that the field changed,
// never the values.
func MaskChange(c Change) Change { return Change{From: Mask(c.From), To: Mask(c.To)} }
