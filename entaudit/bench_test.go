package entaudit_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
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

// benchEnv holds three clients on one database: one without auditing (audit=off), and two with
// the hook and the driver wrapper. One hands its records to a Writer whose sink discards them
// (audit=capture: the capture, and the Writer redacting and encoding every record as it does for
// PostgreSQL; nothing stored); the other to a Writer that stores them with COPY
// in the same database (audit=stored: everything the application's database pays for).
type benchEnv struct {
	roundTrips atomic.Int64
	db         *pgtest.DB
	url        string // the clients' database URL
	bare       *entest.Client
	capture    *entest.Client
	audited    *entest.Client
	w, nop     *core.Writer
}

// processCPU returns the CPU time (user and system) the process has used, in nanoseconds: the
// client's cost of an operation, which the noise of a shared database server does not blur.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// discardSink takes the records as encoded rows, as the PostgreSQL sink does (core.RowSink), so
// that the Writer does for it the work it does for PostgreSQL, and drops them.
type discardSink struct{}

func (discardSink) Write(context.Context, []*core.Record) error { return nil }
func (discardSink) TakesRows()                                  {}

// Set ENTAUDIT_BENCH_COMMIT=async to run the benchmarked clients with synchronous_commit off:
// commits then do not wait for the WAL flush, which on a shared machine is the noisiest part of
// a write, and what remains is the cost of the round trips and of the client.
func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	db := pgtest.New(b)
	url := db.URL
	if os.Getenv("ENTAUDIT_BENCH_COMMIT") == "async" {
		url += "&options=-c%20synchronous_commit%3Doff"
	}
	e := &benchEnv{db: db, url: url}
	open := func() dialect.Driver {
		sqlDB, err := sql.Open("pgx", url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sqlDB.Close() })
		return &countingDriver{Driver: entsql.OpenDB(dialect.Postgres, sqlDB), n: &e.roundTrips}
	}
	bare := entest.NewClient(entest.Driver(open()))
	if err := bare.Schema.Create(context.Background()); err != nil {
		b.Fatal(err)
	}
	newWriter := func(sink core.Sink) *core.Writer {
		w := core.NewWriter(sink, core.WriterOptions{QueueSize: 500000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			w.Close(ctx)
		})
		return w
	}
	w := newWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}))
	nop := newWriter(discardSink{})
	audited := entest.NewClient(entest.Driver(entaudit.Driver(open())))
	audited.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w}))
	capture := entest.NewClient(entest.Driver(entaudit.Driver(open())))
	capture.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: nop}))
	e.bare, e.capture, e.audited, e.w, e.nop = bare, capture, audited, w, nop
	return e
}

// countingDriver counts the statements sent to the database, BEGIN, COMMIT and ROLLBACK
// included: the round trips of an operation, a figure the machine's noise does not change.
type countingDriver struct {
	dialect.Driver
	n *atomic.Int64
}

func (d *countingDriver) Exec(ctx context.Context, q string, args, v any) error {
	d.n.Add(1)
	return d.Driver.Exec(ctx, q, args, v)
}

func (d *countingDriver) Query(ctx context.Context, q string, args, v any) error {
	d.n.Add(1)
	return d.Driver.Query(ctx, q, args, v)
}

func (d *countingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	d.n.Add(1)
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	return &countingTx{Tx: tx, n: d.n}, nil
}

type countingTx struct {
	dialect.Tx
	n *atomic.Int64
}

func (t *countingTx) Exec(ctx context.Context, q string, args, v any) error {
	t.n.Add(1)
	return t.Tx.Exec(ctx, q, args, v)
}

func (t *countingTx) Query(ctx context.Context, q string, args, v any) error {
	t.n.Add(1)
	return t.Tx.Query(ctx, q, args, v)
}

func (t *countingTx) Commit() error {
	t.n.Add(1)
	return t.Tx.Commit()
}

func (t *countingTx) Rollback() error {
	t.n.Add(1)
	return t.Tx.Rollback()
}

