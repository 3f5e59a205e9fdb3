package store_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/schema"
)

// monthStart is the first instant of the month k months before the current one (UTC).
func monthStart(k int) time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -k, 0)
}

// monthRecords returns n records of tenant in the month k months back, oldest first.
func monthRecords(tenant string, k, n int) []*core.Record {
	out := make([]*core.Record, n)
	for i := range out {
		out[i] = &core.Record{ID: core.NewID(), OccurredAt: monthStart(k).Add(time.Duration(i+1) * time.Hour), Kind: core.KindCustom,
			Action: "doc.touched", Tenant: core.Tenant{ID: tenant}}
	}
	return out
}

// TestPagesAndExportsCrossPartitions: records of four months, in four partitions, page in order
// across the partition boundaries in both orders, export whole, and a retried batch of records
// already stored (the writer's idempotent retry) stores none twice.
func TestPagesAndExportsCrossPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	if _, err := schema.CreatePartitions(ctx, e.db.Pool, monthStart(3), monthStart(0), schema.WithSchema(e.db.Schema)); err != nil {
		t.Fatal(err)
	}
	var all []*core.Record
	for k := 3; k >= 0; k-- {
		recs := append(monthRecords("acme", k, 9), monthRecords("other", k, 2)...)
		e.write(t, recs...)
		all = append(all, recs[:9]...)
	}
	var parts int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT tableoid) FROM audit_logs`).Scan(&parts); err != nil || parts != 4 {
		t.Fatalf("records are in %d partitions (%v), want 4", parts, err)
	}
	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		var got []uuid.UUID
		q := store.Query{Order: order, Limit: 4}
		for {
			p, err := e.st.List(ctx, store.TenantScope("acme"), q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				got = append(got, r.ID)
			}
			if p.NextCursor == "" {
				break
			}
			q.Cursor = p.NextCursor
		}
		if len(got) != len(all) {
			t.Fatalf("%s: %d records paged, want %d", order, len(got), len(all))
		}
		for i := range got {
			want := all[i]
			if order == store.NewestFirst {
				want = all[len(all)-1-i]
			}
			if got[i] != want.ID {
				t.Fatalf("%s: record %d is %s, want %s", order, i, got[i], want.ID)
			}
		}
	}
	var buf bytes.Buffer
	n, err := e.st.Export(ctx, store.TenantScope("acme"), store.Filter{From: monthStart(2).Add(-time.Minute), To: monthStart(0).Add(5 * time.Hour)},
		store.ExportOptions{Format: store.FormatNDJSON}, &buf)
	if err != nil || n != 9+9+4 || bytes.Count(buf.Bytes(), []byte("\n")) != 22 {
		t.Fatalf("export across three partitions: %d records (%v), want 22", n, err)
	}
	// The same records again: the writer finds them stored and skips them.
	e.write(t, all[:5]...)
	if got := e.db.Count(t); got != 44 {
		t.Fatalf("%d records after the retry, want 44", got)
	}
}

// TestDropPartitionsKeepsHeldRecordsAndChains: dropping the partitions older than a month
// archives them, drops the records of ordinary tenants, moves those of a tenant under legal hold
// and of a tenant whose own window still keeps them to the default partition, anchors the
// chains, and moves where the tenants' retained history begins.
func TestDropPartitionsKeepsHeldRecordsAndChains(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store.Options{SigningKey: priv})
	ctx := context.Background()
	if _, err := schema.CreatePartitions(ctx, e.db.Pool, monthStart(3), monthStart(0), schema.WithSchema(e.db.Schema)); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"held", "plain", "long"}
	for k := 3; k >= 0; k-- {
		for _, tn := range tenants {
			e.write(t, monthRecords(tn, k, 5)...)
		}
		if k == 3 {
			// A checkpoint at seq 5 of each chain, which both archives name.
			if _, err := core.CreateCheckpoints(ctx, e.db.Pool, e.db.Schema, priv, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "long", Name: "Long", RetentionDays: 400}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.PlaceLegalHold(ctx, store.LegalHold{TenantID: "held", Reason: "case 42", PlacedBy: "admin-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Cleanup(ctx, "held", time.Now()); !errors.Is(err, store.ErrLegalHold) {
		t.Fatalf("Cleanup of a held tenant: %v, want ErrLegalHold", err)
	}
	if _, err := e.st.DropPartitions(ctx, monthStart(1), store.PartitionDropOptions{ArchiveDir: "/no/such/dir"}); err == nil {
		t.Fatal("DropPartitions accepted a missing archive directory")
	}

	dir := t.TempDir()
	drops, err := e.st.DropPartitions(ctx, monthStart(1), store.PartitionDropOptions{ArchiveDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(drops) != 2 || drops[0].From != monthStart(3) || drops[1].To != monthStart(1) {
		t.Fatalf("dropped %+v, want the partitions of 3 and 2 months back", drops)
	}
	for _, d := range drops {
		if d.Rows != 15 || d.Kept != 10 {
			t.Errorf("%s: %d rows, %d kept; want 15 and 10", d.Partition, d.Rows, d.Kept)
		}
		checkArchive(t, d, 15)
	}
	count := func(tenant string) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE tenant_id = $1`, tenant).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if h, p, l := count("held"), count("plain"), count("long"); h != 20 || p != 10 || l != 20 {
		t.Fatalf("after the drop: held %d, plain %d, long %d records; want 20, 10, 20", h, p, l)
	}
	rep, err := e.st.DefaultPartition(ctx)
	if err != nil || !rep.Partitioned || rep.Rows != 20 || rep.Held != 10 || rep.Oldest == nil {
		t.Fatalf("default partition: %+v, %v; want 20 rows, 10 held", rep, err)
	}
	for _, tn := range tenants {
		v, err := core.Verify(ctx, e.db.Pool, tn, core.VerifyOptions{Schema: e.db.Schema})
		if err != nil {
			t.Fatal(err)
		}
		if !v.OK {
			t.Errorf("chain %q after the drop: %v", tn, v.Problems)
		}
	}
	r, err := e.st.GetRetention(ctx, "plain")
	if err != nil || r.RetainedFrom == nil || !r.RetainedFrom.Equal(monthStart(1)) || r.LegalHold != nil {
		t.Fatalf("retention of plain: %+v, %v; want retained from %s", r, err, monthStart(1))
	}
	r, err = e.st.GetRetention(ctx, "held")
	if err != nil || r.RetainedFrom != nil || r.LegalHold == nil || r.LegalHold.Reason != "case 42" || r.LegalHold.PlacedBy != "admin-1" {
		t.Fatalf("retention of held: %+v, %v; want the hold and no start", r, err)
	}
	r, err = e.st.GetRetention(ctx, "long")
	if err != nil || r.RetainedFrom != nil || r.RetentionDays != 400 {
		t.Fatalf("retention of long: %+v, %v; want 400 days and no start", r, err)
	}
	holds, err := e.st.LegalHolds(ctx)
	if err != nil || len(holds) != 1 || holds[0].TenantID != "held" {
		t.Fatalf("legal holds %+v, %v", holds, err)
	}
	// Released, the tenant is cleaned up like any other.
	if err := e.st.ReleaseLegalHold(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.ReleaseLegalHold(ctx, "held"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second release: %v, want ErrNotFound", err)
	}
	n, err := e.st.Cleanup(ctx, "held", monthStart(1))
	if err != nil || n != 10 {
		t.Fatalf("cleanup after the release: %d, %v; want 10", n, err)
	}
	if from, err := e.st.RetainedFrom(ctx, "held"); err != nil || !from.Equal(monthStart(1)) {
		t.Fatalf("held retained from %s (%v), want %s", from, err, monthStart(1))
	}
	if v, err := core.Verify(ctx, e.db.Pool, "held", core.VerifyOptions{Schema: e.db.Schema}); err != nil || !v.OK {
		t.Fatalf("chain held after the cleanup: %+v, %v", v, err)
	}
}

