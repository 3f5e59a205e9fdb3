package entaudit_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// Records of a transaction are delivered when it commits, in statement order (ent runs commit
// hooks in reverse order of registration).
func TestTxCommitOrder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := tx.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	tx.User.UpdateOne(u).SetAge(1).ExecX(ctx)
	p := tx.Pet.Create().SetName("rex").SaveX(ctx)
	tx.User.UpdateOne(u).SetAge(2).ExecX(ctx)
	tx.Pet.DeleteOne(p).ExecX(ctx)
	if rows := e.audit(t); len(rows) != 0 {
		t.Fatalf("records before the commit: %v", rows)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)
	want := []string{"users.insert", "users.update", "pets.insert", "users.update", "pets.delete"}
	if len(rows) != len(want) {
		t.Fatalf("rows = %v", rows)
	}
	for i, r := range rows {
		if r.Action != want[i] {
			t.Errorf("row %d = %s, want %s", i, r.Action, want[i])
		}
	}
	if rows[3].Before["age"] != 1.0 || rows[3].After["age"] != 2.0 {
		t.Errorf("second update = %v", rows[3])
	}
}

func TestTxRollback(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.UpdateOne(u).SetAge(5).ExecX(ctx)
	tx.User.Create().SetName("b").SetEmail("b@x").ExecX(ctx)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)
	if len(rows) != 1 || rows[0].Kind != "insert" || rows[0].ResourceID != strconv.Itoa(u.ID) {
		t.Fatalf("rows = %v, want only the first insert", rows)
	}
}

// A COMMIT that fails (here a deferred constraint) drops the transaction's records.
func TestTxFailedCommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.exec(t, `ALTER TABLE pets ADD CONSTRAINT pets_name_key UNIQUE (name) DEFERRABLE INITIALLY DEFERRED`)
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Pet.Create().SetName("rex").ExecX(ctx)
	tx.Pet.Create().SetName("rex").ExecX(ctx)
	if err := tx.Commit(); err == nil {
		t.Fatal("the commit succeeded despite the deferred constraint")
	}
	if rows := e.audit(t); len(rows) != 0 {
		t.Fatalf("rows = %v, want none", rows)
	}
}

// A write that fails inside the transaction the hook opened leaves neither the change nor a
// record, and the hook's transaction is rolled back.
func TestOwnTxFailedWrite(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	e.client.User.Create().SetName("b").SetEmail("b@x").SaveX(ctx)
	if err := e.client.User.UpdateOne(a).SetEmail("b@x").Exec(ctx); err == nil {
		t.Fatal("the duplicate email was accepted")
	}
	if rows := e.audit(t); len(rows) != 2 {
		t.Fatalf("rows = %v, want the two inserts", rows)
	}
	// The connection went back to the pool with no transaction open.
	e.client.User.UpdateOne(a).SetAge(3).ExecX(ctx)
	if rows := e.audit(t); len(rows) != 3 || rows[2].After["age"] != 3.0 {
		t.Fatalf("rows = %v", rows)
	}
}

