package entaudit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent"

	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/pet"
)

// slowCommit makes the COMMIT of a transaction that wrote a pet named in slow_plan slow or
// failing: a deferred constraint trigger names the backend after the pet (so that it can be
// found and terminated), fails when fail is set, holds the WAL flush past the commit point with
// delay_commit, and sleeps sleep_ms, letting a cancel request pass with ignore_cancel (as the
// server does when it arrives after the commit point). A cancel request may still cancel such a
// COMMIT: PostgreSQL signals the backend and its process group, and the second signal can land
// after the trigger let the first pass. TestCommitOutcome checks against the table whatever
// happened; a test that needs the server to commit holds back its reply instead
// (faults.Proxy.HoldCommitReply).
const slowCommit = `
CREATE TABLE slow_plan (key text PRIMARY KEY, sleep_ms int NOT NULL, fail bool NOT NULL,
	ignore_cancel bool NOT NULL, delay_commit bool NOT NULL);
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	k text := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
	p slow_plan;
BEGIN
	SELECT * INTO p FROM slow_plan WHERE key = k;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	PERFORM set_config('application_name', 'slow-' || k, true);
	IF p.fail THEN
		RAISE EXCEPTION 'deferred check failed' USING ERRCODE = '23514';
	END IF;
	IF p.delay_commit THEN
		PERFORM set_config('commit_siblings', '0', true);
		PERFORM set_config('commit_delay', '100000', true);
	END IF;
	BEGIN
		PERFORM pg_sleep(p.sleep_ms / 1000.0);
	EXCEPTION WHEN query_canceled THEN
		IF NOT p.ignore_cancel THEN
			RAISE;
		END IF;
	END;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE OR DELETE ON pets
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

// change is one disturbed write and how to tell from the database whether it committed.
type change struct {
	op, name string // op is create, update or delete; name is the name the trigger sees
	own      bool   // made outside an ent.Tx, in the hook's own transaction
	fault    commitFault
}

type cancelKey struct{}

// TestCommitOutcome disturbs the COMMIT of many transactions (cancelled context before and
// during COMMIT, backend terminated during COMMIT, a deferred constraint failing) with random
// delays, in ent transactions and in the hook's own transactions, and checks against the table
// that every committed change has exactly one record and no rolled-back change has one, in
// Writer and InTransaction modes.
func TestCommitOutcome(t *testing.T) {
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("InTransaction=%v", inTx), func(t *testing.T) {
			e := newEnv(t, withOptions(func(o *entaudit.Options) { o.InTransaction = inTx }))
			e.exec(t, slowCommit)
			// Runs inside the hook's transaction: cancels the context after the write, before
			// COMMIT.
			e.client.Use(func(next ent.Mutator) ent.Mutator {
				return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
					v, err := next.Mutate(ctx, m)
					if c, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
						c()
					}
					return v, err
				})
			})
			const iterations = 60
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
			var changes []change
			committed := map[string]int{}
			for i := 1; i <= iterations; i++ {
				c := change{fault: commitFault(rng.IntN(5)), own: rng.IntN(2) == 0}
				if i <= 10 {
					c.fault, c.own = commitFault((i-1)%5), i > 5 // each fault on each path
				}
				switch rng.IntN(3) {
				case 0:
					c.op, c.own = "create", false // a create outside a transaction commits on its own
				case 1:
					c.op = "update"
				default:
					c.op = "delete"
				}
				c.name = fmt.Sprintf("%s%d", c.op, i)
				err := disturbedWrite(t, e, rng, &c)
				if err == nil {
					committed[c.fault.String()]++
				}
				changes = append(changes, c)
			}
			t.Logf("committed per fault (application saw no error): %v", committed)
			checkChanges(t, e, changes)
		})
	}
}

// disturbedWrite makes change c with its fault.
func disturbedWrite(t *testing.T, e *env, rng *rand.Rand, c *change) error {
	bg := context.Background()
	var id int
	if c.op != "create" {
		orig := c.name
		if c.op == "update" {
			orig += "-old"
		}
		// A connection terminated after its transaction may still be in the pool: try again.
		p, err := e.client.Pet.Create().SetName(orig).Save(bg)
		if err != nil {
			p = e.client.Pet.Create().SetName(orig).SaveX(bg)
		}
		id = p.ID
	}
	sleep := rng.IntN(80)
	if c.fault == cleanCommit || c.fault == failingCommit || c.fault == cancelBeforeCommit {
		sleep = 0
	}
	e.exec(t, "INSERT INTO slow_plan VALUES ($1, $2, $3, $4, $5)", c.name, sleep, c.fault == failingCommit,
		rng.IntN(2) == 0, c.fault == killDuringCommit && rng.IntN(2) == 0)
	delay := time.Duration(rng.IntN(sleep+120)) * time.Millisecond

	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	disturb := func() {
		switch c.fault {
		case cancelDuringCommit:
			wg.Add(1)
			time.AfterFunc(delay, func() { cancel(); wg.Done() })
		case killDuringCommit:
			wg.Add(1)
			go func() {
				defer wg.Done()
				killWhenSeen(e, "slow-"+c.name, delay)
			}()
		}
	}
	write := func(ctx context.Context, client *entest.Client) error {
		switch c.op {
		case "create":
			return client.Pet.Create().SetName(c.name).Exec(ctx)
		case "update":
			return client.Pet.UpdateOneID(id).SetName(c.name).Exec(ctx)
		}
		return client.Pet.DeleteOneID(id).Exec(ctx)
	}
	if c.own {
		if c.fault == cancelBeforeCommit {
			ctx = context.WithValue(ctx, cancelKey{}, cancel)
		}
		disturb()
		return write(ctx, e.client)
	}
	tx, err := e.client.Tx(ctx)
	if err != nil {
		return err
	}
	if err := write(ctx, tx.Client()); err != nil {
		_ = tx.Rollback()
		return err
	}
	if c.fault == cancelBeforeCommit {
		cancel()
	}
	disturb()
	return tx.Commit()
}

// killWhenSeen terminates the backend named app, delay after it is first seen.
func killWhenSeen(e *env, app string, delay time.Duration) {
	ctx := context.Background()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		var pid int
		err := e.db.Pool.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app).Scan(&pid)
		if err != nil {
			continue
		}
		time.Sleep(delay)
		_, _ = e.db.Pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2", pid, app)
		return
	}
}

// checkChanges compares what the table says of each change with its records.
func checkChanges(t *testing.T, e *env, changes []change) {
	t.Helper()
	ctx := context.Background()
	// Wait for the COMMITs the server may still be running after their clients went away.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy int
		if err := e.db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE relation = 'pets'::regclass AND pid <> pg_backend_pid()").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions still hold pets", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := map[string]int{} // "op name" -> records
	unknown := 0
	for _, r := range e.audit(t) {
		if r.ResourceType != "pets" {
			continue
		}
		img := r.After
		if r.Kind == "delete" {
			img = r.Before
		}
		name, _ := img["name"].(string)
		recs[r.Kind+" "+name]++
		if r.Metadata["commit_outcome"] == "unknown" {
			unknown++
		}
	}
	var wrong []string
	done := 0
	for _, c := range changes {
		var n int
		if err := e.db.Pool.QueryRow(ctx, "SELECT count(*) FROM pets WHERE name = $1", c.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		isIn := n == 1
		if c.op == "delete" {
			isIn = n == 0
		}
		kind := map[string]string{"create": "insert", "update": "update", "delete": "delete"}[c.op]
		got := recs[kind+" "+c.name]
		want := 0
		if isIn {
			want = 1
			done++
		}
		if got != want {
			wrong = append(wrong, fmt.Sprintf("%s %s (own tx %v, %v): committed %v, %d records", c.op, c.name, c.own, c.fault, isIn, got))
		}
	}
	t.Logf("%d of %d changes committed, %d flagged commit_outcome unknown", done, len(changes), unknown)
	if len(wrong) > 0 {
		t.Errorf("changes whose records do not match the table:\n%s", strings.Join(wrong, "\n"))
	}
	if done == 0 || done == len(changes) {
		t.Errorf("%d of %d changes committed: the faults did not take effect", done, len(changes))
	}
}

// A COMMIT whose context is cancelled, or whose connection is cut, once PostgreSQL has committed
// (its reply is held back on the way, as a slow network or a busy server would) delivers the
// records, unflagged, in an ent.Tx and in the hook's own transaction; a COMMIT the database fails
// drops them.
func TestCommitOutcomeCancelledCommitThatCommitted(t *testing.T) {
	e := newEnv(t, proxied())
	e.exec(t, slowCommit)
	bg := context.Background()
	a := e.client.Pet.Create().SetName("a").SaveX(bg)
	b := e.client.Pet.Create().SetName("b").SaveX(bg)
	e.exec(t, "INSERT INTO slow_plan VALUES ('fails', 0, true, false, false)")
	inTx := func(ctx context.Context, name string) error {
		tx, err := e.client.Tx(ctx)
		if err != nil {
			return err
		}
		tx.Pet.Create().SetName(name).ExecX(ctx)
		e.proxy.HoldCommitReply(1)
		return tx.Commit()
	}
	ownTx := func(p *entest.Pet) func(ctx context.Context, name string) error {
		return func(ctx context.Context, name string) error {
			e.proxy.HoldCommitReply(1)
			return e.client.Pet.UpdateOne(p).SetName(name).Exec(ctx)
		}
	}
	cases := []struct {
		name  string
		write func(ctx context.Context, name string) error
		cut   bool // cut the connection instead of cancelling the context
	}{
		{"in-tx", inTx, false},
		{"own-tx", ownTx(a), false},
		{"in-tx-cut", inTx, true},
		{"own-tx-cut", ownTx(b), true},
	}
	for i, c := range cases {
		ctx, cancel := context.WithCancel(bg)
		seen := make(chan error, 1)
		giveUp := cancel
		if c.cut {
			giveUp = func() { e.proxy.Cut() }
		}
		go func() { seen <- whenHeld(e, uint64(i+1), giveUp) }()
		err := c.write(ctx, c.name)
		cancel()
		if serr := <-seen; serr != nil {
			t.Fatalf("%s: %v (write: %v)", c.name, serr, err)
		}
		if err == nil || !c.cut && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "cancel") {
			t.Fatalf("%s: %v, want COMMIT's failure", c.name, err)
		}
		n, err := e.client.Pet.Query().Where(pet.Name(c.name)).Count(bg)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%s: %d rows, want the change committed by PostgreSQL", c.name, n)
		}
	}
	tx, err := e.client.Tx(bg)
	if err != nil {
		t.Fatal(err)
	}
	tx.Pet.Create().SetName("fails").ExecX(bg)
	if err := tx.Commit(); err == nil || !strings.Contains(err.Error(), "23514") {
		t.Fatalf("Commit = %v, want the deferred check's failure", err)
	}
	var got []string
	for _, r := range e.audit(t) {
		got = append(got, fmt.Sprintf("%s %v %v", r.Action, r.After["name"], r.Metadata["commit_outcome"]))
	}
	want := []string{"pets.insert a <nil>", "pets.insert b <nil>", "pets.insert in-tx <nil>", "pets.update own-tx <nil>",
		"pets.insert in-tx-cut <nil>", "pets.update own-tx-cut <nil>"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// whenHeld calls giveUp once the proxy holds back the reply to a COMMIT, the held-th since it
// started (that COMMIT has committed), and reports an error if it does not in a minute.
func whenHeld(e *env, held uint64, giveUp func()) error {
	defer giveUp()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if e.proxy.Counters().HeldCommits >= held {
			return nil
		}
	}
	return fmt.Errorf("no reply to COMMIT was held back: %+v", e.proxy.Counters())
}

// Without the Driver wrapper there is no other connection to ask: a transaction whose context
// was cancelled before COMMIT is known not to have committed (no record), and one cancelled
// after PostgreSQL committed it (the reply held back on the way) is recorded, flagged
// commit_outcome unknown.
func TestCommitOutcomeUnwrapped(t *testing.T) {
	e := newEnv(t, unwrapped(), proxied())
	bg := context.Background()
	for _, name := range []string{"before", "during"} {
		ctx, cancel := context.WithCancel(bg)
		tx, err := e.client.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx.Pet.Create().SetName(name).ExecX(ctx)
		seen := make(chan error, 1)
		if name == "before" {
			cancel()
			seen <- nil
		} else {
			e.proxy.HoldCommitReply(1)
			go func() { seen <- whenHeld(e, 1, cancel) }()
		}
		start := time.Now()
		err = tx.Commit()
		took := time.Since(start)
		if serr := <-seen; serr != nil {
			t.Fatalf("%s: %v (Commit: %v)", name, serr, err)
		}
		if err == nil {
			t.Fatalf("%s: Commit succeeded despite the cancellation", name)
		}
		// Nothing can tell the outcome here: Commit must not wait for it until the lookup's
		// timeout (5 s).
		if took > 2*time.Second {
			t.Fatalf("%s: Commit returned after %v", name, took)
		}
		cancel()
	}
	for name, want := range map[string]int{"before": 0, "during": 1} {
		n, err := e.client.Pet.Query().Where(pet.Name(name)).Count(bg)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("%d rows named %s, want %d", n, name, want)
		}
	}
	var got []string
	for _, r := range e.audit(t) {
		got = append(got, fmt.Sprintf("%s %v %v", r.Action, r.After["name"], r.Metadata["commit_outcome"]))
	}
	if want := "pets.insert during unknown"; strings.Join(got, "\n") != want {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}
