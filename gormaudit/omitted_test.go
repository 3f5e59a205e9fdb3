package gormaudit_test

import (
	"strings"
	"testing"
)

// A change to an audit:"-" column is a change of the row: it is recorded, the column named in
// metadata omitted_changed, its values in no image and no diff. Only Options.IgnoreFields and
// unchanged rows make an update a no-op.
func TestOmittedColumnChangeIsRecordedWithoutValues(t *testing.T) {
	e := newEnv(t, envConfig{}, trModels...)
	trFixture(t, e.db)
	cases := []struct {
		name    string
		update  map[string]any
		records int
		diff    string // the diff's columns, sorted, comma-separated
		omitted bool
	}{
		{"only the omitted column", map[string]any{"note": "secret-2"}, 1, "", true},
		{"omitted and recorded columns", map[string]any{"note": "secret-3", "qty": 7}, 1, "qty", true},
		{"recorded column only", map[string]any{"qty": 8}, 1, "qty", false},
		{"nothing changes", map[string]any{"note": "secret-3", "qty": 8}, 0, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := e.count()
			must(t, e.db.Model(&TrItem{ID: 1}).Updates(c.update).Error)
			recs := e.audit("")[n:]
			if len(recs) != c.records {
				t.Fatalf("%d records, want %d:%s", len(recs), c.records, dump(recs))
			}
			if c.records == 0 {
				return
			}
			r := recs[0]
			var cols []string
			for k := range r.Diff {
				cols = append(cols, k)
			}
			if strings.Join(cols, ",") != c.diff {
				t.Errorf("diff = %v, want columns %q", r.Diff, c.diff)
			}
			if got := str(r.Metadata["omitted_changed"]); c.omitted != (got == `["note"]`) {
				t.Errorf("omitted_changed = %s, want named: %v", got, c.omitted)
			}
			for _, img := range []map[string]any{r.Before, r.After} {
				if _, ok := img["note"]; ok {
					t.Errorf("an image holds the omitted column: %v", img)
				}
			}
			if all := str(r.Before) + str(r.After) + str(r.Metadata); strings.Contains(all, "secret") {
				t.Errorf("the omitted value leaked: %s", all)
			}
		})
	}
}