// Without the driver wrapper, updates and deletes outside a transaction run as they would
// without auditing: the missing wrapper is logged once (and Check reports it at start-up), and
// the changes are recorded from before images read without a lock, flagged. Inside an ent.Tx the
// records are exact and not flagged.
func TestNoTransaction(t *testing.T) {
	var log logBuffer
	e := newEnv(t, unwrapped(), withOptions(func(o *entaudit.Options) { o.Logger = log.logger() }))
	ctx := context.Background()
	u := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	v := e.client.User.Create().SetName("v").SetEmail("v@x").SaveX(ctx)
	if err := e.client.User.UpdateOne(u).SetAge(3).Exec(ctx); err != nil {
		t.Fatalf("update outside a transaction: %v", err)
	}
	if err := e.client.User.Update().Where(user.ID(v.ID)).SetName("v2").Exec(ctx); err != nil {
		t.Fatalf("bulk update outside a transaction: %v", err)
	}
	if err := e.client.User.DeleteOneID(v.ID).Exec(ctx); err != nil {
		t.Fatalf("delete outside a transaction: %v", err)
	}
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.UpdateOne(u).SetAge(4).ExecX(ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := log.count(`msg="entaudit: the client's driver is not wrapped`); n != 1 {
		t.Errorf("the missing wrapper was logged %d times, want once: %s", n, log.String())
	}
	rows := e.audit(t)
	want := []struct {
		kind, id string
		diff     string
		flagged  bool
	}{
		{"insert", strconv.Itoa(u.ID), "", false},
		{"insert", strconv.Itoa(v.ID), "", false},
		{"update", strconv.Itoa(u.ID), "age", true},
		{"update", strconv.Itoa(v.ID), "name", true},
		{"delete", strconv.Itoa(v.ID), "name", true},
		{"update", strconv.Itoa(u.ID), "age", false},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %v", rows)
	}
	for i, w := range want {
		r := rows[i]
		flagged := r.Metadata["before_unlocked"] == true
		if r.Kind != w.kind || r.ResourceID != w.id || (w.diff != "" && r.Diff[w.diff] == nil) || flagged != w.flagged ||
			(r.Severity == "warning") != w.flagged || (w.kind != "insert" && r.Before == nil) {
			t.Errorf("row %d = %v (severity %s), want %s of %s, flagged %v", i, r, r.Severity, w.kind, w.id, w.flagged)
		}
	}
	if got := e.client.User.GetX(ctx, u.ID).Age; got != 4 {
		t.Errorf("age = %d", got)
	}
}

// Check tells a driver the hook can lock before images with from one it cannot.
func TestCheck(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	plain := entsql.OpenDB(dialect.Postgres, db)
	for _, c := range []struct {
		name string
		drv  dialect.Driver
		want error
	}{
		{"wrapped", entaudit.Driver(plain), nil},
		{"wrapped, then debug", dialect.Debug(entaudit.Driver(plain)), nil},
		{"not wrapped", plain, entaudit.ErrNoTransaction},
		{"wrapped inside another wrapper", otherWrapper{entaudit.Driver(plain)}, entaudit.ErrNoTransaction},
		{"nil", nil, entaudit.ErrNoTransaction},
		{"not PostgreSQL", entaudit.Driver(entsql.OpenDB(dialect.MySQL, db)), entaudit.ErrDialect},
	} {
		if err := entaudit.Check(c.drv); !errors.Is(err, c.want) || (err == nil) != (c.want == nil) {
			t.Errorf("%s: Check = %v, want %v", c.name, err, c.want)
		}
	}
}

type otherWrapper struct{ dialect.Driver }

// logBuffer collects what a logger writes, for tests that count warnings.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func TestInTransaction(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.InTransaction = true }))
	ctx := core.WithActor(context.Background(), core.Actor{ID: "job-7", Type: core.ActorService})
	// In an ent.Tx: the records are inserted just before the commit.
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := tx.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	tx.User.UpdateOne(u).SetAge(4).ExecX(ctx)
	// Read inside the transaction: rows written there already would be visible here.
	if n := countInTx(t, tx); n != 0 {
		t.Fatalf("%d audit rows in the transaction before the commit", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := e.db.Count(t); n != 2 {
		t.Fatalf("%d audit rows after the commit, want 2", n)
	}
	// Rolled back: nothing.
	tx, err = e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.UpdateOne(u).SetAge(5).ExecX(ctx)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// Outside an ent.Tx: inside the hook's own transaction.
	e.client.User.Update().Where(user.ID(u.ID)).SetAge(6).ExecX(ctx)
	rows := e.audit(t)
	if len(rows) != 3 {
		t.Fatalf("rows = %v", rows)
	}
	for _, r := range rows {
		if r.ActorID != "job-7" {
			t.Errorf("actor = %q, want the context's", r.ActorID)
		}
	}
	if rows[2].Before["age"] != 4.0 || rows[2].After["age"] != 6.0 {
		t.Errorf("last row = %v", rows[2])
	}
	// Written in the application's transactions, the records are links of the hash chain.
	var unchained, links int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE seq IS NULL), count(seq) FROM audit_logs`).Scan(&unchained, &links); err != nil {
		t.Fatal(err)
	}
	if unchained != 0 || links != 3 {
		t.Errorf("%d records outside the chain, %d links; want 0 and 3", unchained, links)
	}
}

// countInTx counts the rows of audit_logs as the transaction tx sees them.
func countInTx(t *testing.T, tx *entest.Tx) int {
	t.Helper()
	rows, err := tx.QueryContext(context.Background(), `SELECT count(*) FROM audit_logs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := -1
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// When the audit INSERT fails, the application's transaction is rolled back and Commit says so.
func TestInTransactionFailure(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) {
		o.InTransaction = true
		o.Schema = "no_such_schema"
	}))
	ctx := context.Background()
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.Create().SetName("a").SetEmail("a@x").ExecX(ctx)
	if err := tx.Commit(); err == nil {
		t.Fatal("commit succeeded without its audit records")
	}
	if n := e.client.User.Query().CountX(ctx); n != 0 {
		t.Fatalf("%d users stored without audit records", n)
	}
}

