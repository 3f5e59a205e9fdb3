package entaudit_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/asset"
)

// jsonValue is v as it reads back from a jsonb column.
func jsonValue(tb testing.TB, v any) any {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Every kind of field round trips into the images as the database stored it, and an update of
// any of them shows in the diff with its old and new values: bytes as standard base64 whatever
// they hold (binary, text, or bytes that look like JSON), JSON as the document, times in UTC,
// UUIDs and enums as text, NULL for a cleared optional field.
func TestFieldTypesRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	seen := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	ref1, ref2 := uuid.MustParse("0190a0a0-0000-7000-8000-000000000001"), uuid.MustParse("0190a0a0-0000-7000-8000-000000000002")
	a := e.client.Asset.Create().SetSku("a1").SetData([]byte{0, 1, 0xff}).SetMeta(map[string]any{"k": "v", "n": 1}).
		SetTags([]string{"x", "y"}).SetSeenAt(seen).SetRef(ref1).SetPrice(1.5).SetSize(1 << 40).SaveX(ctx)
	want := map[string]any{
		"id": a.ID, "sku": "a1", "data": b64([]byte{0, 1, 0xff}), "digest": nil, "meta": map[string]any{"k": "v", "n": 1},
		"tags": []string{"x", "y"}, "seen_at": "2026-01-02T02:04:05.123456Z", "ref": ref1.String(), "status": "draft",
		"price": 1.5, "active": false, "size": 1 << 40, "note": nil,
	}
	rows := e.audit(t)
	if len(rows) != 1 || rows[0].Kind != "insert" {
		t.Fatalf("rows = %v, want the insert", rows)
	}
	check := func(what string, img map[string]any, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if got, w := img[k], jsonValue(t, v); !reflect.DeepEqual(got, w) {
				t.Errorf("%s[%s] = %#v, want %#v", what, k, got, w)
			}
		}
		if _, ok := img["updated_at"].(string); !ok {
			t.Errorf("%s[updated_at] = %#v, want the stored time", what, img["updated_at"])
		}
		if len(img) != len(want)+1 {
			t.Errorf("%s has %d columns, want %d: %v", what, len(img), len(want)+1, img)
		}
	}
	check("after", rows[0].After, want)

	for _, c := range []struct {
		name   string
		update func(*entest.AssetUpdateOne)
		diff   map[string][2]any // column -> from, to
	}{
		{"binary bytes of the same length", func(u *entest.AssetUpdateOne) { u.SetData([]byte{0, 2, 0xff}) },
			map[string][2]any{"data": {b64([]byte{0, 1, 0xff}), b64([]byte{0, 2, 0xff})}}},
		{"bytes that look like JSON", func(u *entest.AssetUpdateOne) { u.SetData([]byte(`{"a":2}`)) },
			map[string][2]any{"data": {b64([]byte{0, 2, 0xff}), b64([]byte(`{"a":2}`))}}},
		{"bytes that look like other JSON", func(u *entest.AssetUpdateOne) { u.SetData([]byte(`{"a":3}`)) },
			map[string][2]any{"data": {b64([]byte(`{"a":2}`)), b64([]byte(`{"a":3}`))}}},
		{"text bytes", func(u *entest.AssetUpdateOne) { u.SetData([]byte("hello")) },
			map[string][2]any{"data": {b64([]byte(`{"a":3}`)), b64([]byte("hello"))}}},
		{"text bytes, one letter", func(u *entest.AssetUpdateOne) { u.SetData([]byte("hellp")) },
			map[string][2]any{"data": {b64([]byte("hello")), b64([]byte("hellp"))}}},
		{"empty bytes", func(u *entest.AssetUpdateOne) { u.SetData([]byte{}) },
			map[string][2]any{"data": {b64([]byte("hellp")), ""}}},
		{"nillable bytes set", func(u *entest.AssetUpdateOne) { u.SetDigest([]byte{9, 9}) },
			map[string][2]any{"digest": {nil, b64([]byte{9, 9})}}},
		{"nillable bytes cleared", func(u *entest.AssetUpdateOne) { u.ClearDigest() },
			map[string][2]any{"digest": {b64([]byte{9, 9}), nil}}},
		{"JSON document", func(u *entest.AssetUpdateOne) { u.SetMeta(map[string]any{"k": "w", "n": 1}) },
			map[string][2]any{"meta": {map[string]any{"k": "v", "n": 1}, map[string]any{"k": "w", "n": 1}}}},
		{"JSON list", func(u *entest.AssetUpdateOne) { u.AppendTags([]string{"z"}) },
			map[string][2]any{"tags": {[]string{"x", "y"}, []string{"x", "y", "z"}}}},
		{"time", func(u *entest.AssetUpdateOne) { u.SetSeenAt(seen.Add(time.Microsecond)) },
			map[string][2]any{"seen_at": {"2026-01-02T02:04:05.123456Z", "2026-01-02T02:04:05.123457Z"}}},
		{"nillable time cleared", func(u *entest.AssetUpdateOne) { u.ClearSeenAt() },
			map[string][2]any{"seen_at": {"2026-01-02T02:04:05.123457Z", nil}}},
		{"UUID", func(u *entest.AssetUpdateOne) { u.SetRef(ref2) },
			map[string][2]any{"ref": {ref1.String(), ref2.String()}}},
		{"enum", func(u *entest.AssetUpdateOne) { u.SetStatus(asset.StatusLive) },
			map[string][2]any{"status": {"draft", "live"}}},
		{"float and bool", func(u *entest.AssetUpdateOne) { u.AddPrice(0.25).SetActive(true) },
			map[string][2]any{"price": {1.5, 1.75}, "active": {false, true}}},
		{"int64", func(u *entest.AssetUpdateOne) { u.AddSize(1) },
			map[string][2]any{"size": {1 << 40, 1<<40 + 1}}},
		{"nillable string set", func(u *entest.AssetUpdateOne) { u.SetNote("n") },
			map[string][2]any{"note": {nil, "n"}}},
		{"nillable string cleared", func(u *entest.AssetUpdateOne) { u.ClearNote() },
			map[string][2]any{"note": {"n", nil}}},
		{"optional fields cleared", func(u *entest.AssetUpdateOne) { u.ClearData().ClearMeta().ClearRef() },
			map[string][2]any{"data": {"", nil}, "meta": {map[string]any{"k": "w", "n": 1}, nil}, "ref": {ref2.String(), nil}}},
	} {
		u := e.client.Asset.UpdateOneID(a.ID)
		c.update(u)
		u.ExecX(ctx)
		rows := e.audit(t)
		r := rows[len(rows)-1]
		if r.Kind != "update" || r.ResourceID != strconv.Itoa(a.ID) {
			t.Fatalf("%s: last row = %v, want the update", c.name, r)
		}
		check(c.name+": before", r.Before, want)
		for k, ft := range c.diff {
			want[k] = ft[1]
		}
		check(c.name+": after", r.After, want)
		delete(r.Diff, "updated_at")
		if len(r.Diff) != len(c.diff) {
			t.Errorf("%s: diff = %v, want the columns of %v", c.name, r.Diff, c.diff)
		}
		for k, ft := range c.diff {
			d := r.Diff[k]
			if from, to := jsonValue(t, ft[0]), jsonValue(t, ft[1]); d == nil || !reflect.DeepEqual(d["from"], from) || !reflect.DeepEqual(d["to"], to) {
				t.Errorf("%s: diff[%s] = %#v, want from %#v to %#v", c.name, k, d, from, to)
			}
		}
	}
	// The images agree with what ent reads back.
	got := e.client.Asset.GetX(ctx, a.ID)
	if got.Status != asset.StatusLive || got.Price != 1.75 || !got.Active || got.Data != nil {
		t.Errorf("entity = %+v", got)
	}
}
