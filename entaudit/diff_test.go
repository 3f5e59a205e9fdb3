package entaudit_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// An update record's diff is the diff of its two images, whichever way the hook read them: a
// locked read before the UPDATE, or (PostgreSQL 18 and later) the UPDATE returning each row as
// it was and as it is, whose diff is made as the rows are scanned. Values of every kind change,
// stay or turn null, an ignored column changes, a redacted one too.
func TestUpdateDiffIsTheImagesDiff(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.IgnoreFields = []string{"email"} }))
	ctx := context.Background()
	var first int
	for i := range 40 {
		c := e.client.User.Create().SetName("diff").SetEmail(fmt.Sprintf("d%d@x", i)).SetAge(i % 3).
			SetProfile(map[string]any{"plan": "pro", "seats": float64(i % 2)}).SetRecoveryCode("rc").SetPasswordHash("h")
		if i%2 == 0 {
			c.SetNickname("n")
		}
		u := c.SaveX(ctx)
		if i == 0 {
			first = u.ID
		}
	}
	col := core.NewCollector()
	actx := core.NewContext(ctx, col)
	steps := []func() error{
		func() error { // age changes on every row, the JSON document on half of them
			return e.client.User.Update().Where(user.Name("diff")).AddAge(1).
				SetProfile(map[string]any{"plan": "pro", "seats": float64(1)}).Exec(actx)
		},
		func() error { // a null nickname turns into a value; the other half stay as they were
			return e.client.User.Update().Where(user.Name("diff")).SetNickname("n").Exec(actx)
		},
		func() error { // a value turns null, and the redacted column changes
			return e.client.User.Update().Where(user.Name("diff"), user.AgeGT(2)).ClearNickname().SetRecoveryCode("rc2").Exec(actx)
		},
		func() error { // nothing changes: no records
			return e.client.User.Update().Where(user.Name("diff"), user.AgeLTE(2)).
				SetProfile(map[string]any{"plan": "pro", "seats": float64(1)}).Exec(actx)
		},
		func() error { // only the ignored column changes: no record
			return e.client.User.UpdateOneID(first).SetEmail("other@x").Exec(actx)
		},
		func() error { // the ignored column and another
			return e.client.User.UpdateOneID(first).SetEmail("other2@x").AddAge(1).Exec(actx)
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	ignore := func(k string) bool { return k == "email" }
	recs := col.Records()
	var updates, redactedChanges int
	for _, r := range recs {
		if r.Kind != core.KindUpdate {
			continue
		}
		updates++
		want := core.Diff(r.Before, r.After, ignore)
		got := map[string]core.Change{}
		for k, ch := range r.Diff {
			got[k] = ch
		}
		// A redacted column's images are masked, so the images cannot tell whether it changed:
		// its diff entry is checked by what the steps did.
		for _, k := range []string{"recovery_code", "password_hash"} {
			if _, ok := got[k]; ok {
				if k == "recovery_code" {
					redactedChanges++
				}
				delete(got, k)
			}
			delete(want, k)
		}
		if len(want) == 0 {
			want = map[string]core.Change{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("record %s: diff %v, the images' diff %v (before %v, after %v)", r.ResourceID, r.Diff, want, r.Before, r.After)
		}
		if len(r.Diff) == 0 {
			t.Errorf("record %s of an update that changed nothing: %v", r.ResourceID, r)
		}
	}
	// 40 rows in the first step, the 20 without a nickname in the second, in the third those of
	// age 3 after the first (i%3 == 2), one in the last.
	aged := 0
	for i := range 40 {
		if i%3 == 2 {
			aged++
		}
	}
	if want := 40 + 20 + aged + 1; updates != want {
		t.Errorf("%d update records, want %d", updates, want)
	}
	if redactedChanges != aged {
		t.Errorf("%d diffs name the redacted column, want %d", redactedChanges, aged)
	}
}