// With a request Collector in the context, committed records join the request; the Writer gets
// nothing.
func TestCollector(t *testing.T) {
	e := newEnv(t)
	col := core.NewCollector()
	ctx := core.NewContext(context.Background(), col)
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := tx.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	// A CreateBulk runs its mutations nested, the first finishing last; the records keep the
	// statement order.
	bulk := tx.Pet.CreateBulk(tx.Pet.Create().SetName("p1"), tx.Pet.Create().SetName("p2"), tx.Pet.Create().SetName("p3")).SaveX(ctx)
	if col.Len() != 0 {
		t.Fatalf("collector has %d records before the commit", col.Len())
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	e.client.User.UpdateOne(u).SetAge(9).ExecX(ctx)
	recs := col.Records()
	if len(recs) != 5 || recs[0].Kind != core.KindInsert || recs[4].Kind != core.KindUpdate || recs[4].ResourceID != strconv.Itoa(u.ID) {
		t.Fatalf("collector = %v", recs)
	}
	for i, p := range bulk {
		if r := recs[1+i]; r.ResourceType != "pets" || r.ResourceID != strconv.Itoa(p.ID) {
			t.Errorf("record %d = %s/%s, want pets/%d", 1+i, r.ResourceType, r.ResourceID, p.ID)
		}
	}
	if rows := e.audit(t); len(rows) != 0 {
		t.Fatalf("the writer got %v", rows)
	}
}

// ent runs the creates of a CreateBulk nested, the last finishing first. Outside a transaction
// each INSERT commits on its own, and the records still arrive in statement order: in a request
// Collector, and in audit_logs with InTransaction.
func TestCreateBulkOrderOutsideTx(t *testing.T) {
	t.Run("collector", func(t *testing.T) {
		e := newEnv(t)
		col := core.NewCollector()
		ctx := core.NewContext(context.Background(), col)
		pets := e.client.Pet.CreateBulk(e.client.Pet.Create().SetName("p1"), e.client.Pet.Create().SetName("p2"),
			e.client.Pet.Create().SetName("p3")).SaveX(ctx)
		recs := col.Records()
		if len(recs) != len(pets) {
			t.Fatalf("collector = %v", recs)
		}
		for i, p := range pets {
			if r := recs[i]; r.ResourceType != "pets" || r.ResourceID != strconv.Itoa(p.ID) || r.After["name"] != p.Name {
				t.Errorf("record %d = %s/%s %v, want pets/%d", i, r.ResourceType, r.ResourceID, r.After, p.ID)
			}
		}
		// The next bulk starts afresh.
		more := e.client.Pet.CreateBulk(e.client.Pet.Create().SetName("p4"), e.client.Pet.Create().SetName("p5")).SaveX(ctx)
		if recs := col.Records(); len(recs) != 5 || recs[3].ResourceID != strconv.Itoa(more[0].ID) || recs[4].ResourceID != strconv.Itoa(more[1].ID) {
			t.Errorf("collector = %v", recs)
		}
	})
	t.Run("in transaction", func(t *testing.T) {
		e := newEnv(t, withOptions(func(o *entaudit.Options) { o.InTransaction = true }))
		ctx := context.Background()
		docs := e.client.Document.CreateBulk(e.client.Document.Create().SetTitle("a"), e.client.Document.Create().SetTitle("b"),
			e.client.Document.Create().SetTitle("c")).SaveX(ctx)
		rows, err := e.db.Pool.Query(ctx, `SELECT resource_id FROM audit_logs ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			got = append(got, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := []string{docs[0].ID.String(), docs[1].ID.String(), docs[2].ID.String()}
		if !slices.Equal(got, want) {
			t.Errorf("audit rows = %v, want %v", got, want)
		}
	})
}

// Without a Collector, records go to the Writer with the identity of the context.
func TestIdentityFromContext(t *testing.T) {
	e := newEnv(t)
	ctx := core.WithActor(context.Background(), core.Actor{ID: "u-1", Email: "ops@example.com"})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t-1"})
	ctx = core.WithRequestID(ctx, "req-1")
	e.client.User.Create().SetName("a").SetEmail("a@x").ExecX(ctx)
	rows := e.audit(t)
	if len(rows) != 1 || rows[0].ActorID != "u-1" || rows[0].TenantID != "t-1" || rows[0].RequestID != "req-1" {
		t.Fatalf("rows = %v", rows)
	}
}

func TestSkippedSchema(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.client.Setting.Create().SetKey("k").SetValue("v").SaveX(ctx)
	e.client.Setting.UpdateOne(s).SetValue("w").ExecX(ctx)
	e.client.Setting.DeleteOne(s).ExecX(ctx)
	if rows := e.audit(t); len(rows) != 0 {
		t.Fatalf("rows = %v", rows)
	}
}

// An upsert is an INSERT to ent's hooks. When it updated an existing row, the record says so.
func TestUpsert(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).SaveX(ctx)
	id, err := e.client.User.Create().SetName("a2").SetEmail("a@x").SetAge(2).
		OnConflictColumns(user.FieldEmail).UpdateNewValues().ID(ctx)
	if err != nil || id != first.ID {
		t.Fatalf("upsert: %d, %v", id, err)
	}
	id2, err := e.client.User.Create().SetName("b").SetEmail("b@x").
		OnConflictColumns(user.FieldEmail).UpdateNewValues().ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)
	if len(rows) != 3 {
		t.Fatalf("rows = %v", rows)
	}
	if r := rows[1]; r.Kind != "update" || r.ResourceID != strconv.Itoa(id) || r.After["name"] != "a2" ||
		r.Metadata["upsert"] != true || r.Metadata["before_unknown"] != nil || r.Before["name"] != "a" ||
		r.Diff["name"]["from"] != "a" || r.Diff["age"]["to"] != 2.0 || r.Severity != "info" {
		t.Errorf("upsert that updated = %v, want its before image and diff", r)
	}
	if r := rows[2]; r.Kind != "insert" || r.ResourceID != strconv.Itoa(id2) || r.Metadata != nil {
		t.Errorf("upsert that inserted = %v", r)
	}
}

// A write that panics inside the transaction the hook opened releases it: with a pool of one
// connection, the next write would otherwise wait forever.
func TestOwnTxPanic(t *testing.T) {
	e := newEnv(t)
	e.sql.SetMaxOpenConns(1)
	ctx := context.Background()
	u := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	e.client.User.Use(func(next ent.Mutator) ent.Mutator {
		return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
			if name, _ := m.(*entest.UserMutation).Name(); name == "boom" {
				panic("boom")
			}
			return next.Mutate(ctx, m)
		})
	})
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the write's panic", p)
			}
		}()
		e.client.User.UpdateOne(u).SetName("boom").ExecX(ctx)
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.client.User.UpdateOne(u).SetName("calm").Exec(ctx); err != nil {
		t.Fatalf("the next write: %v", err)
	}
	if rows := e.audit(t); len(rows) != 2 || rows[1].After["name"] != "calm" {
		t.Fatalf("rows = %v", rows)
	}
}