// run measures f with each client in turn, in the same run. The writers are drained after each
// part, outside the timer, so that one part's backlog does not slow the next.
func (e *benchEnv) run(b *testing.B, f func(b *testing.B, c *entest.Client)) {
	for _, v := range []struct {
		name string
		c    *entest.Client
	}{{"audit=off", e.bare}, {"audit=capture", e.capture}, {"audit=stored", e.audited}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu, trips := processCPU(), e.roundTrips.Load()
			f(b, v.c)
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(e.roundTrips.Load()-trips)/float64(b.N), "roundtrips/op")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, w := range []*core.Writer{e.w, e.nop} {
				if err := w.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				if st := w.Stats(); st.Dropped > 0 {
					b.Fatalf("the writer dropped %d records", st.Dropped)
				}
			}
		})
	}
}

// BenchmarkCreate: one INSERT outside a transaction. Audited, the Driver wrapper extends that
// INSERT with RETURNING *, xmax, which gives the after image: no further statement.
func BenchmarkCreate(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	n := 0
	e.run(b, func(b *testing.B, c *entest.Client) {
		for b.Loop() {
			n++
			s := strconv.Itoa(n)
			if err := c.User.Create().SetName("user " + s).SetEmail(s + "@example.com").SetAge(30).Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateOne: UpdateOneID outside a transaction. ent runs it in a transaction of its own
// (UPDATE, then SELECT of the node); audited, the transaction is the hook's and also holds the
// locked SELECT of the before image, and the Driver wrapper extends the UPDATE with RETURNING *,
// which gives the after image.
func BenchmarkUpdateOne(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	u := e.bare.User.Create().SetName("u").SetEmail("u@example.com").SaveX(ctx)
	n := 0
	e.run(b, func(b *testing.B, c *entest.Client) {
		for b.Loop() {
			n++
			if err := c.User.UpdateOneID(u.ID).SetAge(n % 100).SetName("u" + strconv.Itoa(n)).Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateOneTx: the same update inside an ent.Tx, committed.
func BenchmarkUpdateOneTx(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	u := e.bare.User.Create().SetName("u").SetEmail("u@example.com").SaveX(ctx)
	n := 0
	e.run(b, func(b *testing.B, c *entest.Client) {
		for b.Loop() {
			n++
			tx, err := c.Tx(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := tx.User.UpdateOneID(u.ID).SetAge(n % 100).SetName("u" + strconv.Itoa(n)).Exec(ctx); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateBulk1000: one UPDATE of 1,000 rows matched by a filter. Audited: the locked
// SELECT of the 1,000 before images, the UPDATE pinned to their ids and extended with RETURNING *
// (the after images), and 1,000 records.
func BenchmarkUpdateBulk1000(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	builders := make([]*entest.UserCreate, 1000)
	for i := range builders {
		s := strconv.Itoa(i)
		builders[i] = e.bare.User.Create().SetName("bulk").SetEmail(s + "@example.com").SetAge(i)
	}
	e.bare.User.CreateBulk(builders...).ExecX(ctx)
	e.run(b, func(b *testing.B, c *entest.Client) {
		for b.Loop() {
			n, err := c.User.Update().Where(user.Name("bulk")).AddAge(1).Save(ctx)
			if err != nil || n != 1000 {
				b.Fatalf("updated %d rows: %v", n, err)
			}
		}
	})
}

// paired runs one operation per iteration with the bare client and with the hook (its records
// handed to a request Collector, as inside an HTTP request: capture alone, nothing stored), in
// alternating order, so that both see the same load on a shared machine. It reports the mean of
// each and their ratio.
func (e *benchEnv) paired(b *testing.B, op func(c *entest.Client, ctx context.Context)) {
	b.ReportAllocs()
	var d [2]time.Duration
	var each [2][]time.Duration // per iteration, for the medians
	clients := [2]*entest.Client{e.bare, e.capture}
	i := 0
	for b.Loop() {
		i++
		for k := range 2 {
			j := (k + i) % 2
			ctx := context.Background()
			if j == 1 {
				ctx = core.NewContext(ctx, core.NewCollector())
			}
			start := time.Now()
			op(clients[j], ctx)
			t := time.Since(start)
			d[j] += t
			each[j] = append(each[j], t)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(d[0].Microseconds())/n, "off-µs/op")
	b.ReportMetric(float64(d[1].Microseconds())/n, "capture-µs/op")
	b.ReportMetric(float64(d[1])/float64(d[0]), "capture/off")
	b.ReportMetric(float64(median(each[1]))/float64(median(each[0])), "capture/off-median")
}

// median returns the median of ds; on a loaded machine the ratio of medians is less swayed by the
// few operations that waited for a core than the ratio of means.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func BenchmarkPairedCreate(b *testing.B) {
	e := newBenchEnv(b)
	n := 0
	e.paired(b, func(c *entest.Client, ctx context.Context) {
		n++
		s := strconv.Itoa(n)
		if err := c.User.Create().SetName("user " + s).SetEmail(s + "@example.com").SetAge(30).Exec(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkPairedUpdateOne(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	u := e.bare.User.Create().SetName("u").SetEmail("u@example.com").SaveX(ctx)
	n := 0
	e.paired(b, func(c *entest.Client, ctx context.Context) {
		n++
		if err := c.User.UpdateOneID(u.ID).SetAge(n % 100).SetName("u" + strconv.Itoa(n)).Exec(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPairedUpdateBulk1000 runs the bulk update with ent alone (off), with its floor, and
// with the hook (capture), in a new random order each iteration. The floor is ent plus the least
// that a before image needs, in the capture's round trips. Before PostgreSQL 18 that is the one
// locked read of the 1,000 rows: BEGIN, the read (its rows scanned into database/sql values),
// ent's UPDATE in that transaction, COMMIT. From 18 on it is BEGIN, ent's UPDATE returning the
// rows' old and new columns (scanned the same way), COMMIT.
func BenchmarkPairedUpdateBulk1000(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	builders := make([]*entest.UserCreate, 1000)
	for i := range builders {
		builders[i] = e.bare.User.Create().SetName("bulk").SetEmail(strconv.Itoa(i) + "@example.com").SetAge(i)
	}
	e.bare.User.CreateBulk(builders...).ExecX(ctx)
	floorDB, err := sql.Open("pgx", e.url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { floorDB.Close() })
	returnsOld := pgtest.ServerVersion(b, e.url) >= 180000
	update := func(c *entest.Client, ctx context.Context) {
		if n, err := c.User.Update().Where(user.Name("bulk")).AddAge(1).Save(ctx); err != nil || n != 1000 {
			b.Fatalf("updated %d rows: %v", n, err)
		}
	}
	floor := func() {
		tx, err := floorDB.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer tx.Rollback()
		if returnsOld {
			update(entest.NewClient(entest.Driver(entsql.NewDriver(dialect.Postgres, entsql.Conn{ExecQuerier: returnOldTx{tx}}))), ctx)
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			return
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, name, email, age, nickname, password_hash, recovery_code, avatar, profile, created_at
			FROM users WHERE name = $1 ORDER BY id FOR NO KEY UPDATE`, "bulk")
		if err != nil {
			b.Fatal(err)
		}
		vals := make([]any, 10)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				b.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		update(entest.NewClient(entest.Driver(entsql.NewDriver(dialect.Postgres, entsql.Conn{ExecQuerier: tx}))), ctx)
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	names := []string{"off", "floor", "capture"}
	ops := []func(){
		func() { update(e.bare, ctx) },
		floor,
		func() { update(e.capture, core.NewContext(ctx, core.NewCollector())) },
	}
	var spent [3]time.Duration
	var each [3][]time.Duration
	rng := rand.New(rand.NewPCG(1, 3))
	order := []int{0, 1, 2}
	for b.Loop() {
		rng.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
		for _, j := range order {
			start := time.Now()
			ops[j]()
			t := time.Since(start)
			spent[j] += t
			each[j] = append(each[j], t)
		}
	}
	n := float64(b.N)
	for j, name := range names {
		b.ReportMetric(float64(spent[j].Microseconds())/n, name+"-µs/op")
		if j > 0 {
			b.ReportMetric(float64(spent[j])/float64(spent[0]), name+"/off")
			b.ReportMetric(float64(median(each[j]))/float64(median(each[0])), name+"/off-median")
		}
	}
	b.ReportMetric(0, "ns/op") // an iteration runs every variant: read the metrics above
}

// returnOldTx runs each ExecContext of the floor's ent client as a query returning the changed
// rows' old and new columns, reads them into database/sql values, and reports their count as the
// rows affected.
type returnOldTx struct{ *sql.Tx }

func (t returnOldTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return pgtest.ExecReading(ctx, t.Tx, query+" RETURNING old.*, new.*", args...)
}
