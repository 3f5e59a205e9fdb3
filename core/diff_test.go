package core_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

func TestDiff(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before := map[string]any{
		"name": "a", "n": int64(1), "same": true, "when": at, "raw": []byte{1, 2},
		"doc": map[string]any{"k": []any{"x"}}, "gone": "x", "updated_at": "t1", "amount": json.Number("12.50"),
	}
	after := map[string]any{
		"name": "b", "n": int64(1), "same": true, "when": at.In(time.FixedZone("x", 3600)), "raw": []byte{1, 2},
		"doc": map[string]any{"k": []any{"y"}}, "new": nil, "added": 5.5, "updated_at": "t2", "amount": json.Number("12.5"),
	}
	got := core.Diff(before, after, func(f string) bool { return f == "updated_at" })
	want := map[string]core.Change{
		"name":   {From: "a", To: "b"},
		"doc":    {From: map[string]any{"k": []any{"x"}}, To: map[string]any{"k": []any{"y"}}},
		"gone":   {From: "x", To: nil},
		"added":  {From: nil, To: 5.5},
		"amount": {From: json.Number("12.50"), To: json.Number("12.5")}, // the stored scale changed
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %#v\nwant %#v", got, want)
	}
	if d := core.Diff(before, before, nil); d != nil {
		t.Fatalf("Diff of equal images = %v, want nil", d)
	}
	if d := core.Diff(nil, map[string]any{"a": 1}, nil); !reflect.DeepEqual(d, map[string]core.Change{"a": {From: nil, To: 1}}) {
		t.Fatalf("Diff of an insert = %v", d)
	}
	if d := core.Diff(map[string]any{"a": 1}, nil, nil); !reflect.DeepEqual(d, map[string]core.Change{"a": {From: 1, To: nil}}) {
		t.Fatalf("Diff of a delete = %v", d)
	}
	// As many fields on each side, not the same ones: the field only before is still a change.
	d := core.Diff(map[string]any{"a": 1, "gone": "x"}, map[string]any{"a": 1, "new": "y"}, nil)
	if want := map[string]core.Change{"gone": {From: "x", To: nil}, "new": {From: nil, To: "y"}}; !reflect.DeepEqual(d, want) {
		t.Fatalf("Diff of images with different fields = %v, want %v", d, want)
	}
}

func TestMaskChange(t *testing.T) {
	if c := core.MaskChange(core.Change{From: nil, To: "s3cret"}); c.From != nil || c.To != core.Redacted {
		t.Fatalf("MaskChange = %+v", c)
	}
}

func TestBulkSummary(t *testing.T) {
	at := time.Now()
	if r := (core.BulkSummary{Table: "users", Kind: core.KindUpdate, Affected: 3}).Record(at); r != nil {
		t.Fatalf("summary without rows past the cap = %+v, want nil", r)
	}
	r := core.BulkSummary{Table: "users", Kind: core.KindDelete, Affected: 5, NotItemised: []string{"4", "5"},
		Filter: `"age" > $1`, FilterArgs: []any{40}}.Record(at)
	if r.Kind != core.KindCustom || r.Action != "users.bulk_delete" || r.ResourceType != "users" || !r.OccurredAt.Equal(at) {
		t.Fatalf("summary record = %+v", r)
	}
	want := map[string]any{"statement": "delete", "affected": 5, "itemised": 3, "not_itemised": []string{"4", "5"},
		"filter": `"age" > $1`, "filter_args": []any{40}}
	if !reflect.DeepEqual(r.Metadata, want) {
		t.Fatalf("metadata = %#v", r.Metadata)
	}
}

// BenchmarkDiff is the diff of an update of one field of a nine-field row, as entaudit's
// records of its test user are made.
func BenchmarkDiff(b *testing.B) {
	at := time.Now().Format(time.RFC3339Nano)
	before := map[string]any{"id": int64(1), "name": "bulk", "email": "1@example.com", "age": int64(41), "nickname": nil,
		"password_hash": nil, "recovery_code": nil, "profile": nil, "created_at": at}
	after := map[string]any{"id": int64(1), "name": "bulk", "email": "1@example.com", "age": int64(42), "nickname": nil,
		"password_hash": nil, "recovery_code": nil, "profile": nil, "created_at": at}
	skip := func(string) bool { return false }
	b.ReportAllocs()
	for b.Loop() {
		if len(core.Diff(before, after, skip)) != 1 {
			b.Fatal("want one change")
		}
	}
}

// TestDiffAnyFields compares Diff, over images with every relation of their field sets (the same
// fields, more, fewer, as many but others, none), with the definition: every field of either
// image whose values differ, a missing field counting as null.
func TestDiffAnyFields(t *testing.T) {
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	rng := rand.New(rand.NewPCG(7, 13))
	image := func() map[string]any {
		if rng.IntN(8) == 0 {
			return nil
		}
		m := map[string]any{}
		for _, k := range keys {
			switch rng.IntN(4) {
			case 0: // absent
			case 1:
				m[k] = nil
			default:
				m[k] = int64(rng.IntN(3))
			}
		}
		return m
	}
	for range 5000 {
		before, after := image(), image()
		want := map[string]core.Change{}
		for _, k := range keys {
			b, a := before[k], after[k]
			if !core.Equal(b, a) {
				want[k] = core.Change{From: b, To: a}
			}
		}
		got := core.Diff(before, after, nil)
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Diff(%v, %v) = %v, want %v", before, after, got, want)
		}
	}
}
