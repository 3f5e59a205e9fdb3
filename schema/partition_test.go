package schema_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// TestFreshInstallIsPartitioned: Migrate partitions an empty audit_logs by month, with the
// current month, three ahead and a default partition, and keeps the table's indexes, trigger and
// primary key under their names.
func TestFreshInstallIsPartitioned(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ok, err := schema.Partitioned(ctx, db.Pool, schema.WithSchema(db.Schema))
	if err != nil || !ok {
		t.Fatalf("Partitioned = %v, %v; want true", ok, err)
	}
	parts, err := schema.Partitions(ctx, db.Pool, schema.WithSchema(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	month := time.Now().UTC()
	month = time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	if len(parts) != 5 || !parts[4].Default || parts[4].Name != schema.DefaultPartition {
		t.Fatalf("partitions %+v, want 4 monthly and the default", parts)
	}
	for i := range 4 {
		from := month.AddDate(0, i, 0)
		if !parts[i].From.Equal(from) || !parts[i].To.Equal(from.AddDate(0, 1, 0)) || parts[i].Name != "audit_logs_p"+from.Format("20060102") {
			t.Errorf("partition %d is %+v, want %s to %s", i, parts[i], from, from.AddDate(0, 1, 0))
		}
	}
	var pkey, notify int
	if err := db.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass('audit_logs') AND conname = 'audit_logs_pkey'
		   AND pg_get_constraintdef(oid) = 'PRIMARY KEY (id, occurred_at)'),
		(SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('audit_logs') AND tgname = 'audit_logs_notify')`).Scan(&pkey, &notify); err != nil {
		t.Fatal(err)
	}
	if pkey != 1 || notify != 1 {
		t.Fatalf("primary key %d, notify trigger %d; want 1 and 1", pkey, notify)
	}
	// Idempotent: nothing more to create.
	if n, err := schema.EnsurePartitions(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil || n != 0 {
		t.Fatalf("EnsurePartitions = %d, %v; want 0", n, err)
	}
	// A record of a month without a partition lands in the default one, and moves out when its
	// partition is created.
	old := time.Date(2025, 6, 10, 0, 0, 0, 0, time.UTC)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action) VALUES (gen_random_uuid(), $1, 'custom', 'a')`, old); err != nil {
		t.Fatal(err)
	}
	if _, n, err := core.EnsurePartitions(ctx, db.Pool, db.Schema); err != nil || n != 1 {
		t.Fatalf("default partition rows = %d, %v; want 1", n, err)
	}
	if n, err := schema.CreatePartitions(ctx, db.Pool, old, old.Add(time.Hour), schema.WithSchema(db.Schema)); err != nil || n != 1 {
		t.Fatalf("CreatePartitions = %d, %v; want 1", n, err)
	}
	var where string
	if err := db.Pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM audit_logs`).Scan(&where); err != nil || where != "audit_logs_p20250601" {
		t.Fatalf("the record is in %q (%v), want audit_logs_p20250601", where, err)
	}
	if _, err := schema.CreatePartitions(ctx, db.Pool, old, old, schema.WithSchema(db.Schema)); err == nil {
		t.Fatal("CreatePartitions accepted an empty range")
	}
	if err := schema.SetPartitioning(ctx, db.Pool, "fortnight", 3, schema.WithSchema(db.Schema)); err == nil {
		t.Fatal("SetPartitioning accepted a fortnight")
	}
}

// migrateBefore applies the embedded migrations older than version, as an earlier release did.
func migrateBefore(t *testing.T, pool *pgxpool.Pool, version int) {
	t.Helper()
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+schema.VersionTable+` (version integer PRIMARY KEY, name text NOT NULL,
		checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= version {
			break
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO `+schema.VersionTable+` (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum); err != nil {
			t.Fatal(err)
		}
	}
}

// envPartitionChild names the schema a child process converts (and is killed in the middle of).
const envPartitionChild = "AUDITKIT_TEST_PARTITION_CHILD"

// TestPartitionExistingChild is the child of TestPartitionExistingOnline: it converts the schema
// and kills itself with SIGKILL after the third copied batch. Run on its own, it returns.
func TestPartitionExistingChild(t *testing.T) {
	name := os.Getenv(envPartitionChild)
	if name == "" {
		return
	}
	url, err := pgtest.WithSearchPath(pgtest.URL(), name)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	batches := 0
	_, err = schema.PartitionExisting(context.Background(), pool, schema.PartitionOptions{BatchSize: 500, Progress: func(p schema.PartitionProgress) {
		if p.Phase == "copy" {
			if batches++; batches == 3 {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}
	}}, schema.WithSchema(name))
	t.Fatalf("the conversion ended (%v) instead of being killed", err)
}

// TestPartitionExistingOnline: a plain audit_logs that holds chained records and records of six
// months is converted while writers keep inserting, updating and deleting; the conversion is killed (SIGKILL) in the middle of the
// copy and resumed. Afterwards audit_logs is partitioned, holds every record written before and
// during the conversion, each exactly as the old table held it, and every chain verifies.
func TestPartitionExistingOnline(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	migrateBefore(t, db.Pool, 6)

	tenants := []string{"acme", ""}
	// Chained records of two chains, and unchained records of six months.
	var written atomic.Int64
	write := func(i int) error {
		if _, err := chaintest.Append(ctx, db.Pool, tenants[i%2], 20); err != nil {
			return err
		}
		tag, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
			SELECT gen_random_uuid(), now() - (g * 37 % 180) * interval '1 day', 'custom', 'doc.touched', 'globex'
			FROM generate_series($1::int, $1 + 19) g`, i*20)
		if err != nil {
			return err
		}
		written.Add(20 + tag.RowsAffected())
		return nil
	}
	for i := range 150 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := schema.Migrate(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
	if ok, err := schema.Partitioned(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil || ok {
		t.Fatalf("Partitioned after migrating a table with records = %v, %v; want false", ok, err)
	}
	before := verifyAll(t, db, tenants)

	// The writers go on during the conversion.
	var swapping atomic.Bool
	var insertsOnly sync.Once
	acked := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 150; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := write(i); err != nil {
				t.Errorf("writing during the conversion: %v", err)
				return
			}
			if swapping.Load() {
				// Inserts only from the swap on, so that the old table's rows can be compared
				// with the new one's afterwards.
				insertsOnly.Do(func() { close(acked) })
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// Updates and deletes reach the copy too.
			tag, err := db.Pool.Exec(ctx, `WITH d AS (SELECT id FROM audit_logs WHERE tenant_id = 'globex' AND action = 'doc.touched' LIMIT 3)
				DELETE FROM audit_logs a USING d WHERE a.id = d.id`)
			if err != nil {
				t.Errorf("deleting during the conversion: %v", err)
				return
			}
			written.Add(-tag.RowsAffected())
			if _, err := db.Pool.Exec(ctx, `UPDATE audit_logs SET action = 'doc.renamed'
				WHERE id = (SELECT id FROM audit_logs WHERE tenant_id = 'globex' AND action = 'doc.touched' LIMIT 1)`); err != nil {
				t.Errorf("updating during the conversion: %v", err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^TestPartitionExistingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envPartitionChild+"="+db.Schema)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed: %v\n%s", err, out)
	}
	var copied int64
	var cursor *string
	if err := db.Pool.QueryRow(ctx, `SELECT copied, cursor::text FROM audit_partition_progress`).Scan(&copied, &cursor); err != nil {
		t.Fatal(err)
	}
	if copied != 1500 || cursor == nil {
		t.Fatalf("after the kill the progress is %d rows (cursor %v), want 1500", copied, cursor)
	}
	if ok, _ := schema.Partitioned(ctx, db.Pool, schema.WithSchema(db.Schema)); ok {
		t.Fatal("audit_logs is partitioned before the copy finished")
	}

	var phases []string
	res, err := schema.PartitionExisting(ctx, db.Pool, schema.PartitionOptions{BatchSize: 700, KeepOld: true,
		Progress: func(p schema.PartitionProgress) {
			if p.Phase == "swap" {
				swapping.Store(true)
				<-acked
			}
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		}}, schema.WithSchema(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	t.Logf("conversion: %+v, phases %v", res, phases)
	if !res.Resumed || res.AlreadyPartitioned || res.Copied < 6000 || strings.Join(phases, ",") != "copy,swap,done" {
		t.Errorf("result %+v, phases %v", res, phases)
	}
	if res.LockHeld >= time.Second || res.LockWait > time.Second {
		t.Errorf("the swap waited %s and held its lock %s; want under a second each", res.LockWait, res.LockHeld)
	}
	if ok, err := schema.Partitioned(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil || !ok {
		t.Fatalf("Partitioned after the conversion = %v, %v", ok, err)
	}
	parts, err := schema.Partitions(ctx, db.Pool, schema.WithSchema(db.Schema))
	if err != nil || len(parts) < 8 {
		t.Fatalf("partitions %v (%v), want the seven months of records and more", parts, err)
	}
	var total, inDefault, missing, oldRows int64
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM audit_logs_default),
		(SELECT count(*) FROM audit_logs_unpartitioned o WHERE NOT EXISTS (
			SELECT 1 FROM audit_logs n WHERE n.id = o.id AND n.occurred_at = o.occurred_at AND row(n.*)::text = row(o.*)::text)),
		(SELECT count(*) FROM audit_logs_unpartitioned)`).Scan(&total, &inDefault, &missing, &oldRows); err != nil {
		t.Fatal(err)
	}
	if total != written.Load() || inDefault != 0 || missing != 0 {
		t.Fatalf("audit_logs holds %d records (%d in the default partition), %d of the old table's %d are missing or differ; %d were written",
			total, inDefault, missing, oldRows, written.Load())
	}
	after := verifyAll(t, db, tenants)
	for i, k := range tenants {
		if after[i] < before[i] {
			t.Errorf("chain %q: %d records after, %d before", k, after[i], before[i])
		}
	}
	// A second call has nothing left to do but drop the kept table.
	res, err = schema.PartitionExisting(ctx, db.Pool, schema.PartitionOptions{}, schema.WithSchema(db.Schema))
	if err != nil || !res.AlreadyPartitioned {
		t.Fatalf("second conversion: %+v, %v", res, err)
	}
	var leftovers int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname IN ('audit_logs_unpartitioned', 'audit_logs_pnew')`, db.Schema).Scan(&leftovers); err != nil || leftovers != 0 {
		t.Fatalf("%d tables of the conversion are left (%v)", leftovers, err)
	}
}

// verifyAll verifies the chain of each tenant key and returns their record counts.
func verifyAll(t *testing.T, db *pgtest.DB, keys []string) []int64 {
	t.Helper()
	out := make([]int64, len(keys))
	for i, k := range keys {
		rep, err := core.Verify(context.Background(), db.Pool, k, core.VerifyOptions{Schema: db.Schema})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Rows == 0 {
			t.Fatalf("chain %q: %s", k, fmt.Sprint(rep.Problems))
		}
		out[i] = rep.Rows
	}
	return out
}
