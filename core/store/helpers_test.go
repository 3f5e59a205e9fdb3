package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// env is one test's database, store and writer.
type env struct {
	db *pgtest.DB
	st *store.Store
	w  *core.Writer
}

func newEnv(t testing.TB, opts store.Options) *env {
	t.Helper()
	db := pgtest.New(t)
	opts.Schema = db.Schema
	st, err := store.New(db.Pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 500, FlushInterval: 10 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return &env{db: db, st: st, w: w}
}

// write enqueues records and waits until they are stored.
func (e *env) write(t testing.TB, recs ...*core.Record) {
	t.Helper()
	if err := e.tryWrite(recs...); err != nil {
		t.Fatal(err)
	}
}

// tryWrite is write for goroutines other than the test's.
func (e *env) tryWrite(recs ...*core.Record) error {
	for _, r := range recs {
		if err := e.w.Enqueue(r); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.w.Flush(ctx); err != nil {
		return err
	}
	if s := e.w.Stats(); s.Failed > 0 {
		return fmt.Errorf("writer rejected %d records", s.Failed)
	}
	return nil
}

var (
	actions   = []string{"invoice.sent", "invoice.paid", "user.delete", "user.login", "http.request"}
	kinds     = []core.Kind{core.KindHTTP, core.KindInsert, core.KindUpdate, core.KindDelete, core.KindCustom}
	sevs      = []core.Severity{core.SeverityInfo, core.SeverityInfo, core.SeverityWarning, core.SeverityError, core.SeverityCritical}
	resources = []string{"invoices", "users", "orders"}
)

// seed makes n varied records per tenant (and n without a tenant), spread over the hour before
// base, some sharing a timestamp so that id breaks ties.
func seed(tenants []string, n int, base time.Time) []*core.Record {
	var out []*core.Record
	for ti, tenant := range append(tenants, "") {
		for i := range n {
			at := base.Add(-time.Duration(i/3) * time.Second).Add(-time.Duration(ti) * time.Millisecond)
			r := &core.Record{
				ID:           core.NewID(),
				OccurredAt:   at,
				Kind:         kinds[i%len(kinds)],
				Action:       actions[(i/2)%len(actions)],
				Severity:     sevs[i%len(sevs)],
				Tenant:       core.Tenant{ID: tenant},
				Actor:        core.Actor{ID: fmt.Sprintf("u-%d", i%4), Type: core.ActorTenantUser, Email: fmt.Sprintf("User%d@Example.com", i%4)},
				ResourceType: resources[i%len(resources)],
				ResourceID:   fmt.Sprint(i % 10),
				RequestID:    fmt.Sprintf("req-%d", i%6),
				Method:       "POST",
				Path:         fmt.Sprintf("/api/v1/%s/%d", resources[i%len(resources)], i%10),
				Status:       []int{200, 201, 404, 500, 302}[i%5],
				IP:           netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i%2, i%7+1)),
				Metadata:     map[string]any{"note": fmt.Sprintf("word%d", i%9), "tenant_marker": "marker-" + tenant},
			}
			if tenant != "" {
				r.Tenant.Slug = "slug-" + tenant
			}
			if i%10 == 0 {
				r.Actor = core.Actor{}
			}
			out = append(out, r)
		}
	}
	return out
}

// matches is the test's own statement of the filter semantics.
func matches(r *core.Record, sc store.Scope, f store.Filter) bool {
	if !sc.AllTenants && r.Tenant.ID != sc.TenantID {
		return false
	}
	at := r.OccurredAt.Truncate(time.Microsecond)
	from, to := f.From.Truncate(time.Microsecond), f.To.Truncate(time.Microsecond)
	if !from.IsZero() && at.Before(from) || !to.IsZero() && !at.Before(to) {
		return false
	}
	actorType := r.Actor.Type
	if actorType == "" {
		actorType = core.ActorAnonymous
	}
	switch {
	case f.ActorID != "" && r.Actor.ID != f.ActorID,
		f.ActorType != "" && actorType != f.ActorType,
		f.ActorEmail != "" && !strings.EqualFold(r.Actor.Email, f.ActorEmail),
		f.Action != "" && r.Action != f.Action,
		f.ActionPrefix != "" && !strings.HasPrefix(r.Action, f.ActionPrefix),
		f.ResourceType != "" && r.ResourceType != f.ResourceType,
		f.ResourceID != "" && r.ResourceID != f.ResourceID,
		f.RequestID != "" && r.RequestID != f.RequestID,
		f.StatusMin != 0 && r.Status < f.StatusMin,
		f.StatusMax != 0 && r.Status > f.StatusMax,
		f.IP.IsValid() && !f.IP.Contains(r.IP):
		return false
	}
	if len(f.Kinds) > 0 && !contains(f.Kinds, r.Kind) || len(f.Severities) > 0 && !contains(f.Severities, r.Severity) {
		return false
	}
	if f.Search != "" {
		note, _ := r.Metadata["note"].(string)
		if note != f.Search {
			return false
		}
	}
	return true
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// expected returns the ids of recs in scope matching f, in order.
func expected(recs []*core.Record, sc store.Scope, f store.Filter, order store.Order) []uuid.UUID {
	var sel []*core.Record
	for _, r := range recs {
		if matches(r, sc, f) {
			sel = append(sel, r)
		}
	}
	less := func(a, b *core.Record) bool {
		ta, tb := a.OccurredAt.Truncate(time.Microsecond), b.OccurredAt.Truncate(time.Microsecond)
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.ID.String() < b.ID.String()
	}
	// insertion sort keeps the helper dependency-free and the inputs are small
	for i := 1; i < len(sel); i++ {
		for j := i; j > 0; j-- {
			a, b := sel[j-1], sel[j]
			swap := less(b, a)
			if order != store.OldestFirst {
				swap = less(a, b)
			}
			if !swap {
				break
			}
			sel[j-1], sel[j] = b, a
		}
	}
	ids := make([]uuid.UUID, len(sel))
	for i, r := range sel {
		ids[i] = r.ID
	}
	return ids
}

// listAll pages through a query with the given page size and returns the ids in order.
func listAll(t testing.TB, st *store.Store, sc store.Scope, q store.Query) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		p, err := st.List(context.Background(), sc, q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		for _, r := range p.Records {
			ids = append(ids, r.ID)
		}
		if p.NextCursor == "" {
			return ids
		}
		q.Cursor = p.NextCursor
	}
}
