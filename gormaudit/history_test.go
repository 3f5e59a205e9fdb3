package gormaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/gormaudit"
)

// HistAddress is embedded: its columns are the model's.
type HistAddress struct {
	City string
	Zip  string
}

// HistDoc holds every kind of value an image normalises: JSON (a jsonb column and a
// serializer:json field), times, a date, bytes, a UUID, numeric, an embedded struct, a redacted
// field and soft deletes.
type HistDoc struct {
	ID        int64  `gorm:"primaryKey"`
	Title     string `gorm:"not null"`
	Body      []byte
	Ref       uuid.UUID `gorm:"type:uuid"`
	Attrs     Attrs     `gorm:"type:jsonb"`
	Tags      []string  `gorm:"serializer:json"`
	Due       time.Time `gorm:"type:date"`
	SeenAt    *time.Time
	Price     float64     `gorm:"type:numeric(12,2)"`
	Secret    string      `audit:"redact"`
	Address   HistAddress `gorm:"embedded;embeddedPrefix:addr_"`
	Version   int
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

// HistSeat has a composite key.
type HistSeat struct {
	Hall  string `gorm:"primaryKey"`
	Num   int64  `gorm:"primaryKey;autoIncrement:false"`
	Guest string
}

// comparable returns the fields a revert restores exactly: all but the timestamps GORM sets.
func (d HistDoc) comparable() HistDoc {
	d.CreatedAt, d.UpdatedAt, d.DeletedAt = time.Time{}, time.Time{}, gorm.DeletedAt{}
	if d.SeenAt != nil {
		s := d.SeenAt.UTC()
		d.SeenAt = &s
	}
	d.Due = d.Due.UTC()
	return d
}

func histEnv(t *testing.T) (*env, gormaudit.History) {
	t.Helper()
	e := newEnv(t, envConfig{}, &HistDoc{}, &HistSeat{})
	st, err := store.New(e.pg.Pool, store.Options{Schema: e.pg.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return e, gormaudit.History{Store: st, Scope: store.TenantScope("t-1")}
}

func (e *env) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, e.w.Flush(ctx))
}

func randomDoc(rng *rand.Rand, id int64) HistDoc {
	seen := time.Date(2026, 1, 1+rng.IntN(20), rng.IntN(24), 0, 0, 123456000, time.UTC)
	d := HistDoc{ID: id, Title: fmt.Sprintf("title %d", rng.IntN(5)), Body: []byte{0, byte(rng.IntN(256)), 0xff},
		Ref: uuid.New(), Attrs: Attrs{"n": fmt.Sprint(rng.IntN(3)), "nested": map[string]any{"ok": true}},
		Tags: []string{fmt.Sprint(rng.IntN(4))}, Due: time.Date(2026, 3, 1+rng.IntN(20), 0, 0, 0, 0, time.UTC),
		Price: float64(rng.IntN(10000)) / 100, Secret: fmt.Sprint("s", rng.IntN(3)),
		Address: HistAddress{City: []string{"Oslo", "Lima"}[rng.IntN(2)], Zip: fmt.Sprint(rng.IntN(100))}, Version: rng.IntN(100)}
	if rng.IntN(2) == 0 {
		d.SeenAt = &seen
	}
	return d
}

// TestGormAsOfRandomWrites writes random sequences of creates, updates, soft and hard deletes and
// recreations through GORM, snapshots the row after each, and checks that AsOf decodes every
// snapshot at its time (the redacted field aside, which it leaves as it was).
func TestGormAsOfRandomWrites(t *testing.T) {
	e, h := histEnv(t)
	ctx := identity()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 16))
	type snap struct {
		at   time.Time
		doc  *HistDoc // nil: no row
		soft bool
	}
	var snaps []snap
	var cur *HistDoc
	for range 40 {
		switch {
		case cur == nil:
			d := randomDoc(rng, 1)
			if err := e.db.WithContext(ctx).Unscoped().Where("id = 1").Delete(&HistDoc{}).Error; err != nil {
				t.Fatal(err)
			}
			must(t, e.db.WithContext(ctx).Create(&d).Error)
		case rng.IntN(8) == 0:
			must(t, e.db.WithContext(ctx).Delete(&HistDoc{}, 1).Error)
		case rng.IntN(8) == 0:
			must(t, e.db.WithContext(ctx).Unscoped().Delete(&HistDoc{}, 1).Error)
		default:
			d := randomDoc(rng, 1)
			must(t, e.db.WithContext(ctx).Model(&HistDoc{ID: 1}).Select("*").Omit("created_at").Updates(&d).Error)
		}
		var now HistDoc
		err := e.db.Unscoped().Take(&now, 1).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			cur = nil
			snaps = append(snaps, snap{at: time.Now()})
		case err != nil:
			t.Fatal(err)
		default:
			cur = &now
			if now.DeletedAt.Valid {
				cur = nil
			}
			snaps = append(snaps, snap{at: time.Now(), doc: &now, soft: now.DeletedAt.Valid})
		}
	}
	e.flush(t)
	for i, s := range snaps {
		var got HistDoc
		got.Secret = "kept"
		v, err := h.AsOf(context.Background(), e.db, &got, int64(1), s.at)
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		if s.doc == nil {
			// A hard delete: the last image, marked deleted.
			if !v.Deleted || v.Snapshot.Record.Kind != core.KindDelete {
				t.Fatalf("snapshot %d: want a deleted row, got %+v", i, v)
			}
			continue
		}
		want := *s.doc
		want.Secret = "kept"
		if v.Deleted != s.soft {
			t.Fatalf("snapshot %d: deleted %v, want %v", i, v.Deleted, s.soft)
		}
		if !reflect.DeepEqual(got.comparable(), want.comparable()) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("snapshot %d:\n got %+v\nwant %+v", i, got, want)
		}
		if !reflect.DeepEqual(v.Masked, []string{"secret"}) {
			t.Fatalf("snapshot %d: masked %v", i, v.Masked)
		}
	}
	var d HistDoc
	if _, err := h.AsOf(context.Background(), e.db, &d, int64(1), snaps[0].at.Add(-time.Minute)); !errors.Is(err, store.ErrBeforeHistory) {
		t.Fatalf("before the history: %v", err)
	}
}

