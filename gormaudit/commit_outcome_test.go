package gormaudit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/gormaudit"
)

// Slow is written in transactions whose COMMIT takes time: a deferred constraint trigger sleeps
// SleepMs at COMMIT, or fails the COMMIT when Fail is set. With IgnoreCancel the trigger lets a
// cancel request pass, as the server does when it arrives after the commit point. A cancel
// request may still cancel such a COMMIT: PostgreSQL signals the backend and its process group,
// and the second signal can land after the trigger let the first pass. The tests with random
// faults check against the table whatever happened; a test that needs the server to commit holds
// back its reply instead (faults.Proxy.HoldCommitReply).
type Slow struct {
	ID           int `gorm:"primaryKey;autoIncrement:false"`
	SleepMs      int
	Fail         bool
	IgnoreCancel bool
}

// slowTrigger makes COMMIT of a transaction that wrote slows run the deferred trigger.
const slowTrigger = `
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.fail THEN
		RAISE EXCEPTION 'deferred check failed' USING ERRCODE = '23514';
	END IF;
	BEGIN
		PERFORM pg_sleep(NEW.sleep_ms / 1000.0);
	EXCEPTION WHEN query_canceled THEN
		IF NOT NEW.ignore_cancel THEN
			RAISE;
		END IF;
	END;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON slows
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();`

// commitFault is a way of disturbing a transaction's COMMIT.
type commitFault int

const (
	cancelBeforeCommit commitFault = iota // the context is cancelled before COMMIT is sent
	cancelDuringCommit                    // the context is cancelled while COMMIT runs
	killDuringCommit                      // the backend is terminated while COMMIT runs
	failingCommit                         // the deferred trigger fails COMMIT
	cleanCommit                           // nothing goes wrong
)

func (f commitFault) String() string {
	return [...]string{"cancel before COMMIT", "cancel during COMMIT", "backend killed during COMMIT",
		"COMMIT fails", "clean COMMIT"}[f]
}

// TestCommitOutcome disturbs the COMMIT of many transactions (cancelled context before and
// during COMMIT, backend terminated during COMMIT, a deferred constraint failing) with random
// delays and checks, against the table itself, that every committed change has exactly one
// record and no rolled-back change has one, in Writer and InTransaction modes, through
// db.Transaction and GORM's own per-statement transaction, and with SkipDefaultTransaction for
// single creates, updates and deletes that run in no transaction of the application's.
func TestCommitOutcome(t *testing.T) {
	skip := gorm.Config{SkipDefaultTransaction: true}
	for _, cfg := range []struct {
		name string
		cfg  envConfig
	}{
		{"Writer", envConfig{}},
		{"InTransaction", envConfig{opts: gormaudit.Options{InTransaction: true}}},
		{"SkipDefaultTransaction", envConfig{gorm: skip}},
		{"SkipDefaultTransaction/InTransaction", envConfig{gorm: skip, opts: gormaudit.Options{InTransaction: true}}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			if cfg.cfg.gorm.SkipDefaultTransaction {
				testStatementOutcome(t, cfg.cfg)
				return
			}
			e := newEnv(t, cfg.cfg, &Slow{})
			must(t, e.db.Exec(slowTrigger).Error)
			const iterations = 60
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
			committed := map[commitFault]int{}
			for i := 1; i <= iterations; i++ {
				f := commitFault(rng.IntN(5))
				if i <= 5 {
					f = commitFault(i - 1) // each fault at least once
				}
				sleep := rng.IntN(80)
				delay := time.Duration(rng.IntN(sleep+120)) * time.Millisecond
				err := disturbedWrite(e, i, f, sleep, delay, i%2 == 0)
				if err == nil {
					committed[f]++
				}
			}
			t.Logf("committed per fault (application saw no error): %v", committed)
			checkEveryChangeRecorded(t, e, iterations)
		})
	}
}

