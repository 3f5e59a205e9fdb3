package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// rowState is what the test knows of a row at one time: its image, or that it is deleted, or
// that it does not exist yet.
type rowState struct {
	at      time.Time
	image   map[string]any // nil before the first insert
	deleted bool
	changed map[string]core.Change // the diff of the write that made the state
}

// historyModel is the test's own account of a random sequence of writes.
type historyModel struct {
	states map[string][]rowState // by tenant + "/" + row id, in time order
}

func (m *historyModel) stateAt(key string, t time.Time) (rowState, bool) {
	var last rowState
	found := false
	for _, s := range m.states[key] {
		if s.at.After(t) {
			break
		}
		last, found = s, true
	}
	return last, found
}

// randomHistory makes a random sequence of inserts, updates and deletes (with recreations) of a
// few rows in two tenants, as the ORM integrations record them, and the model of the rows'
// states after each write.
func randomHistory(rng *rand.Rand, base time.Time, n int) ([]*core.Record, *historyModel) {
	m := &historyModel{states: map[string][]rowState{}}
	live := map[string]map[string]any{}
	var recs []*core.Record
	at := base
	for i := range n {
		at = at.Add(time.Duration(1+rng.IntN(5000)) * time.Microsecond)
		tenant := []string{"t-a", "t-b"}[rng.IntN(2)]
		id := fmt.Sprint(1 + rng.IntN(3))
		key := tenant + "/" + id
		cur := live[key]
		r := &core.Record{ID: core.NewID(), OccurredAt: at, Tenant: core.Tenant{ID: tenant},
			Actor: core.Actor{ID: fmt.Sprintf("u-%d", i%3), Type: core.ActorTenantUser}, ResourceType: "items",
			ResourceID: id, RequestID: fmt.Sprintf("req-%d", i)}
		var next map[string]any
		switch {
		case cur == nil:
			next = map[string]any{"id": id, "name": fmt.Sprintf("n%d", rng.IntN(4)), "qty": int64(rng.IntN(3)),
				"password": "s" + fmt.Sprint(rng.IntN(3)), "tags": []any{fmt.Sprint(i)}}
			r.Kind, r.After = core.KindInsert, next
		case rng.IntN(6) == 0:
			r.Kind, r.Before = core.KindDelete, cur
		default:
			next = map[string]any{}
			for k, v := range cur {
				next[k] = v
			}
			switch rng.IntN(3) {
			case 0:
				next["name"] = fmt.Sprintf("n%d", rng.IntN(4))
			case 1:
				next["qty"] = int64(rng.IntN(3))
			default:
				next["password"] = "s" + fmt.Sprint(rng.IntN(3))
			}
			r.Kind, r.Before, r.After = core.KindUpdate, cur, next
		}
		r.Action = "items." + string(r.Kind)
		r.Diff = core.Diff(r.Before, r.After, nil)
		if r.Kind == core.KindUpdate && r.Diff == nil {
			continue // a no-op update is not recorded
		}
		live[key] = next
		st := rowState{at: at.Truncate(time.Microsecond), image: next, changed: r.Diff}
		if next == nil {
			st.image, st.deleted = cur, true
		}
		m.states[key] = append(m.states[key], st)
		recs = append(recs, r)
	}
	return recs, m
}

// redactedImage is the image as stored: the password masked, numbers as JSON numbers.
func redactedImage(t *testing.T, img map[string]any) map[string]any {
	t.Helper()
	if img == nil {
		return nil
	}
	b, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out["password"] = core.Redacted
	for k, v := range out {
		if f, ok := v.(float64); ok {
			out[k] = json.Number(fmt.Sprint(f))
		}
	}
	return out
}