// TestGormRevertRoundTrip: an update reverted brings the row back and is recorded with
// reverted_from; reverting the revert's own record redoes the change; a delete reverted creates
// the row again; an insert reverted deletes it.
func TestGormRevertRoundTrip(t *testing.T) {
	e, h := histEnv(t)
	ctx := identity()
	rng := rand.New(rand.NewPCG(1, 2))
	orig := randomDoc(rng, 7)
	must(t, e.db.WithContext(ctx).Create(&orig).Error)
	var before HistDoc
	must(t, e.db.Take(&before, 7).Error)
	changed := randomDoc(rng, 7)
	changed.Title = "changed"
	must(t, e.db.WithContext(ctx).Model(&HistDoc{ID: 7}).Select("*").Omit("created_at").Updates(&changed).Error)
	var afterChange HistDoc
	must(t, e.db.Take(&afterChange, 7).Error)
	e.flush(t)

	last := func() *store.Record {
		t.Helper()
		p, err := h.Store.History(context.Background(), h.Scope, "hist_docs", "7", store.HistoryQuery{Limit: 1})
		if err != nil || len(p.Records) != 1 {
			t.Fatalf("history: %v", err)
		}
		return p.Records[0]
	}
	upd := last()
	res, err := gormaudit.Revert(ctx, e.db.Model(&HistDoc{}), upd)
	if err != nil {
		t.Fatal(err)
	}
	if res.Op != gormaudit.RevertUpdated || !reflect.DeepEqual(res.Masked, []string{"secret"}) {
		t.Fatalf("result %+v", res)
	}
	var now HistDoc
	must(t, e.db.Take(&now, 7).Error)
	want := before
	want.Secret = changed.Secret // a redacted value is never written back
	if !reflect.DeepEqual(now.comparable(), want.comparable()) {
		t.Fatalf("after the revert:\n got %+v\nwant %+v", now, want)
	}
	e.flush(t)
	rev := last()
	var meta map[string]any
	if err := json.Unmarshal(rev.Metadata, &meta); err != nil || meta[gormaudit.MetaRevertedFrom] != upd.ID.String() {
		t.Fatalf("the revert's record: %s (%v)", rev.Metadata, err)
	}
	if rev.ActorID != "alice" || rev.Kind != core.KindUpdate {
		t.Fatalf("the revert's record: %+v", rev)
	}

	// Reverting the revert redoes the change.
	if _, err := gormaudit.Revert(ctx, e.db.Model(&HistDoc{}), rev); err != nil {
		t.Fatal(err)
	}
	now = HistDoc{}
	must(t, e.db.Take(&now, 7).Error)
	if !reflect.DeepEqual(now.comparable(), afterChange.comparable()) {
		t.Fatalf("after redoing:\n got %+v\nwant %+v", now, afterChange)
	}

	// A hard delete reverted: the row is back, its redacted field zero.
	mid := time.Now()
	must(t, e.db.WithContext(ctx).Unscoped().Delete(&HistDoc{}, 7).Error)
	e.flush(t)
	del := last()
	res, err = gormaudit.Revert(ctx, e.db, del) // the model from the plugin's registry
	if err != nil || res.Op != gormaudit.RevertCreated {
		t.Fatalf("revert of the delete: %+v %v", res, err)
	}
	now = HistDoc{}
	must(t, e.db.Take(&now, 7).Error)
	want = afterChange
	want.Secret = ""
	if !reflect.DeepEqual(now.comparable(), want.comparable()) {
		t.Fatalf("after undeleting:\n got %+v\nwant %+v", now, want)
	}

	// Back to before the first insert: the row is deleted (softly, as the model deletes).
	res, err = h.RevertTo(ctx, e.db, &HistDoc{}, int64(7), orig.CreatedAt.Add(-time.Hour))
	if err != nil || res.Op != gormaudit.RevertDeleted {
		t.Fatalf("revert to before the history: %+v %v", res, err)
	}
	if err := e.db.Take(&now, 7).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Fatalf("the row is still there: %v", err)
	}
	// And to the time of the hard delete's eve: restored from the soft-deleted state.
	res, err = h.RevertTo(ctx, e.db, &HistDoc{}, int64(7), mid)
	if err != nil || res.Op != gormaudit.RevertUpdated {
		t.Fatalf("revert to %s: %+v %v", mid, res, err)
	}
	now = HistDoc{}
	must(t, e.db.Take(&now, 7).Error)
	want.Secret = ""
	if !reflect.DeepEqual(now.comparable(), want.comparable()) {
		t.Fatalf("after RevertTo:\n got %+v\nwant %+v", now, want)
	}
	e.flush(t)
	var meta2 map[string]any
	if err := json.Unmarshal(last().Metadata, &meta2); err != nil || meta2[gormaudit.MetaRevertedTo] == nil || meta2["restored"] != true {
		t.Fatalf("RevertTo's record: %v %v", meta2, err)
	}
}