// disturbedWrite inserts Slow id with fault f; explicit chooses db.Transaction over GORM's own
// transaction.
func disturbedWrite(e *env, id int, f commitFault, sleepMs int, delay time.Duration, explicit bool) error {
	ctx, cancel := context.WithCancel(identity())
	defer cancel()
	row := &Slow{ID: id, SleepMs: sleepMs, Fail: f == failingCommit, IgnoreCancel: rand.IntN(2) == 0}
	if f == cleanCommit || f == failingCommit || f == cancelBeforeCommit {
		row.SleepMs = 0
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	disturb := func(tx *gorm.DB) error {
		switch f {
		case cancelBeforeCommit:
			cancel()
		case cancelDuringCommit:
			wg.Add(1)
			time.AfterFunc(delay, func() { cancel(); wg.Done() })
		case killDuringCommit:
			if rand.IntN(2) == 0 {
				// The WAL flush of COMMIT waits, past the commit point, where termination is held.
				if err := tx.Exec("SET LOCAL commit_siblings = 0; SET LOCAL commit_delay = 100000").Error; err != nil {
					return err
				}
			}
			var pid int
			if err := tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
				return err
			}
			wg.Add(1)
			time.AfterFunc(delay, func() {
				defer wg.Done()
				_, _ = e.pg.Pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid)
			})
		}
		return nil
	}
	if explicit || f == killDuringCommit {
		return e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(row).Error; err != nil {
				return err
			}
			return disturb(tx)
		})
	}
	// GORM's per-statement transaction: a cancellation before COMMIT comes from the model's
	// AfterCreate hook, which runs in the transaction after the INSERT.
	if f == cancelBeforeCommit {
		ctx = context.WithValue(ctx, cancelKey{}, cancel)
	} else if err := disturb(nil); err != nil {
		return err
	}
	return e.db.WithContext(ctx).Create(row).Error
}

type cancelKey struct{}

// AfterCreate cancels the statement's context when it carries a cancel function.
func (*Slow) AfterCreate(tx *gorm.DB) error {
	if c, ok := tx.Statement.Context.Value(cancelKey{}).(context.CancelFunc); ok {
		c()
	}
	return nil
}

