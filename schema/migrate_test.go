package schema_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

func TestMigrationsAreOrderedAndNamed(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %s has version %d, want %d (versions must be contiguous)", m.Name, m.Version, i+1)
		}
		if m.Checksum == "" || m.SQL == "" {
			t.Errorf("migration %s is empty", m.Name)
		}
	}
}

func tableExists(t *testing.T, pool *pgxpool.Pool, schemaName, table string) bool {
	t.Helper()
	var ok bool
	err := pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2)`,
		schemaName, table).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMigrateFreshThenRepeated(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	all, _ := schema.Migrations()

	res, err := schema.Migrate(ctx, db.Pool, schema.WithSchema(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != len(all) || res.Current != all[len(all)-1].Version {
		t.Fatalf("fresh migrate applied %v (current %d), want all %d", res.Applied, res.Current, len(all))
	}
	if !tableExists(t, db.Pool, db.Schema, "audit_logs") {
		t.Fatal("audit_logs missing after migrate")
	}
	checkDesignIndexes(t, db.Pool, db.Schema)
	checkEnumTypes(t, db.Pool, db.Schema)

	res, err = schema.Migrate(ctx, db.Pool, schema.WithSchema(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Current != all[len(all)-1].Version {
		t.Fatalf("repeated migrate applied %v, want nothing", res.Applied)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, schema.VersionTable}.Sanitize()).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(all) {
		t.Fatalf("version table has %d rows, want %d", rows, len(all))
	}
}

// checkDesignIndexes checks that audit_logs has the read indexes of DESIGN.md, by definition.
func checkDesignIndexes(t *testing.T, pool *pgxpool.Pool, schemaName string) {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_logs'`, schemaName)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"USING btree (id, occurred_at)", // the primary key
		"USING btree (tenant_id, occurred_at DESC, id DESC)",
		"USING btree (tenant_id, resource_type, resource_id, occurred_at DESC)",
		"USING btree (tenant_id, actor_id, occurred_at DESC)",
		"USING btree (request_id)",
	} {
		found := false
		for _, d := range defs {
			found = found || strings.HasSuffix(d, want) || strings.Contains(d, want+" WHERE ") || strings.Contains(d, want+" INCLUDE (")
		}
		if !found {
			t.Errorf("no audit_logs index %s; the indexes are:\n%s", want, strings.Join(defs, "\n"))
		}
	}
}

// checkEnumTypes checks the enum types of DESIGN.md and their labels, in order.
func checkEnumTypes(t *testing.T, pool *pgxpool.Pool, schemaName string) {
	t.Helper()
	want := map[string][]string{
		"audit_kind":       {"http", "insert", "update", "delete", "custom"},
		"audit_severity":   {"info", "warning", "error", "critical"},
		"audit_actor_type": {"platform_admin", "tenant_user", "service", "system", "anonymous"},
	}
	for name, labels := range want {
		var got []string
		err := pool.QueryRow(context.Background(), `SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
			FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
			WHERE n.nspname = $1 AND t.typname = $2`, schemaName, name).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, labels) {
			t.Errorf("enum %s has labels %v, want %v", name, got, labels)
		}
	}
}

func TestMigrateConcurrentIntoMissingSchema(t *testing.T) {
	holder := pgtest.NewEmpty(t) // only for its pool and cleanup
	ctx := context.Background()
	target := holder.Schema + "_c"
	t.Cleanup(func() {
		_, _ = holder.Pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{target}.Sanitize()+` CASCADE`)
	})
	const n = 6
	var wg sync.WaitGroup
	results := make([]schema.Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate connections, as separate processes would have.
			conn, err := pgx.Connect(ctx, pgtest.URL())
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(ctx)
			results[i], errs[i] = schema.Migrate(ctx, conn, schema.WithSchema(target))
		}()
	}
	wg.Wait()
	applied := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		applied += len(results[i].Applied)
	}
	all, _ := schema.Migrations()
	if applied != len(all) {
		t.Fatalf("%d concurrent migrators applied %d migrations in total, want exactly %d", n, applied, len(all))
	}
	if !tableExists(t, holder.Pool, target, "audit_logs") {
		t.Fatal("audit_logs missing")
	}
	checkDesignIndexes(t, holder.Pool, target)
	checkEnumTypes(t, holder.Pool, target)
}

func TestMigrateRefusesEditedMigration(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{db.Schema, schema.VersionTable}.Sanitize()+
		` SET checksum = 'edited' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	_, err := schema.Migrate(ctx, db.Pool, schema.WithSchema(db.Schema))
	if !errors.Is(err, schema.ErrChecksumMismatch) {
		t.Fatalf("got %v, want ErrChecksumMismatch", err)
	}
}

func TestMigrateDBAndCreateTables(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	sqlDB, err := sql.Open("pgx", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	res, err := schema.MigrateDB(ctx, sqlDB, schema.WithSchema(db.Schema))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) == 0 || !tableExists(t, db.Pool, db.Schema, "audit_logs") {
		t.Fatalf("MigrateDB applied %v", res.Applied)
	}
	// CreateTables on the same schema is a no-op, not an error.
	if err := schema.CreateTables(ctx, pgtest.URL(), schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidSchemaName(t *testing.T) {
	for _, name := range []string{"1abc", "a-b", "a;drop", "x\"y", string(make([]byte, 64))} {
		if _, err := schema.Migrate(context.Background(), nil, schema.WithSchema(name)); err == nil {
			t.Errorf("schema name %q accepted", name)
		}
	}
}

// TestOneConfigurationDrivesTablesAndWriter: with AUDIT_DB_SCHEMA set, CreateTablesFor creates the
// tables in that schema and core.Open, given the same Config, writes there.
func TestOneConfigurationDrivesTablesAndWriter(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	cfg, err := core.ConfigFromEnvironment([]string{
		"AUDIT_DATABASE_URL=" + pgtest.URL(),
		"AUDIT_DB_SCHEMA=" + db.Schema,
		"AUDIT_FLUSH_INTERVAL=10ms",
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, db.Pool, db.Schema, "audit_logs") {
		t.Fatalf("audit_logs was not created in %s", db.Schema)
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := core.Log(ctx, w, core.Entry{Action: "schema.checked"})
	if err != nil {
		t.Fatal(err)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+` WHERE id = $1`, id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%s.audit_logs holds %d rows with the record's id (%v), want 1", db.Schema, n, err)
	}
	if err := schema.CreateTablesFor(ctx, core.Config{Schema: db.Schema}); !errors.Is(err, schema.ErrNoDatabaseURL) {
		t.Errorf("CreateTablesFor without a database URL = %v, want ErrNoDatabaseURL", err)
	}
}