// TestGormRevertCompositeKeyAndIncompatible: a composite key is given as a map; an image whose
// column was dropped or changed type is refused, and nothing is written.
func TestGormRevertCompositeKeyAndIncompatible(t *testing.T) {
	e, h := histEnv(t)
	ctx := identity()
	must(t, e.db.WithContext(ctx).Create(&HistSeat{Hall: "A", Num: 3, Guest: "ann"}).Error)
	time.Sleep(2 * time.Millisecond)
	t1 := time.Now()
	must(t, e.db.WithContext(ctx).Model(&HistSeat{Hall: "A", Num: 3}).Update("guest", "bob").Error)
	e.flush(t)
	key := map[string]any{"hall": "A", "num": 3}
	var s HistSeat
	if _, err := h.AsOf(ctx, e.db, &s, key, t1); err != nil || s.Guest != "ann" {
		t.Fatalf("as of: %+v %v", s, err)
	}
	if _, err := h.RevertTo(ctx, e.db, &HistSeat{}, key, t1); err != nil {
		t.Fatal(err)
	}
	must(t, e.db.Take(&s, "hall = ? AND num = ?", "A", 3).Error)
	if s.Guest != "ann" {
		t.Fatalf("guest %q", s.Guest)
	}
	if _, err := h.AsOf(ctx, e.db, &s, int64(3), t1); err == nil {
		t.Fatal("a single value for a composite key was accepted")
	}

	// A column's type changes so that the old value no longer converts. (New connections: the
	// old ones hold plans of the old table.)
	sqlDB, err := e.db.DB()
	must(t, err)
	sqlDB.SetMaxIdleConns(0)
	must(t, e.db.Exec(`ALTER TABLE hist_seats ALTER COLUMN guest TYPE integer USING length(guest)`).Error)
	if _, err := h.RevertTo(ctx, e.db, &HistSeat{}, key, t1); !errors.Is(err, gormaudit.ErrIncompatibleImage) {
		t.Fatalf("changed type: %v", err)
	}
	// A column is gone.
	must(t, e.db.Exec(`ALTER TABLE hist_seats DROP COLUMN guest`).Error)
	var ie *gormaudit.IncompatibleError
	if _, err := h.RevertTo(ctx, e.db, &HistSeat{}, key, t1); !errors.As(err, &ie) || ie.Column != "guest" {
		t.Fatalf("dropped column: %v", err)
	}
}

