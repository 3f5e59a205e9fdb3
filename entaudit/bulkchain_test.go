package entaudit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/predicate"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// Goroutines run bulk updates over overlapping sets of rows: by id list, by id range and by a
// filter on another column, alone or two to an ent.Tx that commits or rolls back. Every bulk
// statement locks and images many rows at once, so a row shared by two statements must still
// get one record per committed change, in an unbroken chain from the inserted row to the stored
// one, and a rolled-back transaction must leave no record at all.
func TestBulkChain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const nUsers, workers, rounds = 12, 6, 40
	initial := make([]*entest.User, nUsers)
	ids := make([]int, nUsers)
	for i := range nUsers {
		// The email puts every third row in one class, a set that cuts across the id ranges.
		initial[i] = e.client.User.Create().SetName("u" + strconv.Itoa(i)).
			SetEmail(fmt.Sprintf("u%02d.m3-%d@x", i, i%3)).SaveX(ctx)
		ids[i] = initial[i].ID
	}
	increments := make([]atomic.Int64, nUsers)
	// From PostgreSQL 18 on, updates take no lock of the hook's own, and lock their rows in the
	// order ent's statements alone do: an operation can deadlock as it does without the hook.
	// Before 18 none may.
	old := pgtest.ServerVersion(t, e.db.URL) >= 180000
	var deadlocks atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for r := range rounds {
				if err := bulkChainStep(e, rng, ids, increments, fmt.Sprintf("w%d-%d", w, r)); err != nil {
					if old && isDeadlock(err) {
						deadlocks.Add(1) // rolled back whole, recorded nowhere: as ent alone
						continue
					}
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if old {
		t.Logf("%d operations deadlocked", deadlocks.Load())
	}

	rows := only(e.audit(t), "users")
	inserts := map[string]auditRow{}
	updates := map[string][]auditRow{}
	for _, r := range rows {
		switch r.Kind {
		case "insert":
			inserts[r.ResourceID] = r
		case "update":
			updates[r.ResourceID] = append(updates[r.ResourceID], r)
		default:
			t.Errorf("unexpected record %v", r)
		}
	}
	var total int64
	for i, id := range ids {
		key := strconv.Itoa(id)
		ins, ok := inserts[key]
		if !ok {
			t.Errorf("user %d: no insert record", id)
			continue
		}
		if ins.After["age"] != 0.0 || ins.After["name"] != initial[i].Name || ins.After["email"] != initial[i].Email {
			t.Errorf("user %d: insert after %v, created %+v", id, ins.After, initial[i])
		}
		// Each committed change adds exactly 1 to age, so the after ages number the records;
		// delivery order and timestamps say nothing reliable about commit order.
		chain := updates[key]
		sort.SliceStable(chain, func(a, b int) bool { return num(chain[a].After["age"]) < num(chain[b].After["age"]) })
		want := increments[i].Load()
		total += want
		if int64(len(chain)) != want {
			t.Errorf("user %d: %d update records, %d committed increments", id, len(chain), want)
		}
		prev := ins.After
		for j, r := range chain {
			if got := num(r.After["age"]); got != float64(j+1) {
				t.Errorf("user %d record %d: after age %v, want %d", id, j, got, j+1)
			}
			if !reflect.DeepEqual(r.Before, prev) {
				t.Errorf("user %d record %d: before %v != previous after %v", id, j, r.Before, prev)
			}
			prev = r.After
		}
		stored := e.client.User.GetX(ctx, id)
		if prev["age"] != float64(stored.Age) || prev["name"] != stored.Name || prev["email"] != stored.Email {
			t.Errorf("user %d: last after %v, stored %+v", id, prev, stored)
		}
		if int64(stored.Age) != want {
			t.Errorf("user %d: age %d, committed increments %d", id, stored.Age, want)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d update records checked over %d rows", total, nUsers)
}

// bulkChainStep runs one random bulk change and counts, per row, the increments that committed.
// Every transaction takes its row locks in ascending id order (each statement locks ORDER BY id,
// and a transaction's second range starts no lower than its first), so none can deadlock.
func bulkChainStep(e *env, rng *rand.Rand, ids []int, inc []atomic.Int64, tag string) error {
	ctx := context.Background()
	var col *core.Collector
	if rng.IntN(3) == 0 {
		col = core.NewCollector()
		ctx = core.NewContext(ctx, col)
	}
	n := len(ids)
	// span picks a run of 3 to 6 neighbouring rows starting at or after from.
	span := func(from int) (lo, hi int) {
		lo = from + rng.IntN(n-1-from)
		return lo, min(n, lo+3+rng.IntN(4))
	}
	byIDs := func(lo, hi int) (predicate.User, []int) {
		return user.IDIn(ids[lo:hi]...), indexes(lo, hi)
	}
	byRange := func(lo, hi int) (predicate.User, []int) {
		return user.And(user.IDGTE(ids[lo]), user.IDLTE(ids[hi-1])), indexes(lo, hi)
	}
	update := func(c *entest.UserClient, p predicate.User, rows []int) error {
		got, err := c.Update().Where(p).AddAge(1).SetName(tag).Save(ctx)
		if err == nil && got != len(rows) {
			err = fmt.Errorf("%s: bulk update changed %d rows, want %d", tag, got, len(rows))
		}
		return err
	}
	count := func(rows []int) {
		for _, i := range rows {
			inc[i].Add(1)
		}
	}
	var err error
	switch rng.IntN(5) {
	case 0: // id list, in the hook's own transaction
		p, rows := byIDs(span(0))
		if err = update(e.client.User, p, rows); err == nil {
			count(rows)
		}
	case 1: // id range as a predicate
		p, rows := byRange(span(0))
		if err = update(e.client.User, p, rows); err == nil {
			count(rows)
		}
	case 2: // one email class or a run of ids: a set with gaps
		class := rng.IntN(3)
		lo, hi := span(0)
		p := user.Or(user.EmailContains(fmt.Sprintf(".m3-%d@", class)), user.IDIn(ids[lo:hi]...))
		var rows []int
		for i := range n {
			if i%3 == class || (i >= lo && i < hi) {
				rows = append(rows, i)
			}
		}
		if err = update(e.client.User, p, rows); err == nil {
			count(rows)
		}
	case 3, 4: // two overlapping bulk updates in one ent.Tx, committed or rolled back
		commit := rng.IntN(2) == 0
		lo1, hi1 := span(0)
		p1, rows1 := byIDs(lo1, hi1)
		p2, rows2 := byRange(span(lo1))
		var tx *entest.Tx
		if tx, err = e.client.Tx(ctx); err != nil {
			break
		}
		err = update(tx.User, p1, rows1)
		if err == nil {
			err = update(tx.User, p2, rows2)
		}
		if err != nil || !commit {
			if rerr := tx.Rollback(); err == nil {
				err = rerr
			}
			break
		}
		if err = tx.Commit(); err == nil {
			count(rows1)
			count(rows2)
		}
	}
	if col != nil {
		for _, r := range col.Finish(nil) {
			if qerr := e.w.Enqueue(r); qerr != nil && err == nil {
				err = qerr
			}
		}
	}
	return err
}

// indexes returns lo, lo+1, ..., hi-1.
func indexes(lo, hi int) []int {
	out := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}
