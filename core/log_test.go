package core_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func TestLogTakesIdentityFromContext(t *testing.T) {
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer closeWriter(t, w)

	ctx := core.WithActor(context.Background(), core.Actor{ID: "nightly-billing", Type: core.ActorSystem})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t-1", Slug: "acme"})
	ctx = core.WithRequestID(ctx, "job-77")
	id, err := core.Log(ctx, w, core.Entry{
		Action: "invoice.sent", ResourceType: "invoices", ResourceID: "inv-9",
		Severity: core.SeverityInfo, Metadata: map[string]any{"amount": 12.5, "card_number": "4111"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var kind, actorID, actorType, tenant, reqID, meta string
	if err := db.Pool.QueryRow(ctx, `SELECT kind, actor_id, actor_type, tenant_id, request_id, metadata::text FROM audit_logs WHERE id = $1`, id).
		Scan(&kind, &actorID, &actorType, &tenant, &reqID, &meta); err != nil {
		t.Fatal(err)
	}
	if kind != "custom" || actorID != "nightly-billing" || actorType != "system" || tenant != "t-1" || reqID != "job-77" {
		t.Fatalf("row = %s %s %s %s %s", kind, actorID, actorType, tenant, reqID)
	}
	if want := `{"amount": 12.5, "card_number": "[REDACTED]"}`; meta != want {
		t.Fatalf("metadata = %s, want %s", meta, want)
	}

	// An explicit actor wins over the context's.
	id2, err := core.Log(ctx, w, core.Entry{Action: "x", Actor: core.Actor{ID: "admin", Type: core.ActorPlatformAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Flush(ctx)
	var who string
	_ = db.Pool.QueryRow(ctx, `SELECT actor_id FROM audit_logs WHERE id = $1`, id2).Scan(&who)
	if who != "admin" {
		t.Fatalf("actor = %q, want the entry's own", who)
	}

	if _, err := core.Log(ctx, w, core.Entry{}); !errors.Is(err, core.ErrNoAction) {
		t.Fatalf("Log without action = %v", err)
	}
	if _, err := core.Log(ctx, w, core.Entry{Action: "x", Severity: "meh"}); !errors.Is(err, core.ErrInvalidRecord) {
		t.Fatalf("Log with bad severity = %v", err)
	}
	if _, err := core.Log(context.Background(), nil, core.Entry{Action: "x"}); !errors.Is(err, core.ErrNoWriter) {
		t.Fatalf("Log without writer = %v", err)
	}
}

func TestLogJoinsTheRequestCollector(t *testing.T) {
	col := core.NewCollector()
	ctx := core.NewContext(context.Background(), col)
	if _, err := core.Log(ctx, nil, core.Entry{Action: "export.started"}); err != nil {
		t.Fatal(err)
	}
	recs := col.Records()
	if len(recs) != 1 || recs[0].Action != "export.started" {
		t.Fatalf("collector holds %v", recs)
	}
}

func TestLogTxCommitsAndRollsBackWithTheCaller(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	tw := core.NewTxWriter(db.Schema, nil)

	t.Run("pgx", func(t *testing.T) {
		var kept, dropped uuid.UUID
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			kept, err = core.LogTx(ctx, core.PgxExecer(tx), tw, core.Entry{Action: "pgx.commit", Metadata: map[string]any{"token": "t0p"}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dropped, err = core.LogTx(ctx, core.PgxExecer(tx), tw, core.Entry{Action: "pgx.rollback"})
		if err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		assertExists(t, db, kept, true)
		assertExists(t, db, dropped, false)
		var meta string
		_ = db.Pool.QueryRow(ctx, `SELECT metadata::text FROM audit_logs WHERE id = $1`, kept).Scan(&meta)
		if meta != `{"token": "[REDACTED]"}` {
			t.Fatalf("metadata = %s", meta)
		}
	})

	t.Run("database/sql", func(t *testing.T) {
		sqlDB, err := sql.Open("pgx", db.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer sqlDB.Close()
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs := []*core.Record{sampleRecord(1), sampleRecord(2)}
		recs[0].Kind = core.KindHTTP
		recs[0].Status = 201
		recs[0].Duration = 3 * time.Millisecond
		if err := tw.Write(ctx, tx, recs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		assertExists(t, db, recs[0].ID, true)
		assertExists(t, db, recs[1].ID, true)
		var status int
		var dur int64
		_ = db.Pool.QueryRow(ctx, `SELECT status, duration_us FROM audit_logs WHERE id = $1`, recs[0].ID).Scan(&status, &dur)
		if status != 201 || dur != 3000 {
			t.Fatalf("status %d duration %d", status, dur)
		}
	})
}

func assertExists(t *testing.T, db *pgtest.DB, id uuid.UUID, want bool) {
	t.Helper()
	var ok bool
	if err := db.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM audit_logs WHERE id = $1)`, id).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	if ok != want {
		t.Fatalf("record %s exists = %v, want %v", id, ok, want)
	}
}

func TestCollectorConcurrentAddAndLateRecords(t *testing.T) {
	col := core.NewCollector()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			col.Add(sampleRecord(i))
		}()
	}
	wg.Wait()
	if col.Len() != 50 {
		t.Fatalf("collector holds %d, want 50", col.Len())
	}
	var late []*core.Record
	got := col.Finish(func(r *core.Record) { late = append(late, r) })
	if len(got) != 50 || col.Len() != 0 {
		t.Fatalf("Finish returned %d", len(got))
	}
	col.Add(sampleRecord(99))
	if len(late) != 1 || col.Finish(nil) != nil {
		t.Fatalf("late records = %d", len(late))
	}
}

func TestDispatchWithoutCollectorStampsIdentity(t *testing.T) {
	sink := newFakeSink()
	w := core.NewWriter(sink, core.WriterOptions{})
	defer closeWriter(t, w)
	ctx := core.WithActor(context.Background(), core.Actor{ID: "u9"})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t9"})
	r := sampleRecord(1)
	r.Actor, r.Tenant = core.Actor{}, core.Tenant{}
	if err := core.Dispatch(ctx, w, r); err != nil {
		t.Fatal(err)
	}
	if r.Actor.ID != "u9" || r.Actor.Type != core.ActorTenantUser || r.Tenant.ID != "t9" {
		t.Fatalf("record not stamped: %+v %+v", r.Actor, r.Tenant)
	}
}

// TestParseActorType: defined types and alias keys match byte for byte; case, surrounding
// spaces and Unicode look-alikes are unknown types, never a guess.
func TestParseActorType(t *testing.T) {
	aliases := map[string]core.ActorType{"ops_admin": core.ActorPlatformAdmin, "Bot": core.ActorService, "bad": "root"}
	for in, want := range map[string]core.ActorType{
		"platform_admin": core.ActorPlatformAdmin, "tenant_user": core.ActorTenantUser,
		"ops_admin": core.ActorPlatformAdmin, "Bot": core.ActorService, "system": core.ActorSystem,
	} {
		got, err := core.ParseActorType(in, aliases)
		if err != nil || got != want {
			t.Errorf("ParseActorType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "root", "superuser", "bad", " Tenant_User ", "Platform_Admin", "PLATFORM_ADMIN",
		"\u00a0platform_admin", "platform_admin\u00a0", " platform_admin", "platform_admin\n",
		"platform\u2010admin", "platform_admın", "OPS_ADMIN", "bot", "platform_admin\x00",
	} {
		if got, err := core.ParseActorType(in, aliases); !errors.Is(err, core.ErrUnknownActorType) {
			t.Errorf("ParseActorType(%q) = %q, %v; want ErrUnknownActorType", in, got, err)
		}
	}
}

func TestNewIDIsVersion7AndOrdered(t *testing.T) {
	seen := map[uuid.UUID]bool{}
	prev := core.NewID()
	for range 100000 {
		id := core.NewID()
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v", id, id.Version(), id.Variant())
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		// Ids made one after the other follow the clock at sub-millisecond precision.
		if binary.BigEndian.Uint64(id[0:8]) < binary.BigEndian.Uint64(prev[0:8]) {
			t.Fatalf("id %s sorts before the earlier %s", id, prev)
		}
		prev = id
	}
}

func TestEnqueueDoesNotAllocate(t *testing.T) {
	w := core.NewWriter(newFakeSink(), core.WriterOptions{QueueSize: 5000, BatchSize: 5000, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	recs := make([]*core.Record, 1100)
	for i := range recs {
		recs[i] = sampleRecord(i)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { _ = w.Enqueue(recs[i]); i++ }); n != 0 {
		t.Fatalf("Enqueue allocates %.1f times per call, want 0", n)
	}
}

// TestTxWriterStoresWhatTheWriterStores writes the same records through the async Writer (COPY)
// and through TxWriter (one INSERT from a jsonb parameter) and compares every column.
func TestTxWriterStoresWhatTheWriterStores(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer closeWriter(t, w)
	tw := core.NewTxWriter(db.Schema, nil)

	mk := func(action string) []*core.Record {
		var out []*core.Record
		for i := range 300 {
			r := sampleRecord(i)
			r.Action = action
			r.OccurredAt = time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC).Add(time.Duration(i) * time.Second)
			if i%3 == 0 {
				r.Kind, r.Method, r.Route, r.Path, r.Status = core.KindHTTP, "GET", "/x/:id", "/x/1", 200
				r.Duration = 1234 * time.Microsecond
				r.IP = netip.MustParseAddr("2001:db8::7")
				r.Query = map[string][]string{"q": {"a<b>&c", "ü"}, "api_key": {"k"}}
				r.UserAgent = "agent \"quoted\" \\ back"
				r.RequestBody = &core.Body{ContentType: "application/json", Data: []byte(`{"n":1.50,"s":"\u00e9"}`), Size: 20}
			}
			if i%5 == 0 {
				r.Metadata = map[string]any{"nested": map[string]any{"deep": []any{1, "two", nil, true}}, "big": 12345678901234567}
			}
			out = append(out, r)
		}
		return out
	}
	viaCopy, viaInsert := mk("copy"), mk("insert")
	for _, r := range viaCopy {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Write(ctx, core.PgxExecer(tx), viaInsert...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var diffs int
	err = db.Pool.QueryRow(ctx, `
		WITH c AS (SELECT row_number() OVER (ORDER BY occurred_at) n, * FROM audit_logs WHERE action = 'copy'),
		     i AS (SELECT row_number() OVER (ORDER BY occurred_at) n, * FROM audit_logs WHERE action = 'insert')
		SELECT count(*) FROM c JOIN i USING (n)
		WHERE (c.occurred_at, c.kind, c.severity, c.tenant_id, c.tenant_slug, c.actor_id, c.actor_type, c.actor_email,
		       c.actor_auth, c.resource_type, c.resource_id, c.before, c.after, c.diff, c.request_id, c.method, c.route,
		       c.path, c.query, c.status, c.duration_us, c.ip, c.user_agent, c.request_body, c.response_body, c.metadata, c.version)
		IS DISTINCT FROM
		      (i.occurred_at, i.kind, i.severity, i.tenant_id, i.tenant_slug, i.actor_id, i.actor_type, i.actor_email,
		       i.actor_auth, i.resource_type, i.resource_id, i.before, i.after, i.diff, i.request_id, i.method, i.route,
		       i.path, i.query, i.status, i.duration_us, i.ip, i.user_agent, i.request_body, i.response_body, i.metadata, i.version)`).
		Scan(&diffs)
	if err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t); n != 600 || diffs != 0 {
		t.Fatalf("%d rows stored, %d pairs differ; want 600 rows and identical pairs", n, diffs)
	}
}

func TestStampFromContextTakesTheRequestsAddress(t *testing.T) {
	col := core.NewCollector()
	col.SetClientIP(netip.MustParseAddr("198.51.100.4"))
	ctx := core.WithActor(core.NewContext(context.Background(), col), core.Actor{ID: "u1"})
	r := &core.Record{Kind: core.KindUpdate}
	core.StampFromContext(ctx, r)
	if r.IP.String() != "198.51.100.4" || r.Actor.ID != "u1" {
		t.Fatalf("stamped %v %+v", r.IP, r.Actor)
	}
	own := &core.Record{Kind: core.KindUpdate, IP: netip.MustParseAddr("192.0.2.1")}
	core.StampFromContext(ctx, own)
	if own.IP.String() != "192.0.2.1" {
		t.Fatalf("a record's own address was replaced: %v", own.IP)
	}
}

func TestEntryCarriesItsAddressOrTheRequests(t *testing.T) {
	col := core.NewCollector()
	col.SetClientIP(netip.MustParseAddr("203.0.113.9"))
	ctx := core.NewContext(context.Background(), col)
	r, err := core.Entry{Action: "x"}.Record(ctx)
	if err != nil || r.IP.String() != "203.0.113.9" {
		t.Fatalf("record %v, %v: want the request's address", r, err)
	}
	r, err = core.Entry{Action: "x", IP: netip.MustParseAddr("192.0.2.8")}.Record(ctx)
	if err != nil || r.IP.String() != "192.0.2.8" {
		t.Fatalf("record %v, %v: want the entry's own address", r, err)
	}
}

// TestBothPathsStoreTheWholeTimestampRange: every time Validate accepts is stored as itself, by
// the Writer (binary COPY) and by TxWriter (text), including years BC.
func TestBothPathsStoreTheWholeTimestampRange(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer closeWriter(t, w)
	tw := core.NewTxWriter(db.Schema, nil)
	for _, at := range []time.Time{
		time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC),             // 4714-11-24 BC, the first instant
		time.Date(0, 2, 29, 12, 30, 0, 123456000, time.UTC),        // 1 BC, a leap year
		time.Date(12000, 6, 1, 0, 0, 0, 0, time.UTC),               // five-digit year
		time.Date(294276, 12, 31, 23, 59, 59, 999999000, time.UTC), // the last microsecond
	} {
		viaWriter, viaTx := sampleRecord(1), sampleRecord(2)
		viaWriter.OccurredAt, viaTx.OccurredAt = at, at
		if err := w.Enqueue(viaWriter); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tw.Write(ctx, core.PgxExecer(db.Pool), viaTx); err != nil {
			t.Fatalf("TxWriter at %s: %v", at, err)
		}
		for _, id := range []uuid.UUID{viaWriter.ID, viaTx.ID} {
			var got time.Time
			if err := db.Pool.QueryRow(ctx, `SELECT occurred_at FROM audit_logs WHERE id = $1`, id).Scan(&got); err != nil {
				t.Fatalf("record at %s: %v", at, err)
			}
			if !got.Equal(at) {
				t.Errorf("stored %s as %s", at, got.UTC())
			}
		}
	}
	if s := w.Stats(); s.Written != 4 || s.Failed != 0 {
		t.Fatalf("writer stats = %+v", s)
	}
}

// TestLogRefusesAnInvalidEntryTenant: a tenant set directly on an Entry follows the same tenant id
// rule as WithTenant; Log and LogTx refuse it and record nothing.
func TestLogRefusesAnInvalidEntryTenant(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	tw := core.NewTxWriter(db.Schema, nil)
	for _, tt := range []struct {
		name   string
		tenant core.Tenant
	}{
		{"dot dot", core.Tenant{ID: "../other"}},
		{"space", core.Tenant{ID: "acme corp"}},
		{"leading separator", core.Tenant{ID: "-acme"}},
		{"non-ASCII", core.Tenant{ID: "аcme"}},
		{"too long", core.Tenant{ID: string(make([]byte, core.MaxTenantIDBytes+1))}},
		{"bad slug", core.Tenant{ID: "t-1", Slug: "acme\n"}},
		{"slug without id", core.Tenant{Slug: "@acme"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := core.Entry{Action: "tenant.touched", Tenant: tt.tenant}
			col := core.NewCollector()
			if _, err := core.Log(core.NewContext(ctx, col), nil, e); !errors.Is(err, core.ErrInvalidTenant) || !errors.Is(err, core.ErrInvalidRecord) {
				t.Errorf("Log = %v, want ErrInvalidTenant and ErrInvalidRecord", err)
			}
			if n := len(col.Records()); n != 0 {
				t.Errorf("the collector holds %d records, want none", n)
			}
			if _, err := core.LogTx(ctx, core.PgxExecer(db.Pool), tw, e); !errors.Is(err, core.ErrInvalidTenant) {
				t.Errorf("LogTx = %v, want ErrInvalidTenant", err)
			}
			if n := db.Count(t); n != 0 {
				t.Errorf("audit_logs holds %d rows, want none", n)
			}
		})
	}
	// A valid tenant on the entry is stored as given.
	id, err := core.LogTx(ctx, core.PgxExecer(db.Pool), tw, core.Entry{Action: "tenant.touched", Tenant: core.Tenant{ID: "org:acme", Slug: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	var tenant string
	if err := db.Pool.QueryRow(ctx, `SELECT tenant_id FROM audit_logs WHERE id = $1`, id).Scan(&tenant); err != nil || tenant != "org:acme" {
		t.Fatalf("tenant_id = %q, %v; want org:acme", tenant, err)
	}
}