// checkEveryChangeRecorded compares the rows of slows with the audit records of slows.
func checkEveryChangeRecorded(t *testing.T, e *env, ids int) {
	t.Helper()
	waitForSlows(t, e)
	// Read through the pgx pool: a termination aimed at a transaction that had already committed
	// may have hit its connection idle in GORM's pool.
	var present []int
	rows, err := e.pg.Pool.Query(context.Background(), "SELECT id FROM slows ORDER BY id")
	must(t, err)
	for rows.Next() {
		var id int
		must(t, rows.Scan(&id))
		present = append(present, id)
	}
	must(t, rows.Err())
	inTable := map[string]bool{}
	for _, id := range present {
		inTable[fmt.Sprint(id)] = true
	}
	recs := map[string]int{}
	unknown := 0
	for _, r := range e.audit("resource_type = 'slows'") {
		recs[r.ResourceID]++
		if r.Metadata["commit_outcome"] == "unknown" {
			unknown++
		}
	}
	var missing, phantom, twice []string
	for id := range inTable {
		if recs[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range recs {
		if !inTable[id] {
			phantom = append(phantom, id)
		}
		if n > 1 {
			twice = append(twice, id)
		}
	}
	t.Logf("%d of %d changes committed, %d records, %d flagged commit_outcome unknown",
		len(inTable), ids, len(recs), unknown)
	if len(missing)+len(phantom)+len(twice) > 0 {
		t.Errorf("committed changes without a record: %d %v; rolled-back changes with a record: %d %v; recorded twice: %v\n%s",
			len(missing), missing, len(phantom), phantom, twice, e.logs.String())
	}
	if len(inTable) == 0 || len(inTable) == ids {
		t.Errorf("%d of %d changes committed: the faults did not take effect", len(inTable), ids)
	}
}

// slowDeleteTrigger does at the COMMIT of a delete of slows what slowTrigger does for inserts
// and updates, with the deleted row's settings.
const slowDeleteTrigger = `
CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.fail THEN
		RAISE EXCEPTION 'deferred check failed' USING ERRCODE = '23514';
	END IF;
	BEGIN
		PERFORM pg_sleep(OLD.sleep_ms / 1000.0);
	EXCEPTION WHEN query_canceled THEN
		IF NOT OLD.ignore_cancel THEN
			RAISE;
		END IF;
	END;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_delete AFTER DELETE ON slows
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_delete();`

// disturbed is one statement of testStatementOutcome: an insert, update or delete of Slow id
// under fault f.
type disturbed struct {
	id     int
	op     string // "insert", "update" or "delete"
	f      commitFault
	row    Slow // the settings the deferred trigger sees
	delay  time.Duration
	failed bool // the application saw an error
}

// testStatementOutcome is TestCommitOutcome for statements that run outside any transaction of
// the application's (SkipDefaultTransaction, no db.Transaction): single creates, updates and
// hard deletes, cancelled before they run or while their commit runs, their backend terminated
// while they commit, or their deferred check failing. Every committed change must have exactly
// one record and every change that did not commit none.
func testStatementOutcome(t *testing.T, cfg envConfig) {
	e := newEnv(t, cfg, &Slow{})
	const iterations = 90
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	faults := []commitFault{cancelBeforeCommit, cancelDuringCommit, cancelDuringCommit, killDuringCommit, failingCommit, cleanCommit}
	plan := make([]*disturbed, iterations)
	ctx := context.Background()
	for i := range plan {
		d := &disturbed{id: i + 1, op: [...]string{"insert", "update", "delete"}[i%3], f: faults[rng.IntN(len(faults))]}
		if i < 3*len(faults) {
			d.f = faults[i/3] // each fault on each statement at least once
		}
		sleep := 20 + rng.IntN(80)
		d.row = Slow{ID: d.id, SleepMs: sleep, Fail: d.f == failingCommit, IgnoreCancel: rng.IntN(3) > 0}
		if d.f == cleanCommit || d.f == failingCommit || d.f == cancelBeforeCommit {
			d.row.SleepMs = 0
		}
		d.delay = time.Duration(rng.IntN(sleep+40)) * time.Millisecond
		plan[i] = d
		// Rows to update or delete exist before the triggers do; a row to update has sleep_ms -1
		// until its update commits.
		switch d.op {
		case "update":
			_, err := e.pg.Pool.Exec(ctx, "INSERT INTO slows (id, sleep_ms, fail, ignore_cancel) VALUES ($1, -1, false, false)", d.id)
			must(t, err)
		case "delete":
			_, err := e.pg.Pool.Exec(ctx, "INSERT INTO slows (id, sleep_ms, fail, ignore_cancel) VALUES ($1, $2, $3, $4)",
				d.id, d.row.SleepMs, d.row.Fail, d.row.IgnoreCancel)
			must(t, err)
		}
	}
	must(t, e.db.Exec(slowTrigger).Error)
	must(t, e.db.Exec(slowDeleteTrigger).Error)
	for _, d := range plan {
		d.failed = disturbedStatement(e, d) != nil
	}
	checkStatementsRecorded(t, e, plan)
}

// disturbedStatement runs d's statement on its own, with its fault.
func disturbedStatement(e *env, d *disturbed) error {
	ctx, cancel := context.WithCancel(identity())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	switch d.f {
	case cancelBeforeCommit:
		cancel()
	case cancelDuringCommit:
		wg.Add(1)
		time.AfterFunc(d.delay, func() { cancel(); wg.Done() })
	case killDuringCommit:
		// Whichever backend runs the statement holds a lock on slows until it has committed.
		wg.Add(1)
		time.AfterFunc(d.delay, func() {
			defer wg.Done()
			_, _ = e.pg.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
				WHERE relation = 'slows'::regclass AND pid <> pg_backend_pid()`)
		})
	}
	db := e.db.WithContext(ctx)
	switch d.op {
	case "insert":
		row := d.row
		return db.Create(&row).Error
	case "update":
		return db.Model(&Slow{ID: d.id}).Updates(map[string]any{
			"sleep_ms": d.row.SleepMs, "fail": d.row.Fail, "ignore_cancel": d.row.IgnoreCancel}).Error
	default:
		return db.Delete(&Slow{ID: d.id}).Error
	}
}

// checkStatementsRecorded compares what the statements of plan left in slows with their records.
func checkStatementsRecorded(t *testing.T, e *env, plan []*disturbed) {
	t.Helper()
	waitForSlows(t, e)
	// A termination aimed at a transaction that had already committed may have hit its connection
	// idle in GORM's pool: such a connection fails its next statement once, and is discarded.
	var rows []Slow
	err := e.db.Find(&rows).Error
	for i := 0; err != nil && i < 3; i++ {
		rows = nil
		err = e.db.Find(&rows).Error
	}
	must(t, err)
	state := map[int]Slow{}
	for _, r := range rows {
		state[r.ID] = r
	}
	recs := map[string]int{}
	unknown := 0
	for _, r := range e.audit("resource_type = 'slows'") {
		recs[r.Action+" "+r.ResourceID]++
		if r.Metadata["commit_outcome"] == "unknown" {
			unknown++
		}
	}
	var missing, phantom, twice []string
	committed, committedDespiteError := 0, 0
	for _, d := range plan {
		r, present := state[d.id]
		done := map[string]bool{"insert": present, "update": r.SleepMs >= 0, "delete": !present}[d.op]
		key := "slows." + d.op + " " + fmt.Sprint(d.id)
		desc := fmt.Sprintf("%s (%s)", key, d.f)
		switch n := recs[key]; {
		case done && n == 0:
			missing = append(missing, desc)
		case !done && n > 0:
			phantom = append(phantom, desc)
		case n > 1:
			twice = append(twice, desc)
		}
		if done {
			committed++
			if d.failed {
				committedDespiteError++
			}
		}
	}
	t.Logf("%d of %d statements committed (%d of them reported an error to the application), %d flagged commit_outcome unknown",
		committed, len(plan), committedDespiteError, unknown)
	if len(missing)+len(phantom)+len(twice) > 0 {
		t.Errorf("committed changes without a record: %d %v; changes that did not commit with a record: %d %v; recorded twice: %v\n%s",
			len(missing), missing, len(phantom), phantom, twice, e.logs.String())
	}
	if committed == 0 || committed == len(plan) {
		t.Errorf("%d of %d statements committed: the faults did not take effect", committed, len(plan))
	}
}

// waitForSlows waits for the COMMITs the server may still be running after their clients went
// away.
func waitForSlows(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy int
		must(t, e.pg.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_locks WHERE relation = 'slows'::regclass AND pid <> pg_backend_pid()").Scan(&busy))
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions still hold slows", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatementOutcomeTransparency: with SkipDefaultTransaction, a single create, update or
// delete whose deferred check fails returns what it returns without the plugin (the check's
// error, no rows affected) and leaves no record; one that commits has its record.
func TestStatementOutcomeTransparency(t *testing.T) {
	skip := gorm.Config{SkipDefaultTransaction: true}
	for _, c := range []struct {
		op   string
		fail bool
	}{{"insert", false}, {"insert", true}, {"update", false}, {"update", true}, {"delete", false}, {"delete", true}} {
		t.Run(fmt.Sprintf("%s/fail=%v", c.op, c.fail), func(t *testing.T) {
			run := func(db *gorm.DB, exec func(sql string, args ...any) error) (*gorm.DB, int64) {
				must(t, db.AutoMigrate(&Slow{}))
				if c.op != "insert" {
					// The row to update or delete, written before the triggers exist.
					must(t, exec("INSERT INTO slows (id, sleep_ms, fail, ignore_cancel) VALUES (1, 0, $1, false)",
						c.op == "delete" && c.fail))
				}
				must(t, db.Exec(slowTrigger).Error)
				must(t, db.Exec(slowDeleteTrigger).Error)
				ctx := identity()
				var res *gorm.DB
				switch c.op {
				case "insert":
					res = db.WithContext(ctx).Create(&Slow{ID: 1, Fail: c.fail})
				case "update":
					res = db.WithContext(ctx).Model(&Slow{ID: 1}).Updates(map[string]any{"sleep_ms": 1, "fail": c.fail})
				default:
					res = db.WithContext(ctx).Delete(&Slow{ID: 1})
				}
				var n int64
				must(t, db.Model(&Slow{}).Count(&n).Error)
				return res, n
			}
			bare := openBare(t, skip)
			want, wantRows := run(bare, func(sql string, args ...any) error { return bare.Exec(sql, args...).Error })
			e := newEnv(t, envConfig{gorm: skip})
			got, gotRows := run(e.db, func(sql string, args ...any) error {
				_, err := e.pg.Pool.Exec(context.Background(), sql, args...)
				return err
			})
			if !sameError(got.Error, want.Error) {
				t.Errorf("error = %v, without the plugin %v", got.Error, want.Error)
			}
			if got.RowsAffected != want.RowsAffected {
				t.Errorf("RowsAffected = %d, without the plugin %d", got.RowsAffected, want.RowsAffected)
			}
			if gotRows != wantRows {
				t.Errorf("%d rows in slows, without the plugin %d", gotRows, wantRows)
			}
			recs := e.audit("resource_type = 'slows'")
			if wantN := map[bool]int{true: 0, false: 1}[c.fail]; len(recs) != wantN {
				t.Errorf("%d records, want %d:%s", len(recs), wantN, dump(recs))
			}
		})
	}
}

// TestCommitOutcomeCancelledCommitThatCommitted: a COMMIT whose context is cancelled, or whose
// connection is cut, once PostgreSQL has committed (its reply is held back on the way, as a slow
// network or a busy server would) delivers the records, unflagged; one that fails in the
// database (deferred constraint) drops them.
func TestCommitOutcomeCancelledCommitThatCommitted(t *testing.T) {
	e := newEnv(t, envConfig{proxy: true}, &Slow{})
	must(t, e.db.Exec(slowTrigger).Error)
	for i, cut := range []bool{false, true} {
		id := i + 1
		ctx, cancel := context.WithCancel(identity())
		giveUp := cancel
		if cut {
			giveUp = func() { e.proxy.Cut() }
		}
		watchErr := make(chan error, 1)
		err := e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&Slow{ID: id}).Error; err != nil {
				return err
			}
			e.proxy.HoldCommitReply(1)
			go func() {
				defer giveUp()
				watchErr <- waitForHeldCommit(e, uint64(id))
			}()
			return nil
		})
		cancel()
		select {
		case werr := <-watchErr:
			if werr != nil {
				t.Fatal(werr)
			}
		case <-time.After(time.Minute):
			t.Fatalf("cut %v: Transaction = %v, and the reply to its COMMIT was not held back", cut, err)
		}
		if err == nil || !cut && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "cancel") && !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("cut %v: Transaction = %v, want COMMIT's failure", cut, err)
		}
		var n int64
		must(t, e.db.Model(&Slow{}).Where("id = ?", id).Count(&n).Error)
		if n != 1 {
			t.Fatalf("cut %v: %d rows (COMMIT: %v), want the change committed by PostgreSQL", cut, n, err)
		}
		r := e.one(fmt.Sprintf("resource_type = 'slows' AND resource_id = '%d'", id))
		if r.Action != "slows.insert" || r.Metadata["commit_outcome"] != nil {
			t.Fatalf("cut %v: record = %+v, want the insert of %d, not flagged", cut, r, id)
		}
	}

	err := e.db.WithContext(identity()).Create(&Slow{ID: 3, Fail: true}).Error
	if err == nil || !strings.Contains(err.Error(), "23514") {
		t.Fatalf("Create = %v, want the deferred check's failure", err)
	}
	if got := e.audit("resource_id = '3'"); len(got) != 0 {
		t.Fatalf("records of a rolled-back change: %s", dump(got))
	}
}

// waitForHeldCommit waits until e's proxy has held back the replies to held COMMITs (the last of
// them has committed).
func waitForHeldCommit(e *env, held uint64) error {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if e.proxy.Counters().HeldCommits >= held {
			return nil
		}
	}
	return fmt.Errorf("no reply to COMMIT was held back: %+v", e.proxy.Counters())
}

// BenchmarkPairedSkipDefaultTransaction measures what running each audited statement in a
// transaction costs an application that opted out of GORM's: a create of one row with a key
// chosen by the application (its image comes from RETURNING) and a hard delete of it, with
// SkipDefaultTransaction, on bare GORM and with the plugin capturing, alternating per iteration
// as runPaired does.
func BenchmarkPairedSkipDefaultTransaction(b *testing.B) {
	variants := []string{"bare", "capture"}
	dbs := make([]*benchDB, len(variants))
	for j, v := range variants {
		dbs[j] = openBench(b, v)
		if err := dbs[j].db.AutoMigrate(&Slow{}); err != nil {
			b.Fatal(err)
		}
	}
	var create, del [2]time.Duration
	op := func(j, i int) {
		d := dbs[j]
		db := d.db.Session(&gorm.Session{SkipDefaultTransaction: true}).WithContext(d.ctx())
		t0 := time.Now()
		if err := db.Create(&Slow{ID: i + 1}).Error; err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if res := db.Delete(&Slow{ID: i + 1}); res.Error != nil || res.RowsAffected != 1 {
			b.Fatal(res.Error, res.RowsAffected)
		}
		create[j] += t1.Sub(t0)
		del[j] += time.Since(t1)
	}
	for j := range dbs {
		op(j, 0) // warm up: statement caches, schema parsing
	}
	create, del = [2]time.Duration{}, [2]time.Duration{}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		for k := range dbs {
			j := k
			if i%2 == 1 {
				j = len(dbs) - 1 - k
			}
			op(j, i)
		}
	}
	b.StopTimer()
	for j, v := range variants {
		b.ReportMetric(float64(create[j].Microseconds())/float64(i), "create-"+v+"-µs/op")
		b.ReportMetric(float64(del[j].Microseconds())/float64(i), "delete-"+v+"-µs/op")
	}
	b.ReportMetric(float64(create[1])/float64(create[0]), "create-capture/bare")
	b.ReportMetric(float64(del[1])/float64(del[0]), "delete-capture/bare")
	b.ReportMetric(0, "ns/op")
}
