package entaudit_test

import (
	"bytes"
	"context"
	"database/sql"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// roundTripEnv is an audited client whose statements are counted, and a bare client on the same
// tables.
type roundTripEnv struct {
	trips   atomic.Int64
	db      *pgtest.DB
	client  *entest.Client
	bare    *entest.Client
	collect *core.Collector
}

func newRoundTripEnv(t *testing.T) *roundTripEnv {
	t.Helper()
	e := &roundTripEnv{db: pgtest.New(t)}
	sqlDB, err := sql.Open("pgx", e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	e.bare = entest.NewClient(entest.Driver(entsql.OpenDB(dialect.Postgres, sqlDB)))
	if err := e.bare.Schema.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	drv := entaudit.Driver(&countingDriver{Driver: entsql.OpenDB(dialect.Postgres, sqlDB), n: &e.trips})
	e.client = entest.NewClient(entest.Driver(drv))
	w := core.NewWriter(core.NewPostgresSink(e.db.Pool, core.PostgresSinkOptions{Schema: e.db.Schema}), core.WriterOptions{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	e.client.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w}))
	return e
}

// ctx returns a context whose records go to a fresh collector, e.collect.
func (e *roundTripEnv) ctx() context.Context {
	e.collect = core.NewCollector()
	return core.NewContext(context.Background(), e.collect)
}

// sameUser fails unless the audited client's result equals the row as a bare client reads it.
func sameUser(t *testing.T, got, want *entest.User) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Email != want.Email || got.Age != want.Age ||
		!reflect.DeepEqual(got.Nickname, want.Nickname) || got.RecoveryCode != want.RecoveryCode ||
		!bytes.Equal(got.Avatar, want.Avatar) || !reflect.DeepEqual(got.Profile, want.Profile) ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("the audited client returned\n%+v\nthe row is\n%+v", got, want)
	}
}

// An UpdateOne takes as many round trips as ent alone (BEGIN, UPDATE, SELECT, COMMIT): the locked
// read of the before image is the one more statement, and ent's read of the updated row is
// answered from the row the UPDATE returned, which is exactly what the read would return. From
// PostgreSQL 18 on the UPDATE returns the before image too, and the locked read is gone.
func TestUpdateOneRoundTrips(t *testing.T) {
	e := newRoundTripEnv(t)
	ctx := context.Background()
	u := e.bare.User.Create().SetName("a").SetEmail("a@example.com").SetAge(30).
		SetProfile(map[string]any{"plan": "pro", "seats": 3}).SetAvatar([]byte{1, 2, 3}).SaveX(ctx)
	// The first update of the table also asks once whether it has triggers or rules.
	if _, err := e.client.User.UpdateOneID(u.ID).SetAge(31).Save(e.ctx()); err != nil {
		t.Fatal(err)
	}
	before := e.trips.Load()
	got, err := e.client.User.UpdateOneID(u.ID).SetAge(32).SetName("b").SetNickname("bee").Save(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	want := int64(4) // BEGIN, the locked SELECT, UPDATE ... RETURNING, COMMIT
	if pgtest.ServerVersion(t, e.db.URL) >= 180000 {
		want = 3 // BEGIN, UPDATE ... RETURNING WITH (OLD AS ..., NEW AS ...) ..., COMMIT
	}
	if n := e.trips.Load() - before; n != want {
		t.Errorf("%d round trips, want %d", n, want)
	}
	sameUser(t, got, e.bare.User.GetX(ctx, u.ID))
	recs := e.collect.Records()
	if len(recs) != 1 || recs[0].Kind != core.KindUpdate || recs[0].Before["name"] != "a" || recs[0].After["name"] != "b" ||
		recs[0].After["nickname"] != "bee" {
		t.Fatalf("records %+v", recs)
	}
}

// On a table with a trigger, ent's read of the updated row goes to the database: an AFTER trigger
// may change the row once more, and ent must see the row as it is, as it does without the hook.
func TestUpdateOneReadsBackThroughTriggers(t *testing.T) {
	e := newRoundTripEnv(t)
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `CREATE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_trigger_depth() = 1 THEN
		UPDATE users SET nickname = 'touched ' || NEW.age WHERE id = NEW.id;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER users_touch AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION users_touch();`)
	if err != nil {
		t.Fatal(err)
	}
	u := e.bare.User.Create().SetName("a").SetEmail("a@example.com").SetAge(30).SaveX(ctx)
	trips := int64(5) // BEGIN, the locked SELECT, UPDATE ... RETURNING, ent's SELECT, COMMIT
	if pgtest.ServerVersion(t, e.db.URL) >= 180000 {
		trips = 4 // no locked SELECT: the UPDATE returns the row before it as well
	}
	for age := 31; age <= 32; age++ {
		before := e.trips.Load()
		got, err := e.client.User.UpdateOneID(u.ID).SetAge(age).Save(e.ctx())
		if err != nil {
			t.Fatal(err)
		}
		want := e.bare.User.GetX(ctx, u.ID)
		if want.Nickname == nil || *want.Nickname != "touched "+strconv.Itoa(age) {
			t.Fatalf("the trigger did not run: %+v", want)
		}
		sameUser(t, got, want)
		if n := e.trips.Load() - before; age == 32 && n != trips {
			t.Errorf("%d round trips, want %d", n, trips)
		}
	}
}

// In an ent.Tx of a wrapped client, a bulk update reads its rows first before PostgreSQL 18 (the
// locked SELECT, then UPDATE ... RETURNING); from 18 on, the hook tells that the transaction's
// statements pass through the wrapper with a probe the wrapper answers itself, and the UPDATE
// returns both images alone. In an ent.Tx of a client that is not wrapped, the probe reaches the
// database, and the rows are read first on every version.
func TestUpdateInTxRoundTrips(t *testing.T) {
	e := newRoundTripEnv(t)
	ctx := context.Background()
	a := e.bare.User.Create().SetName("a").SetEmail("a@example.com").SetAge(30).SaveX(ctx)
	e.bare.User.Create().SetName("b").SetEmail("b@example.com").SetAge(30).SaveX(ctx)
	// The first update also asks the server's version, once.
	if err := e.client.User.UpdateOneID(a.ID).SetAge(31).Exec(e.ctx()); err != nil {
		t.Fatal(err)
	}
	old := pgtest.ServerVersion(t, e.db.URL) >= 180000
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := e.trips.Load()
	n, err := tx.User.Update().Where(user.AgeGTE(30)).SetNickname("n").Save(e.ctx())
	if err != nil || n != 2 {
		t.Fatalf("update: %d, %v", n, err)
	}
	want := int64(2) // the locked SELECT, UPDATE ... RETURNING
	if old {
		want = 1 // UPDATE ... RETURNING WITH (OLD AS ..., NEW AS ...) ...
	}
	if got := e.trips.Load() - before; got != want {
		t.Errorf("%d round trips in the transaction, want %d", got, want)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := e.collect.Records()
	if len(recs) != 2 || recs[0].Before["nickname"] != nil || recs[0].After["nickname"] != "n" {
		t.Fatalf("records %+v", recs)
	}
}