// TestGormAsOfConcurrentWriters: writers updating their own rows at the same time; every
// snapshot each took after its commit is what AsOf returns for that time.
func TestGormAsOfConcurrentWriters(t *testing.T) {
	e, h := histEnv(t)
	type snap struct {
		at    time.Time
		title string
	}
	const writers, writes = 4, 15
	snaps := make([][]snap, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ctx := identity()
			id := int64(100 + w)
			if err := e.db.WithContext(ctx).Create(&HistDoc{ID: id, Title: "t0"}).Error; err != nil {
				errs <- err
				return
			}
			snaps[w] = append(snaps[w], snap{time.Now(), "t0"})
			for i := 1; i <= writes; i++ {
				title := fmt.Sprintf("w%d-%d", w, i)
				if err := e.db.WithContext(ctx).Model(&HistDoc{ID: id}).Update("title", title).Error; err != nil {
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
			var d HistDoc
			if _, err := h.AsOf(context.Background(), e.db, &d, int64(100+w), s.at); err != nil || d.Title != s.title {
				t.Fatalf("writer %d at %s: %q %v, want %q", w, s.at, d.Title, err, s.title)
			}
		}
	}
}

// TestGormRevertInTransactionMode: with Options.InTransaction the revert's record is inserted by
// the application's transaction, and still names the record it undid.
func TestGormRevertInTransactionMode(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{InTransaction: true}}, &HistSeat{})
	st, err := store.New(e.pg.Pool, store.Options{Schema: e.pg.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ctx := identity()
	must(t, e.db.WithContext(ctx).Create(&HistSeat{Hall: "B", Num: 1, Guest: "ann"}).Error)
	must(t, e.db.WithContext(ctx).Model(&HistSeat{Hall: "B", Num: 1}).Update("guest", "bob").Error)
	id := `{"hall":"B","num":1}`
	page, err := st.History(ctx, store.TenantScope("t-1"), "hist_seats", id, store.HistoryQuery{Limit: 1})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("history: %v %+v", err, page)
	}
	res, err := gormaudit.Revert(ctx, e.db.Model(&HistSeat{}), page.Records[0])
	if err != nil || res.Op != gormaudit.RevertUpdated {
		t.Fatalf("revert: %+v %v", res, err)
	}
	page, err = st.History(ctx, store.TenantScope("t-1"), "hist_seats", id, store.HistoryQuery{Limit: 1})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("history: %v", err)
	}
	var meta map[string]any
	if err := json.Unmarshal(page.Records[0].Metadata, &meta); err != nil || meta[gormaudit.MetaRevertedFrom] == nil ||
		!bytes.Contains(page.Records[0].After, []byte(`"ann"`)) {
		t.Fatalf("the revert's record: %s %s (%v)", page.Records[0].Metadata, page.Records[0].After, err)
	}
}
