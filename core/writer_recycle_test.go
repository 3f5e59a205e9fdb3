package core

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/google/uuid"
)

// storedDocs returns, by id, the columns of every row of audit_logs that the Writer's encoding
// fills from a record: its text values and its documents, as PostgreSQL prints them.
func storedDocs(t *testing.T, db *pgtest.DB) map[uuid.UUID]string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id, concat_ws('|', kind, action, severity, tenant_id,
		actor_id, actor_type, resource_type, resource_id, method, route, path, status, host(ip), user_agent,
		occurred_at, before::text, after::text, diff::text, query::text, metadata::text, request_body::text,
		response_body::text) FROM audit_logs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID]string{}
	for rows.Next() {
		var (
			id uuid.UUID
			s  string
		)
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recycleRecords returns n records of the shapes encodeRowRecords has (images with secrets,
// requests with bodies and an address, custom records with metadata) over several tenants,
// each with an id, a time and a resource id of its own.
func recycleRecords(p string, n int) []*Record {
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	shapes := encodeRowRecords()
	recs := make([]*Record, n)
	for i := range recs {
		r := encodeRowRecords()[i%len(shapes)]
		r.ID, r.OccurredAt = newID(), at.Add(time.Duration(i)*time.Millisecond)
		r.ResourceID = fmt.Sprintf("%s-%d", p, i)
		r.Tenant.ID = chainTenants[i%len(chainTenants)]
		if r.Metadata == nil || len(r.Metadata) == 0 {
			r.Metadata = map[string]any{}
		}
		r.Metadata["i"] = i
		r.normalize(at)
		recs[i] = r
	}
	return recs
}

// TestWriterRecyclesStoredBatches: the Writer makes each batch's rows in the memory of a batch
// stored before (with two workers, while the other worker still stores its own batch; a batch
// the flush interval cut short reused for full ones), chained or not, and every row stored holds
// what the record it was made of holds, in every chain, verified.
func TestWriterRecyclesStoredBatches(t *testing.T) {
	for _, chained := range []bool{true, false} {
		t.Run(fmt.Sprintf("chained=%v", chained), func(t *testing.T) {
			db := pgtest.New(t)
			ctx := context.Background()
			w := NewWriter(NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema, DisableChain: !chained}),
				WriterOptions{BatchSize: 25, Workers: 2, QueueSize: 5000, FlushInterval: time.Millisecond})
			recs := recycleRecords("a", 2000)
			// Batches of one record first, which the flush interval sends alone.
			for _, r := range recs[:3] {
				enqueueAll(t, w, []*Record{r})
				if err := w.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			enqueueAll(t, w, recs[3:])
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if st := w.Stats(); st.Written != uint64(len(recs)) || st.Failed+st.Dropped != 0 {
				t.Fatalf("stats %+v, want %d written", st, len(recs))
			}
			if w.recycled.Load() == 0 {
				t.Fatalf("no batch was made in the memory of one stored before")
			}
			checkStoredRecords(t, db, recs, chained)
			t.Logf("%d batches recycled", w.recycled.Load())
		})
	}
}

// checkStoredRecords checks that audit_logs holds exactly recs, each row as the record alone
// makes it, and, when they are chained, that every chain verifies.
func checkStoredRecords(t *testing.T, db *pgtest.DB, recs []*Record, chained bool) {
	t.Helper()
	ctx := context.Background()
	// The same records redacted one by one (Redactor.Record, then encoding/json) and stored by
	// a sink alone, in a schema of their own: what each row must hold.
	ref := pgtest.New(t)
	sink := NewPostgresSink(ref.Pool, PostgresSinkOptions{Schema: ref.Schema, DisableChain: true})
	red := NewRedactor(nil, nil)
	for i := 0; i < len(recs); i += 100 {
		var batch []*Record
		for _, r := range recs[i:min(i+100, len(recs))] {
			batch = append(batch, red.Record(r))
		}
		if err := sink.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, want := storedDocs(t, db), storedDocs(t, ref)
	if len(got) != len(want) || len(want) != len(recs) {
		t.Fatalf("audit_logs has %d rows, want %d (%d records)", len(got), len(want), len(recs))
	}
	for id, s := range want {
		if got[id] != s {
			t.Fatalf("record %s stored as\n%s\nwant\n%s", id, got[id], s)
		}
	}
	if !chained {
		return
	}
	for _, k := range chainTenants {
		rep, err := Verify(ctx, db.Pool, k, VerifyOptions{Schema: db.Schema})
		if err != nil || !rep.OK || rep.Rows == 0 {
			t.Fatalf("verify %q: %+v, %v", k, rep, err)
		}
	}
}

// TestWriterKeepsBatchesItDidNotStoreAtOnce: a batch is made again in memory of its own unless
// the sink stored it in its first Write. A record OnReject was given keeps its row while later
// batches are written, and a batch written again after the database refused it is not reused.
func TestWriterKeepsBatchesItDidNotStoreAtOnce(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	var (
		mu       sync.Mutex
		rejected *Record
		snapshot string
	)
	w := NewWriter(NewPostgresSink(db.Pool, PostgresSinkOptions{Schema: db.Schema}), WriterOptions{
		// Batches of 20 by size alone, one at a time: each phase below is whole batches.
		BatchSize: 20, Workers: 1, QueueSize: 5000, FlushInterval: time.Hour,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RecheckInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		OnReject: func(r *Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			rejected, snapshot = r, fmt.Sprint(r.row)
		},
	})
	defer func() { _ = w.Close(ctx) }()
	var stored []*Record
	// A batch with a record the database refuses: the others are stored, the record goes to
	// OnReject, and the batch's memory is not reused.
	recs := recycleRecords("p", 20)
	recs[7].Metadata = map[string]any{"amount": json.Number("1e1000000")}
	for i, r := range recs {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		if i != 7 {
			stored = append(stored, r)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if w.recycled.Load() != 0 {
		t.Fatalf("the batch with a rejected record was reused")
	}
	// A batch the database refuses at first, then stores: not reused.
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE audit_logs RENAME TO audit_logs_away`); err != nil {
		t.Fatal(err)
	}
	more := recycleRecords("q", 20)
	enqueueAll(t, w, more)
	for deadline := time.Now().Add(10 * time.Second); w.Stats().Retried < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the writes were not retried: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE audit_logs_away RENAME TO audit_logs`); err != nil {
		t.Fatal(err)
	}
	// Flush fails at once while the Writer still reports the trail unavailable.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err := w.Flush(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	stored = append(stored, more...)
	if n := w.recycled.Load(); n != 0 {
		t.Fatalf("the batch written again was reused (%d)", n)
	}
	// Batches stored at once are reused, and the rejected record's row is left as it was.
	later := recycleRecords("r", 400)
	enqueueAll(t, w, later)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stored = append(stored, later...)
	if w.recycled.Load() == 0 {
		t.Fatalf("no batch stored at once was reused")
	}
	mu.Lock()
	if rejected == nil || rejected.ID != recs[7].ID {
		t.Fatalf("OnReject got %v, want record %s", rejected, recs[7].ID)
	}
	if now := fmt.Sprint(rejected.row); now != snapshot || !strings.Contains(now, recs[7].ResourceID) {
		t.Fatalf("the rejected record's row changed after OnReject:\n%s\nwas\n%s", now, snapshot)
	}
	mu.Unlock()
	if st := w.Stats(); st.Written != uint64(len(stored)) || st.Failed != 1 {
		t.Fatalf("stats %+v, want %d written and 1 failed", st, len(stored))
	}
	checkStoredRecords(t, db, stored, true)
}

// enqueueAll enqueues recs on w.
func enqueueAll(t *testing.T, w *Writer, recs []*Record) {
	t.Helper()
	for _, r := range recs {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
}
