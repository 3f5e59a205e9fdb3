package gormaudit_test

import (
	"encoding/json"
	"testing"
	"time"
)

// TestUpdateImagesAreTypedAsOnInsert: an update's after image comes from its RETURNING, read with
// the column types its locking read found; every column (json, jsonb, bytea, numeric, date,
// timestamptz, serialised fields) must come out exactly as the insert's image and the update's
// before image show it.
func TestUpdateImagesAreTypedAsOnInsert(t *testing.T) {
	e := newEnv(t, envConfig{}, &Profile{})
	p := Profile{
		Doc:   json.RawMessage(`{"a": {"n": 12345678901234567890}, "b": [1, 2.5]}`),
		Attrs: Attrs{"color": "red"},
		Blob:  []byte{0, 1, 0xfe},
		Tags:  []string{"x"},
		Prefs: map[string]int{"volume": 7},
		Home:  Address{Street: "1 Main St", City: "Springfield"},
		Price: 9.99,
		Born:  time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC),
		Day:   time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC),
		Stamp: Stamp{Source: "import", Secret: "s"},
	}
	must(t, e.db.Create(&p).Error)
	inserted := e.one("").After
	n := e.count()
	must(t, e.db.Model(&p).Update("attrs", Attrs{"color": "blue"}).Error)
	r := e.audit("")[n]
	if r.Kind != "update" {
		t.Fatalf("kind %s", r.Kind)
	}
	text := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if text(r.Before) != text(inserted) {
		t.Errorf("before image\n%s\nwant the inserted row\n%s", text(r.Before), text(inserted))
	}
	want := map[string]any{}
	for k, v := range inserted {
		want[k] = v
	}
	want["attrs"] = map[string]any{"color": "blue"}
	if text(r.After) != text(want) {
		t.Errorf("after image\n%s\nwant\n%s", text(r.After), text(want))
	}
	if len(r.Diff) != 1 || r.Diff["attrs"] == nil {
		t.Errorf("diff %v, want attrs alone", r.Diff)
	}
}
