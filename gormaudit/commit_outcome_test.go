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
// cancel request pass, as the server does when it arrives after the commit point.
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
// db.Transaction and GORM's own per-statement transaction.
func TestCommitOutcome(t *testing.T) {
	for _, cfg := range []struct {
		name string
		cfg  envConfig
	}{
		{"Writer", envConfig{}},
		{"InTransaction", envConfig{opts: gormaudit.Options{InTransaction: true}}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
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
	// Wait for the COMMITs the server may still be running after their clients went away.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy int
		must(t, e.pg.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_locks WHERE relation = 'slows'::regclass AND pid <> pg_backend_pid()").Scan(&busy))
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions still hold slows", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var present []int
	must(t, e.db.Model(&Slow{}).Order("id").Pluck("id", &present).Error)
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

// TestCommitOutcomeCancelledCommitThatCommitted: a COMMIT whose context is cancelled while
// PostgreSQL commits anyway delivers the records, unflagged; one that fails in the database
// (deferred constraint) drops them.
func TestCommitOutcomeCancelledCommitThatCommitted(t *testing.T) {
	e := newEnv(t, envConfig{}, &Slow{})
	must(t, e.db.Exec(slowTrigger).Error)
	ctx, cancel := context.WithCancel(identity())
	defer cancel()
	err := e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&Slow{ID: 1, SleepMs: 300, IgnoreCancel: true}).Error; err != nil {
			return err
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		return nil
	})
	if err == nil || !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "cancel") && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Transaction = %v, want the cancellation of COMMIT", err)
	}
	var n int64
	must(t, e.db.Model(&Slow{}).Count(&n).Error)
	if n != 1 {
		t.Fatalf("%d rows (COMMIT: %v), want the change committed by PostgreSQL", n, err)
	}
	r := e.one("resource_type = 'slows'")
	if r.Action != "slows.insert" || r.ResourceID != "1" || r.Metadata["commit_outcome"] != nil {
		t.Fatalf("record = %+v, want the insert of 1, not flagged", r)
	}

	err = e.db.WithContext(identity()).Create(&Slow{ID: 2, Fail: true}).Error
	if err == nil || !strings.Contains(err.Error(), "23514") {
		t.Fatalf("Create = %v, want the deferred check's failure", err)
	}
	if got := e.audit("resource_id = '2'"); len(got) != 0 {
		t.Fatalf("records of a rolled-back change: %s", dump(got))
	}
}
