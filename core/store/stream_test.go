package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// otherWriter is a writer on its own pool: the connections of another process.
func otherWriter(t *testing.T, e *env) *core.Writer {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(pool, core.PostgresSinkOptions{Schema: e.db.Schema}),
		core.WriterOptions{BatchSize: 50, FlushInterval: 5 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
		pool.Close()
	})
	return w
}

// receive collects n records from sub, failing after a deadline.
func receive(t *testing.T, sub *store.Subscription, n int) []*store.Record {
	t.Helper()
	var out []*store.Record
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case r, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription ended after %d of %d records: %v", len(out), n, sub.Err())
			}
			out = append(out, r)
		case <-timeout:
			t.Fatalf("received %d of %d records", len(out), n)
		}
	}
	return out
}

// quiet checks that nothing more arrives on sub once a marker record, written last, arrived on
// marker's subscription.
func flushAndMark(t *testing.T, w *core.Writer, tenant string) uuid.UUID {
	t.Helper()
	r := &core.Record{Kind: core.KindCustom, Action: "marker", Tenant: core.Tenant{ID: tenant}}
	if err := w.Enqueue(r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func TestStreamAcrossConnectionsWithFilters(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	var n int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_stream_listeners`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("listeners before any subscription: %d %v", n, err)
	}
	acme, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{ActionPrefix: "invoice."})
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	acmeAll, _ := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{})
	defer acmeAll.Close()
	all, _ := e.st.Subscribe(ctx, store.AllTenantsScope(), store.Filter{Severities: []core.Severity{core.SeverityCritical}})
	defer all.Close()
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_stream_listeners WHERE expires_at > now()`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("registered listeners: %d %v", n, err)
	}

	w := otherWriter(t, e)
	var want []uuid.UUID
	for i := range 30 {
		recs := []*core.Record{
			{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}},
			{Kind: core.KindCustom, Action: "user.login", Tenant: core.Tenant{ID: "acme"}},
			{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "globex"}, Severity: core.SeverityCritical},
			{Kind: core.KindCustom, Action: "invoice.sent", Severity: core.SeverityCritical},
		}
		if i%3 == 0 {
			recs[0].OccurredAt = time.Now().Add(-time.Hour) // late arrivals are streamed too
		}
		for _, r := range recs {
			if err := w.Enqueue(r); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, recs[0].ID)
	}
	got := receive(t, acme, 30)
	seen := map[uuid.UUID]bool{}
	for _, r := range got {
		if r.TenantID != "acme" || r.Action != "invoice.sent" {
			t.Fatalf("acme invoice stream got %+v", r)
		}
		seen[r.ID] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Fatalf("record %s not streamed", id)
		}
	}
	crit := receive(t, all, 60)
	var withoutTenant int
	for _, r := range crit {
		if r.Severity != core.SeverityCritical {
			t.Fatalf("critical stream got %+v", r)
		}
		if r.TenantID == "" {
			withoutTenant++
		}
	}
	if withoutTenant != 30 {
		t.Fatalf("all-tenants stream got %d records without a tenant, want 30", withoutTenant)
	}
	// Nothing else arrives: a marker written after everything is the next record on acmeAll
	// after the 60 acme records.
	mark := flushAndMark(t, w, "acme")
	rest := receive(t, acmeAll, 61)
	if rest[60].ID != mark {
		t.Fatalf("unexpected record before the marker: %+v", rest[60])
	}
	ids := map[uuid.UUID]bool{}
	for _, r := range rest {
		if ids[r.ID] {
			t.Fatalf("record %s delivered twice", r.ID)
		}
		ids[r.ID] = true
	}
	select {
	case r := <-acme.C:
		t.Fatalf("acme invoice stream got an extra record %+v", r)
	default:
	}
}