// TestAsOfRandomHistories checks AsOf, Diff, History and FieldHistory against the model of random
// write sequences, at every write's time, between writes, and before each row's history.
func TestAsOfRandomHistories(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 16))
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	recs, model := randomHistory(rng, base, 300)
	e.write(t, recs...)

	for key, states := range model.states {
		tenant, id := key[:3], key[4:]
		sc := store.TenantScope(tenant)
		// Every write's time, a microsecond before it, and a random time in between.
		var probes []time.Time
		for _, s := range states {
			probes = append(probes, s.at, s.at.Add(-time.Microsecond))
		}
		probes = append(probes, states[len(states)-1].at.Add(time.Hour))
		for _, at := range probes {
			want, ok := model.stateAt(key, at)
			sn, err := e.st.AsOf(ctx, sc, "items", id, at)
			if !ok {
				var be *store.BeforeHistoryError
				if !errors.As(err, &be) || !errors.Is(err, store.ErrBeforeHistory) || !be.Start.Equal(states[0].at) {
					t.Fatalf("%s at %s: want the history to start at %s, got %v", key, at, states[0].at, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s at %s: %v", key, at, err)
			}
			got, err := sn.Fields()
			if err != nil {
				t.Fatal(err)
			}
			if wantImg := redactedImage(t, want.image); !reflect.DeepEqual(got, wantImg) || sn.Deleted != want.deleted {
				t.Fatalf("%s at %s: got %v deleted=%v, want %v deleted=%v", key, at, got, sn.Deleted, wantImg, want.deleted)
			}
			if sn.Record.ResourceID != id || sn.Record.TenantID != tenant || sn.Record.OccurredAt.After(at) {
				t.Fatalf("%s at %s: record %+v", key, at, sn.Record)
			}
		}

		// The net change between two random writes.
		i, j := rng.IntN(len(states)), rng.IntN(len(states))
		if i > j {
			i, j = j, i
		}
		d, err := e.st.Diff(ctx, sc, "items", id, states[i].at, states[j].at)
		if err != nil {
			t.Fatal(err)
		}
		img := func(s rowState) map[string]any {
			if s.deleted {
				return nil
			}
			return redactedImage(t, s.image)
		}
		want := core.Diff(img(states[i]), img(states[j]), nil)
		if want == nil {
			want = map[string]core.Change{}
		}
		if a, b := img(states[i]), img(states[j]); a != nil && b != nil && want["password"] == (core.Change{}) {
			for _, s := range states[i+1 : j+1] {
				if _, ok := s.changed["password"]; ok {
					want["password"] = core.Change{From: core.Redacted, To: core.Redacted}
				}
			}
		}
		if !reflect.DeepEqual(d.Changes, want) {
			t.Fatalf("%s diff %s..%s: got %v, want %v", key, states[i].at, states[j].at, d.Changes, want)
		}

		// History pages, oldest first, list every write once, in order.
		var got []time.Time
		q := store.HistoryQuery{Order: store.OldestFirst, Limit: 4}
		for {
			p, err := e.st.History(ctx, sc, "items", id, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				got = append(got, r.OccurredAt)
			}
			if p.NextCursor == "" {
				break
			}
			q.Cursor = p.NextCursor
		}
		if len(got) != len(states) {
			t.Fatalf("%s: history has %d records, want %d", key, len(got), len(states))
		}
		for k := range got {
			if !got[k].Equal(states[k].at) {
				t.Fatalf("%s: history[%d] at %s, want %s", key, k, got[k], states[k].at)
			}
		}

		// Newest first, in pages of 3, the same records in the other order; a cursor of History
		// continues in List with the same row's filter (the cursors are List's).
		var newest []time.Time
		q = store.HistoryQuery{Limit: 3}
		for {
			p, err := e.st.History(ctx, sc, "items", id, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				newest = append(newest, r.OccurredAt)
			}
			if p.NextCursor == "" {
				break
			}
			if len(newest) == 3 {
				lp, err := e.st.List(ctx, sc, store.Query{Limit: 3, Cursor: p.NextCursor, Filter: store.Filter{ResourceType: "items",
					ResourceID: id, Kinds: []core.Kind{core.KindUpdate, core.KindInsert, core.KindDelete}}})
				if err != nil {
					t.Fatalf("%s: a History cursor in List: %v", key, err)
				}
				hp, err := e.st.History(ctx, sc, "items", id, store.HistoryQuery{Limit: 3, Cursor: p.NextCursor})
				if err != nil || len(lp.Records) != len(hp.Records) || len(lp.Records) > 0 && lp.Records[0].ID != hp.Records[0].ID {
					t.Fatalf("%s: List and History differ after the same cursor: %v", key, err)
				}
			}
			q.Cursor = p.NextCursor
		}
		if len(newest) != len(states) {
			t.Fatalf("%s: newest first, %d records, want %d", key, len(newest), len(states))
		}
		for k := range newest {
			if !newest[k].Equal(states[len(states)-1-k].at) {
				t.Fatalf("%s: newest[%d] at %s, want %s", key, k, newest[k], states[len(states)-1-k].at)
			}
		}

		// Every value the name had, newest first.
		fp, err := e.st.FieldHistory(ctx, sc, "items", id, "name", store.HistoryQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var wantNames []string
		var prev any
		for _, s := range states {
			var v any
			if !s.deleted {
				v = s.image["name"]
			}
			if v != prev {
				wantNames = append([]string{fmt.Sprint(v)}, wantNames...)
			}
			prev = v
		}
		if len(fp.Changes) != len(wantNames) {
			t.Fatalf("%s: %d name changes, want %d", key, len(fp.Changes), len(wantNames))
		}
		for k, c := range fp.Changes {
			var v any
			if err := json.Unmarshal(c.To, &v); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(v) != wantNames[k] {
				t.Fatalf("%s: name change %d to %v, want %s", key, k, v, wantNames[k])
			}
		}
	}
}

// TestHistoryIsTenantScoped: a row of another tenant with the same table and id is invisible,
// and cursors do not cross rows.
func TestHistoryIsTenantScoped(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	mk := func(tenant string, at time.Time, kind core.Kind, after map[string]any) *core.Record {
		return &core.Record{ID: core.NewID(), OccurredAt: at, Tenant: core.Tenant{ID: tenant}, Kind: kind,
			Action: "items." + string(kind), ResourceType: "items", ResourceID: "7", After: after,
			Diff: core.Diff(nil, after, nil)}
	}
	e.write(t, mk("t-a", at, core.KindInsert, map[string]any{"name": "a"}),
		mk("t-a", at.Add(time.Second), core.KindUpdate, map[string]any{"name": "a2"}),
		mk("t-b", at, core.KindInsert, map[string]any{"name": "b"}))

	if _, err := e.st.AsOf(ctx, store.TenantScope("t-c"), "items", "7", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another tenant's row: %v", err)
	}
	sn, err := e.st.AsOf(ctx, store.TenantScope("t-b"), "items", "7", at.Add(time.Hour))
	if err != nil || string(sn.Image) != `{"name": "b"}` {
		t.Fatalf("t-b: %v %s", err, sn.Image)
	}
	p, err := e.st.History(ctx, store.TenantScope("t-a"), "items", "7", store.HistoryQuery{Limit: 1})
	if err != nil || len(p.Records) != 1 || p.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, p)
	}
	if _, err := e.st.History(ctx, store.TenantScope("t-b"), "items", "7", store.HistoryQuery{Limit: 1, Cursor: p.NextCursor}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("a cursor of another tenant: %v", err)
	}
	if _, err := e.st.History(ctx, store.TenantScope("t-a"), "items", "8", store.HistoryQuery{Limit: 1, Cursor: p.NextCursor}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("a cursor of another row: %v", err)
	}
	all, err := e.st.History(ctx, store.AllTenantsScope(), "items", "7", store.HistoryQuery{})
	if err != nil || len(all.Records) != 3 {
		t.Fatalf("all tenants: %v, %d records", err, len(all.Records))
	}
}