// checkArchive checks an archive against its manifest: the file's SHA-256, its lines and the
// chain ranges.
func checkArchive(t *testing.T, d store.PartitionDrop, rows int64) {
	t.Helper()
	mb, err := os.ReadFile(d.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m store.PartitionManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.Archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if m.Rows != rows || m.FileSHA256 != hex.EncodeToString(sum[:]) || m.File != filepath.Base(d.Archive) || !m.From.Equal(d.From) || len(m.Chains) != 3 {
		t.Fatalf("manifest %s does not match its archive: %+v", d.Manifest, m)
	}
	for _, c := range m.Chains {
		if c.Rows != 5 || c.ToSeq-c.FromSeq != 4 || c.Checkpoint == nil || c.Checkpoint.Seq != 5 || len(c.LastRowHash) != 64 || len(c.FirstPrevHash) != 64 {
			t.Errorf("chain range %+v", c)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	var n int64
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["id"] == nil || rec["row_hash"] == nil {
			t.Fatalf("archive line %d: %v (%s)", n+1, err, fmt.Sprint(rec))
		}
		n++
	}
	if err := sc.Err(); err != nil || n != rows {
		t.Fatalf("archive has %d lines (%v), want %d", n, err, rows)
	}
}

// TestApplyRetentionDropsPartitions: a retention pass with DropPartitions drops the partitions
// older than MaxAge and reports each, then deletes nothing more, and the tenants' retained
// history begins at the cutoff.
func TestApplyRetentionDropsPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	if _, err := schema.CreatePartitions(ctx, e.db.Pool, monthStart(3), monthStart(0), schema.WithSchema(e.db.Schema)); err != nil {
		t.Fatal(err)
	}
	for k := 3; k >= 0; k-- {
		e.write(t, monthRecords("a", k, 4)...)
	}
	reports, err := e.st.ApplyRetention(ctx, store.RetentionPolicy{MaxAge: time.Since(monthStart(1)), DropPartitions: true})
	if err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for _, r := range reports {
		if r.Partition != "" {
			dropped = append(dropped, r.Partition)
			if r.Deleted != 4 {
				t.Errorf("%s: %d deleted, want 4", r.Partition, r.Deleted)
			}
		} else if r.Deleted != 0 {
			t.Errorf("the batched delete removed %d records after the drops", r.Deleted)
		}
	}
	if len(dropped) != 2 || e.db.Count(t) != 8 {
		t.Fatalf("dropped %v, %d records left; want two partitions dropped and 8 records", dropped, e.db.Count(t))
	}
	if from, err := e.st.RetainedFrom(ctx, "a"); err != nil || from.Before(monthStart(1)) {
		t.Fatalf("retained from %s (%v), want at least %s", from, err, monthStart(1))
	}
}