func TestStreamConcurrentWritersDeliverEachOnce(t *testing.T) {
	e := newEnv(t, store.Options{StreamBuffer: 10000})
	sub, err := e.st.Subscribe(context.Background(), store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	writers := []*core.Writer{otherWriter(t, e), otherWriter(t, e), e.w}
	const per = 400
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				r := &core.Record{Kind: core.KindCustom, Action: "a", Tenant: core.Tenant{ID: "acme"}}
				if i%5 == 0 {
					r.OccurredAt = time.Now().Add(-time.Duration(i) * time.Second)
				}
				if err := w.Enqueue(r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := receive(t, sub, per*len(writers))
	ids := map[uuid.UUID]bool{}
	for _, r := range got {
		if ids[r.ID] {
			t.Fatalf("record %s delivered twice", r.ID)
		}
		ids[r.ID] = true
	}
	mark := flushAndMark(t, e.w, "acme")
	if last := receive(t, sub, 1); last[0].ID != mark {
		t.Fatalf("extra record after all were delivered: %+v", last[0])
	}
}

// A consumer that stops reading is disconnected; the writer and the other subscribers go on.
func TestStreamSlowConsumerIsDropped(t *testing.T) {
	e := newEnv(t, store.Options{StreamBuffer: 50})
	ctx := context.Background()
	slow, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{Kinds: []core.Kind{core.KindCustom}})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	// Batches of 20 that the fast subscriber keeps up with; the slow one never reads.
	for batch := range 10 {
		var recs []*core.Record
		for range 20 {
			recs = append(recs, &core.Record{Kind: core.KindCustom, Action: "a", Tenant: core.Tenant{ID: "acme"}})
		}
		start := time.Now()
		e.write(t, recs...)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("batch %d took %s to write", batch, d)
		}
		got := map[uuid.UUID]bool{}
		for _, r := range receive(t, fast, 20) {
			got[r.ID] = true
		}
		for _, r := range recs {
			if !got[r.ID] {
				t.Fatalf("batch %d: record %s not delivered", batch, r.ID)
			}
		}
	}
	n := 0
	for range slow.C {
		n++
	}
	if !errors.Is(slow.Err(), store.ErrLagged) || n != 50 {
		t.Fatalf("slow subscriber: %d records buffered, err %v", n, slow.Err())
	}
}

func TestStreamEnds(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range sub.C {
	}
	if !errors.Is(sub.Err(), context.Canceled) {
		t.Fatalf("after cancel: %v", sub.Err())
	}
	if _, err := e.st.Subscribe(context.Background(), store.Scope{}, store.Filter{}); !errors.Is(err, store.ErrInvalidScope) {
		t.Fatalf("zero scope: %v", err)
	}
	other, err := e.st.Subscribe(context.Background(), store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	e.st.Close()
	for range other.C {
	}
	if !errors.Is(other.Err(), store.ErrClosed) {
		t.Fatalf("after Close: %v", other.Err())
	}
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_stream_listeners`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("listener left registered after Close: %d %v", n, err)
	}
	if _, err := e.st.Subscribe(context.Background(), store.TenantScope("acme"), store.Filter{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("subscribe after Close: %v", err)
	}
}

// A subscription whose records cannot be read is ended with ErrInterrupted instead of missing
// records silently.
func TestStreamInterruptedByAFailingQuery(t *testing.T) {
	e := newEnv(t, store.Options{})
	sub, err := e.st.Subscribe(context.Background(), store.TenantScope("acme"), store.Filter{Search: "word"})
	if err != nil {
		t.Fatal(err)
	}
	healthy, err := e.st.Subscribe(context.Background(), store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	// Without the search function every query of the first subscription fails; writes go on.
	if _, err := e.db.Pool.Exec(context.Background(), `DROP FUNCTION audit_search_document CASCADE`); err != nil {
		t.Fatal(err)
	}
	r := &core.Record{Kind: core.KindCustom, Action: "a", Tenant: core.Tenant{ID: "acme"}, Metadata: map[string]any{"k": "word"}}
	e.write(t, r)
	if got := receive(t, healthy, 1); got[0].ID != r.ID {
		t.Fatalf("healthy subscription got %+v", got[0])
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-sub.C:
			if !ok {
				if !errors.Is(sub.Err(), store.ErrInterrupted) {
					t.Fatalf("ended with %v", sub.Err())
				}
				return
			}
		case <-timeout:
			t.Fatal("the failing subscription was not ended")
		}
	}
}
