package entaudit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/asset"
)

func histEnv(t *testing.T) (*env, entaudit.History) {
	t.Helper()
	e := newEnv(t)
	st, err := store.New(e.db.Pool, store.Options{Schema: e.db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return e, entaudit.History{Store: st, Scope: store.TenantScope("t-1"), Schema: entest.AuditSchema}
}

func histCtx() context.Context {
	ctx := core.WithActor(context.Background(), core.Actor{ID: "alice", Type: core.ActorTenantUser})
	return core.WithTenant(ctx, core.Tenant{ID: "t-1"})
}

func (e *env) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// assetFields is what an Asset's image restores: all but the time ent sets on every update, and
// the entity's client configuration.
func assetFields(a *entest.Asset) map[string]any {
	out := map[string]any{"sku": a.Sku, "data": a.Data, "digest": a.Digest, "meta": a.Meta, "tags": a.Tags,
		"ref": a.Ref, "status": a.Status, "price": a.Price, "active": a.Active, "size": a.Size, "note": a.Note}
	if a.SeenAt != nil {
		out["seen_at"] = a.SeenAt.UTC()
	}
	if a.Digest == nil || *a.Digest == nil { // ent reads a NULL bytea of a Nillable field as a pointer to nil
		out["digest"] = nil
	} else {
		out["digest"] = *a.Digest
	}
	return out
}

func randomAsset(rng *rand.Rand, u *entest.AssetUpdateOne) {
	u.SetData([]byte{0, byte(rng.IntN(256)), 0xfe}).SetMeta(map[string]any{"n": fmt.Sprint(rng.IntN(3)), "deep": []any{"x"}}).
		SetTags([]string{fmt.Sprint(rng.IntN(4))}).SetRef(uuid.New()).
		SetStatus([]asset.Status{asset.StatusDraft, asset.StatusLive, asset.StatusGone}[rng.IntN(3)]).
		SetPrice(float64(rng.IntN(1000)) / 8).SetActive(rng.IntN(2) == 0).SetSize(int64(rng.IntN(1 << 40)))
	if rng.IntN(2) == 0 {
		u.SetSeenAt(time.Date(2026, 5, 1+rng.IntN(20), 3, 4, 5, 678901000, time.UTC))
	} else {
		u.ClearSeenAt()
	}
	if rng.IntN(2) == 0 {
		u.SetNote(fmt.Sprint("note ", rng.IntN(5)))
	} else {
		u.ClearNote()
	}
	if rng.IntN(3) == 0 {
		u.SetDigest([]byte("d"))
	} else {
		u.ClearDigest()
	}
}

// TestEntAsOfRandomWrites: random updates of an entity with every kind of field; each snapshot
// taken after a write is what AsOf decodes for that time.
func TestEntAsOfRandomWrites(t *testing.T) {
	e, h := histEnv(t)
	ctx := histCtx()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	a, err := e.client.Asset.Create().SetSku("a-1").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type snap struct {
		at time.Time
		a  *entest.Asset
	}
	first, err := e.client.Asset.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	snaps := []snap{{time.Now(), first}}
	for range 30 {
		u := e.client.Asset.UpdateOneID(a.ID)
		randomAsset(rng, u)
		if a, err = u.Save(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := e.client.Asset.Get(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap{time.Now(), got})
	}
	e.flush(t)
	for i, s := range snaps {
		var got entest.Asset
		v, err := h.AsOf(context.Background(), &got, a.ID, s.at)
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		if !reflect.DeepEqual(assetFields(&got), assetFields(s.a)) || !got.UpdatedAt.Equal(s.a.UpdatedAt) || got.ID != a.ID {
			t.Fatalf("snapshot %d:\n got %#v\nwant %#v", i, assetFields(&got), assetFields(s.a))
		}
		if v.Deleted || len(v.Masked) != 0 {
			t.Fatalf("snapshot %d: %+v", i, v)
		}
	}
}

// TestEntRevertRoundTrip: reverting an update restores the entity except its masked fields and is
// recorded with reverted_from; a deleted entity with an application-chosen id is created again;
// one with a database id cannot be, and says so.
func TestEntRevertRoundTrip(t *testing.T) {
	e, h := histEnv(t)
	ctx := histCtx()
	u, err := e.client.User.Create().SetName("ann").SetEmail("ann@example.com").SetAge(30).
		SetPasswordHash("h1").SetRecoveryCode("r1").SetProfile(map[string]any{"lang": "en"}).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.User.UpdateOneID(u.ID).SetName("bob").SetAge(31).SetNickname("b").SetPasswordHash("h2").
		SetRecoveryCode("r2").SetProfile(map[string]any{"lang": "de"}).Save(ctx); err != nil {
		t.Fatal(err)
	}
	e.flush(t)
	page, err := h.Store.History(ctx, h.Scope, "users", fmt.Sprint(u.ID), store.HistoryQuery{Limit: 1})
	if err != nil || len(page.Records) != 1 || page.Records[0].Kind != core.KindUpdate {
		t.Fatalf("history: %v %+v", err, page)
	}
	upd := page.Records[0]
	res, err := entaudit.Revert(ctx, e.client, entest.AuditSchema, upd)
	if err != nil {
		t.Fatal(err)
	}
	if res.Op != entaudit.RevertUpdated || !reflect.DeepEqual(res.Masked, []string{"password_hash", "recovery_code"}) {
		t.Fatalf("result %+v", res)
	}
	got, err := e.client.User.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "ann" || got.Age != 30 || got.Nickname != nil || got.Profile["lang"] != "en" ||
		got.PasswordHash != "h2" || got.RecoveryCode != "r2" {
		t.Fatalf("after the revert: %+v", got)
	}
	rows := only(e.audit(t), "users")
	last := rows[len(rows)-1]
	if last.Kind != "update" || last.Metadata[entaudit.MetaRevertedFrom] != upd.ID.String() || last.ActorID != "alice" {
		t.Fatalf("the revert's record: %v", last)
	}

	// A document (UUID id chosen by the application) deleted and brought back.
	created := time.Now()
	d, err := e.client.Document.Create().SetTitle("plan").SetVersion(3).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	kept := time.Now()
	if err := e.client.Document.DeleteOneID(d.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	e.flush(t)
	var old entest.Document
	v, err := h.AsOf(ctx, &old, d.ID, time.Now())
	if err != nil || !v.Deleted || old.Title != "plan" {
		t.Fatalf("as of after the delete: %+v %+v %v", v, old, err)
	}
	res, err = h.RevertTo(ctx, e.client, &entest.Document{}, d.ID, kept)
	if err != nil || res.Op != entaudit.RevertCreated {
		t.Fatalf("revert to %s: %+v %v", kept, res, err)
	}
	back, err := e.client.Document.Get(ctx, d.ID)
	if err != nil || back.Title != "plan" || back.Version != 3 {
		t.Fatalf("the document is not back: %+v %v", back, err)
	}
	// Back to before it existed: deleted again.
	if res, err = h.RevertTo(ctx, e.client, &entest.Document{}, d.ID, created); err != nil || res.Op != entaudit.RevertDeleted {
		t.Fatalf("revert to before the history: %+v %v", res, err)
	}

	// A user (database id) deleted cannot be created again with its id.
	if err := e.client.User.DeleteOneID(u.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	e.flush(t)
	page, _ = h.Store.History(ctx, h.Scope, "users", fmt.Sprint(u.ID), store.HistoryQuery{Limit: 1})
	if _, err := entaudit.Revert(ctx, e.client, entest.AuditSchema, page.Records[0]); err == nil {
		t.Fatal("a row with a database id was created again")
	}
}

// TestEntRevertIncompatible: a column dropped, or changed to a type its old values do not fit,
// makes a revert fail before it writes.
func TestEntRevertIncompatible(t *testing.T) {
	e, h := histEnv(t)
	ctx := histCtx()
	d, err := e.client.Document.Create().SetTitle("x7").SetVersion(1).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if _, err := e.client.Document.UpdateOneID(d.ID).SetTitle("y").SetVersion(2).Save(ctx); err != nil {
		t.Fatal(err)
	}
	e.flush(t)
	e.exec(t, `ALTER TABLE documents ALTER COLUMN title TYPE integer USING length(title)`)
	e.sql.SetMaxIdleConns(0) // the pooled connections hold plans of the old table
	var ie *entaudit.IncompatibleError
	if _, err := h.RevertTo(ctx, e.client, &entest.Document{}, d.ID, t1); !errors.As(err, &ie) || ie.Column != "title" {
		t.Fatalf("changed type: %v", err)
	}
	e.exec(t, `ALTER TABLE documents DROP COLUMN title`)
	if _, err := h.RevertTo(ctx, e.client, &entest.Document{}, d.ID, t1); !errors.As(err, &ie) || ie.Column != "title" {
		t.Fatalf("dropped column: %v", err)
	}
}

// TestEntAsOfConcurrentWriters: writers updating their own documents at once.
func TestEntAsOfConcurrentWriters(t *testing.T) {
	e, h := histEnv(t)
	type snap struct {
		at    time.Time
		title string
	}
	const writers, writes = 4, 12
	snaps := make([][]snap, writers)
	ids := make([]uuid.UUID, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ctx := histCtx()
			d, err := e.client.Document.Create().SetTitle("t0").Save(ctx)
			if err != nil {
				errs <- err
				return
			}
			ids[w] = d.ID
			snaps[w] = append(snaps[w], snap{time.Now(), "t0"})
			for i := 1; i <= writes; i++ {
				title := fmt.Sprintf("w%d-%d", w, i)
				if _, err := e.client.Document.UpdateOneID(d.ID).SetTitle(title).Save(ctx); err != nil {
					errs <- err
					return
				}
				snaps[w] = append(snaps[w], snap{time.Now(), title})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.flush(t)
	for w, ss := range snaps {
		for _, s := range ss {
			var d entest.Document
			if _, err := h.AsOf(context.Background(), &d, ids[w], s.at); err != nil || d.Title != s.title {
				t.Fatalf("writer %d at %s: %q %v, want %q", w, s.at, d.Title, err, s.title)
			}
		}
	}
}
