package revertcore_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/revertcore"
)

const p = revertcore.Prefix("xaudit")

// The public packages spell the metadata keys out, for their documentation; they must stay the
// keys a revert writes.
func TestMetadataKeys(t *testing.T) {
	for _, k := range [][2]string{
		{gormaudit.MetaRevertedFrom, revertcore.MetaRevertedFrom}, {entaudit.MetaRevertedFrom, revertcore.MetaRevertedFrom},
		{gormaudit.MetaRevertedTo, revertcore.MetaRevertedTo}, {entaudit.MetaRevertedTo, revertcore.MetaRevertedTo},
	} {
		if k[0] != k[1] {
			t.Errorf("%q != %q", k[0], k[1])
		}
	}
}

func TestImageMap(t *testing.T) {
	for _, absent := range []string{"", "null"} {
		if m, err := p.ImageMap(json.RawMessage(absent)); m != nil || err != nil {
			t.Errorf("ImageMap(%q) = %v, %v", absent, m, err)
		}
	}
	m, err := p.ImageMap(json.RawMessage(`{"id":18446744073709551615,"name":"a"}`))
	if err != nil || m["id"] != json.Number("18446744073709551615") || m["name"] != "a" {
		t.Errorf("ImageMap = %#v, %v", m, err)
	}
	if _, err := p.ImageMap(json.RawMessage(`[1]`)); err == nil || !strings.HasPrefix(err.Error(), "xaudit: the image is not a JSON object") {
		t.Errorf("ImageMap of an array: %v", err)
	}
}

func TestUndo(t *testing.T) {
	id := core.NewID()
	before, after, meta, err := p.Undo(&store.Record{ID: id, Kind: core.KindUpdate,
		Before: json.RawMessage(`{"id":1,"n":1}`), After: json.RawMessage(`{"id":1,"n":2}`)})
	if err != nil || before["n"] != json.Number("1") || after["n"] != json.Number("2") || meta[revertcore.MetaRevertedFrom] != id.String() || len(meta) != 1 {
		t.Fatalf("Undo = %v %v %v %v", before, after, meta, err)
	}
	// An insert is undone by deleting: it needs no before image.
	if before, after, _, err := p.Undo(&store.Record{ID: id, Kind: core.KindInsert, After: json.RawMessage(`{"id":1}`)}); err != nil || before != nil || after == nil {
		t.Errorf("Undo of an insert = %v %v %v", before, after, err)
	}
	for _, c := range []struct {
		rec  *store.Record
		want string
	}{
		{nil, "xaudit: Revert: nil record"},
		{&store.Record{ID: id, Kind: core.KindHTTP}, "is of kind http; only insert, update and delete"},
		{&store.Record{ID: id, Kind: core.KindUpdate, After: json.RawMessage(`{"id":1}`)}, "has no before image (before_unknown)"},
		{&store.Record{ID: id, Kind: core.KindDelete, Before: json.RawMessage(`"x"`)}, "xaudit: the image is not a JSON object"},
	} {
		if _, _, _, err := p.Undo(c.rec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Undo(%+v): %v, want %q", c.rec, err, c.want)
		}
	}
}
