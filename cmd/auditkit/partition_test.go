package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// TestMigratePartitionConvertsATableWithRecords: migrate leaves a table that holds records as it
// is and says how to convert it; migrate -partition converts it, printing progress; partitions
// lists the result.
func TestMigratePartitionConvertsATableWithRecords(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+schema.VersionTable+` (version integer PRIMARY KEY, name text NOT NULL,
		checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 6 {
			break
		}
		if _, err := db.Pool.Exec(ctx, m.SQL); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO `+schema.VersionTable+` (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
		SELECT gen_random_uuid(), now() - g * interval '1 day', 'custom', 'x', 'acme' FROM generate_series(0, 99) g`); err != nil {
		t.Fatal(err)
	}
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema}
	code, out, errOut := runCmd(t, nil, append([]string{"migrate"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "not partitioned: convert it online with auditkit migrate -partition") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, append([]string{"migrate", "-partition", "-batch", "30"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "audit_logs is partitioned: 100 records copied") ||
		!strings.Contains(errOut, "partition: copied") || !strings.Contains(errOut, "partition: swapping the tables") {
		t.Fatalf("migrate -partition: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, append([]string{"partitions"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "audit_logs_default") || !strings.Contains(out, "no strays") || strings.Count(out, "audit_logs_p") < 5 {
		t.Fatalf("partitions: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runCmd(t, nil, append([]string{"migrate", "-ahead", "2"}, flags...)...); code != exitUsage {
		t.Fatalf("migrate -ahead without -period: exit %d (%s)", code, errOut)
	}
}

// TestPartitionsReportStraysAndDrop: check and partitions exit 1 for a record no partition
// covers; partitions -drop-before drops and archives the old partitions.
func TestPartitionsReportStraysAndDrop(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema}
	if code, out, errOut := runCmd(t, nil, append([]string{"check"}, flags...)...); code != exitOK {
		t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
	}
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if _, err := schema.CreatePartitions(ctx, db.Pool, month.AddDate(0, -3, 0), month, schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
		SELECT gen_random_uuid(), $1::timestamptz + g * interval '1 day', 'custom'::audit_kind, 'x', 'acme' FROM generate_series(0, 80) g
		UNION ALL SELECT gen_random_uuid(), '2100-01-01', 'custom'::audit_kind, 'x', 'acme'`, month.AddDate(0, -3, 0)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, nil, append([]string{"check"}, flags...)...)
	if code != exitFail || !strings.Contains(out, "default partition: 1 records no partition covers (2100-01-01T00:00:00Z") {
		t.Fatalf("check with a stray: exit %d\n%s%s", code, out, errOut)
	}
	dir := t.TempDir()
	code, out, errOut = runCmd(t, nil, append([]string{"partitions", "-drop-before", month.AddDate(0, -1, 0).Format(time.DateOnly), "-archive", dir}, flags...)...)
	if code != exitFail || strings.Count(out, "dropped audit_logs_p") != 2 || !strings.Contains(out, "archived to "+dir) {
		t.Fatalf("partitions -drop-before: exit %d\n%s%s", code, out, errOut)
	}
	files, err := filepath.Glob(filepath.Join(dir, db.Schema+".audit_logs_p*"))
	if err != nil || len(files) != 4 {
		t.Fatalf("archive files %v (%v), want two archives and two manifests", files, err)
	}
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE occurred_at < $1`, month.AddDate(0, -1, 0)).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d records left before the cutoff (%v)", left, err)
	}
	if code, _, errOut = runCmd(t, nil, append([]string{"partitions", "-archive", dir}, flags...)...); code != exitUsage {
		t.Fatalf("partitions -archive without -drop-before: exit %d (%s)", code, errOut)
	}
}