// TestHistoryBadInput: every bad argument is refused with an error that names it.
func TestHistoryBadInput(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	sc := store.TenantScope("t-a")
	now := time.Now()
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"no type", func() error { _, err := e.st.AsOf(ctx, sc, "", "1", now); return err }(), store.ErrInvalidFilter},
		{"no id", func() error { _, err := e.st.History(ctx, sc, "items", "", store.HistoryQuery{}); return err }(), store.ErrInvalidFilter},
		{"no time", func() error { _, err := e.st.AsOf(ctx, sc, "items", "1", time.Time{}); return err }(), store.ErrInvalidFilter},
		{"bad scope", func() error { _, err := e.st.AsOf(ctx, store.Scope{}, "items", "1", now); return err }(), store.ErrInvalidScope},
		{"bad field", func() error {
			_, err := e.st.FieldHistory(ctx, sc, "items", "1", "a b", store.HistoryQuery{})
			return err
		}(), store.ErrInvalidFilter},
		{"reversed times", func() error { _, err := e.st.Diff(ctx, sc, "items", "1", now, now.Add(-time.Second)); return err }(), store.ErrInvalidFilter},
		{"bad cursor", func() error {
			_, err := e.st.History(ctx, sc, "items", "1", store.HistoryQuery{Cursor: "x"})
			return err
		}(), store.ErrInvalidCursor},
		{"nothing recorded", func() error { _, err := e.st.AsOf(ctx, sc, "items", "1", now); return err }(), store.ErrNotFound},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
}

// TestHistoryTies: records of one row at the same microsecond are paged in id order without a
// repeat or a gap, and AsOf takes the one with the highest id.
func TestHistoryTies(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	base := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	var recs []*core.Record
	for i, d := range []int{0, 0, 0, 1, 1, 2, 0, 2, 1} {
		after := map[string]any{"n": i}
		recs = append(recs, &core.Record{ID: core.NewID(), OccurredAt: base.Add(time.Duration(d) * time.Microsecond),
			Tenant: core.Tenant{ID: "t-a"}, Kind: core.KindUpdate, Action: "items.update", ResourceType: "items",
			ResourceID: "1", Before: map[string]any{"n": -1}, After: after, Diff: core.Diff(map[string]any{"n": -1}, after, nil)})
	}
	e.write(t, recs...)
	sc := store.TenantScope("t-a")
	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		want := expected(recs, sc, store.Filter{}, order)
		for _, limit := range []int{1, 2, 4} {
			var got []string
			q := store.HistoryQuery{Order: order, Limit: limit}
			for {
				p, err := e.st.History(ctx, sc, "items", "1", q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range p.Records {
					got = append(got, r.ID.String())
				}
				if p.NextCursor == "" {
					break
				}
				q.Cursor = p.NextCursor
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s by %d:\n got %v\nwant %v", order, limit, got, want)
			}
		}
	}
	newest := expected(recs, sc, store.Filter{To: base.Add(time.Microsecond)}, store.NewestFirst)[0]
	sn, err := e.st.AsOf(ctx, sc, "items", "1", base)
	if err != nil || sn.Record.ID != newest {
		t.Fatalf("as of the tied time: %v, want %s", err, newest)
	}
}
