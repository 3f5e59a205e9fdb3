package entaudit_test

import (
	"context"
	"errors"
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
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
)

// Many goroutines change the same rows through every path (UpdateOne by id and by a stale
// entity, bulk updates, transactions that commit or roll back, inside and outside ent.Tx,
// with and without a request Collector). For every row the audit records must form an unbroken
// chain: each before image equals the previous after image, and the last after image is the
// stored row.
func TestChain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const nUsers, workers, rounds = 4, 8, 30
	var ids []int
	for i := range nUsers {
		ids = append(ids, e.client.User.Create().SetName("u"+strconv.Itoa(i)).SetEmail(strconv.Itoa(i)+"@x").SaveX(ctx).ID)
	}
	var increments [nUsers]atomic.Int64
	idx := map[int]int{}
	for i, id := range ids {
		idx[id] = i
	}
	// From PostgreSQL 18 on, updates take no lock of the hook's own, and lock their rows in the
	// order ent's statements alone do: an operation can deadlock as it does without the hook.
	// Before 18 none may.
	old := pgtest.ServerVersion(t, e.db.URL) >= 180000
	var deadlocks atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for r := range rounds {
				if err := chainStep(e, rng, ids, idx, &increments, fmt.Sprintf("w%d-%d", w, r)); err != nil {
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
	byID := map[string][]auditRow{}
	for _, r := range rows {
		byID[r.ResourceID] = append(byID[r.ResourceID], r)
	}
	for i, id := range ids {
		chain := byID[strconv.Itoa(id)]
		sort.SliceStable(chain, func(a, b int) bool { return chain[a].OccurredAt.Before(chain[b].OccurredAt) })
		if len(chain) < 2 || chain[0].Kind != "insert" {
			t.Fatalf("user %d: %d records, first %v", id, len(chain), chain[0])
		}
		for j := 1; j < len(chain); j++ {
			if !reflect.DeepEqual(chain[j].Before, chain[j-1].After) {
				t.Errorf("user %d record %d: before %v != previous after %v", id, j, chain[j].Before, chain[j-1].After)
			}
		}
		stored := e.client.User.GetX(ctx, id)
		last := chain[len(chain)-1].After
		if last["age"] != float64(stored.Age) || last["name"] != stored.Name {
			t.Errorf("user %d: last after %v, stored %+v", id, last, stored)
		}
		if int64(stored.Age) != increments[i].Load() {
			t.Errorf("user %d: age %d, committed increments %d", id, stored.Age, increments[i].Load())
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d records checked", len(rows))
}

func chainStep(e *env, rng *rand.Rand, ids []int, idx map[int]int, inc *[4]atomic.Int64, tag string) error {
	ctx := context.Background()
	var col *core.Collector
	if rng.IntN(3) == 0 {
		col = core.NewCollector()
		ctx = core.NewContext(ctx, col)
	}
	id := ids[rng.IntN(len(ids))]
	var err error
	switch rng.IntN(5) {
	case 0: // UpdateOne by id, in the hook's own transaction
		err = e.client.User.UpdateOneID(id).AddAge(1).SetName(tag).Exec(ctx)
		if err == nil {
			inc[idx[id]].Add(1)
		}
	case 1: // UpdateOne of an entity loaded earlier, so stale
		var u *entest.User
		if u, err = e.client.User.Get(ctx, id); err == nil {
			if err = e.client.User.UpdateOne(u).AddAge(1).SetName(tag).Exec(ctx); err == nil {
				inc[idx[id]].Add(1)
			}
		}
	case 2: // bulk update of two rows
		a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
		var n int
		if n, err = e.client.User.Update().Where(user.IDIn(a, b)).AddAge(1).Save(ctx); err == nil {
			inc[idx[a]].Add(1)
			if b != a {
				inc[idx[b]].Add(1)
			}
			if want := map[bool]int{true: 1, false: 2}[a == b]; n != want {
				err = fmt.Errorf("bulk update changed %d rows, want %d", n, want)
			}
		}
	case 3, 4: // a transaction with two updates, committed or rolled back
		commit := rng.IntN(2) == 0
		a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
		if a > b {
			a, b = b, a // lock in one order, as the bulk updates do
		}
		var tx *entest.Tx
		if tx, err = e.client.Tx(ctx); err != nil {
			break
		}
		err = tx.User.UpdateOneID(a).AddAge(1).Exec(ctx)
		if err == nil {
			err = tx.User.UpdateOneID(b).AddAge(1).SetName(tag).Exec(ctx)
		}
		if err != nil || !commit {
			if rerr := tx.Rollback(); err == nil {
				err = rerr
			}
			break
		}
		if err = tx.Commit(); err == nil {
			inc[idx[a]].Add(1)
			inc[idx[b]].Add(1)
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

// isDeadlock reports whether err is PostgreSQL's deadlock_detected.
func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}
