package core_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// testKey is a fixed signing key, so that failures reproduce.
var testKey = ed25519.NewKeyFromSeed([]byte("auditkit verify test key 32 byte"))

var otherKey = ed25519.NewKeyFromSeed([]byte("auditkit other test key 32 bytes"))

func testPub() ed25519.PublicKey { return testKey.Public().(ed25519.PublicKey) }

// signCheckpoints signs a checkpoint (or truncation, kind) of tenant's chain at each seq, chained
// after the newest one stored, and stores them. The hash vouched for is read from the table.
func signCheckpoints(t *testing.T, pool *pgxpool.Pool, priv ed25519.PrivateKey, tenant, kind string, seqs ...int64) []core.Checkpoint {
	t.Helper()
	ctx := context.Background()
	var prev []byte
	var last core.Checkpoint
	var lastHash []byte
	err := pool.QueryRow(ctx, `SELECT tenant_key, kind, seq, row_hash, created_at, prev_checkpoint, key_id, signature
		FROM audit_checkpoints WHERE tenant_key = $1 ORDER BY created_at DESC, seq DESC LIMIT 1`, tenant).
		Scan(&last.TenantKey, &last.Kind, &last.Seq, &lastHash, &last.CreatedAt, &last.PrevCheckpoint, &last.KeyID, &last.Signature)
	if err == nil {
		copy(last.RowHash[:], lastHash)
		prev = last.Hash()
	} else if err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	var out []core.Checkpoint
	for _, seq := range seqs {
		created := time.Now()
		if !created.After(last.CreatedAt) { // the order of creation is the chain's
			created = last.CreatedAt.Add(time.Millisecond)
		}
		cp := core.Checkpoint{TenantKey: tenant, Kind: kind, Seq: seq, CreatedAt: created, PrevCheckpoint: prev}
		col, at := "row_hash", seq
		if kind == core.CheckpointKindTruncation {
			at = seq - 1
		}
		var rh []byte
		if err := pool.QueryRow(ctx, `SELECT `+col+` FROM audit_logs WHERE coalesce(tenant_id, '') = $1 AND seq = $2`, tenant, at).Scan(&rh); err != nil {
			t.Fatalf("hash at seq %d: %v", at, err)
		}
		copy(cp.RowHash[:], rh)
		cp.Sign(priv)
		insertCheckpoint(t, pool, &cp, cp.Seq)
		prev = cp.Hash()
		last = cp
		out = append(out, cp)
	}
	return out
}

func insertCheckpoint(t *testing.T, pool *pgxpool.Pool, cp *core.Checkpoint, seq int64) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO audit_checkpoints (tenant_key, seq, row_hash, kind, created_at, prev_checkpoint, key_id, signature)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, cp.TenantKey, seq, cp.RowHash[:], cp.Kind, cp.CreatedAt, cp.PrevCheckpoint, cp.KeyID, cp.Signature)
	if err != nil {
		t.Fatal(err)
	}
}

func execSQL(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rewriteTail replaces the records of tenant from seq on with forged ones whose hashes are
// recomputed, and moves the head: what a database superuser without the signing key can do.
func rewriteTail(t *testing.T, pool *pgxpool.Pool, tenant string, from, to int64) {
	t.Helper()
	ctx := context.Background()
	execSQL(t, pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq >= $2`, tenant, from)
	var rh []byte
	if err := pool.QueryRow(ctx, `SELECT row_hash FROM audit_logs WHERE tenant_id = $1 AND seq = $2`, tenant, from-1).Scan(&rh); err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	copy(prev[:], rh)
	var rows [][]any
	for seq := from; seq <= to; seq++ {
		var vals []any
		vals, prev = chaintest.Forged(tenant, seq, prev)
		rows = append(rows, vals)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"audit_logs"}, chaintest.Columns, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	execSQL(t, pool, `UPDATE audit_chain_heads SET seq = $2, row_hash = $3 WHERE tenant_key = $1`, tenant, to, prev[:])
}

type found struct {
	Kind string
	Seq  int64
}

// firstOfEach lists the first problem of each kind.
func firstOfEach(rep *core.VerifyReport) []found {
	var out []found
	for _, p := range rep.Problems {
		if !slices.ContainsFunc(out, func(f found) bool { return f.Kind == p.Kind }) {
			out = append(out, found{p.Kind, p.Seq})
		}
	}
	return out
}

func TestVerifyCleanChains(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	heads := map[string][32]byte{}
	for _, tenant := range []string{"acme", "", "globex"} {
		h, err := chaintest.Append(ctx, db.Pool, tenant, 120)
		if err != nil {
			t.Fatal(err)
		}
		heads[tenant] = h
	}
	signCheckpoints(t, db.Pool, testKey, "acme", core.CheckpointKindCheckpoint, 50, 100, 120)
	keys, err := core.ChainTenants(ctx, db.Pool, db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "acme", "globex"}; !slices.Equal(keys, want) {
		t.Fatalf("ChainTenants = %q, want %q", keys, want)
	}
	for tenant, head := range heads {
		var progress []int64
		rep, err := core.Verify(ctx, db.Pool, tenant, core.VerifyOptions{Schema: db.Schema, PublicKey: testPub(),
			Progress: func(n int64) { progress = append(progress, n) }})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || len(rep.Problems) != 0 || rep.Rows != 120 || rep.From != 1 || rep.To != 120 || rep.LastRowHash != head || rep.FirstPrevHash != [32]byte{} {
			t.Errorf("chain %q: %+v", tenant, rep)
		}
		if tenant == "acme" && rep.Checkpoints != 3 {
			t.Errorf("checked %d checkpoints, want 3", rep.Checkpoints)
		}
		if !slices.Equal(progress, []int64{120}) {
			t.Errorf("progress calls %v", progress)
		}
	}
	// A range: seqs 30 to 60 of acme, whose first link is not checked but reported.
	rep, err := core.Verify(ctx, db.Pool, "acme", core.VerifyOptions{Schema: db.Schema, FromSeq: 30, ToSeq: 60, PublicKey: testPub()})
	if err != nil || !rep.OK || rep.Rows != 31 || rep.From != 30 || rep.To != 60 {
		t.Fatalf("range: %+v, %v", rep, err)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"ok":true`) || !strings.Contains(string(b), `"problems":[]`) {
		t.Errorf("JSON: %s, %v", b, err)
	}
	if _, err := core.Verify(ctx, db.Pool, "acme", core.VerifyOptions{Schema: db.Schema, FromSeq: 9, ToSeq: 3}); err == nil {
		t.Error("a reversed range is accepted")
	}
	// An unknown tenant has an empty chain, which is intact.
	rep, err = core.Verify(ctx, db.Pool, "nobody", core.VerifyOptions{Schema: db.Schema})
	if err != nil || !rep.OK || rep.Rows != 0 {
		t.Errorf("unknown tenant: %+v, %v", rep, err)
	}
}

func TestVerifyTampering(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const n = 40
	cases := []struct {
		name   string
		tamper func(t *testing.T, tenant string) // after a clean chain of n records with checkpoints at 10, 20, 30
		opts   core.VerifyOptions
		want   []found // the first problem of each kind, in the order found
	}{
		{name: "clean", want: nil},
		{name: "edited field", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `UPDATE audit_logs SET action = 'invoice.paid' WHERE tenant_id = $1 AND seq = 17`, tenant)
		}, want: []found{{core.ProblemHashMismatch, 17}}},
		{name: "row_hash changed", tamper: func(t *testing.T, tenant string) {
			// Both the record and the link from the next one break.
			execSQL(t, db.Pool, `UPDATE audit_logs SET row_hash = sha256(row_hash) WHERE tenant_id = $1 AND seq = 17`, tenant)
		}, want: []found{{core.ProblemHashMismatch, 17}, {core.ProblemBrokenLink, 18}}},
		{name: "deleted row", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq = 17`, tenant)
		}, want: []found{{core.ProblemGap, 17}}},
		{name: "forged row with a taken seq", tamper: func(t *testing.T, tenant string) {
			insertForged(t, db.Pool, tenant, 17, 16)
		}, want: []found{{core.ProblemDuplicate, 17}}},
		{name: "forged row in between, later seqs moved up", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `UPDATE audit_logs SET seq = seq + 1 WHERE tenant_id = $1 AND seq >= 17`, tenant)
			insertForged(t, db.Pool, tenant, 17, 16)
			execSQL(t, db.Pool, `UPDATE audit_chain_heads SET seq = seq + 1 WHERE tenant_key = $1`, tenant)
		}, want: []found{{core.ProblemHashMismatch, 18}, {core.ProblemBrokenLink, 18}, {core.ProblemCheckpointMismatch, 20}}},
		{name: "two rows swapped", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `UPDATE audit_logs SET seq = CASE seq WHEN 22 THEN 23 ELSE 22 END WHERE tenant_id = $1 AND seq IN (22, 23)`, tenant)
		}, want: []found{{core.ProblemReordered, 22}}},
		{name: "two rows' contents swapped, links kept", tamper: func(t *testing.T, tenant string) {
			// Every column but the seq and hashes trades places: both hashes break, no link does.
			execSQL(t, db.Pool, `UPDATE audit_logs a SET seq = b.seq, prev_hash = a.prev_hash, row_hash = a.row_hash
				FROM audit_logs b WHERE a.tenant_id = $1 AND b.tenant_id = $1 AND a.seq IN (22, 23) AND b.seq IN (22, 23) AND a.seq <> b.seq`, tenant)
			execSQL(t, db.Pool, `UPDATE audit_logs a SET prev_hash = b.prev_hash, row_hash = b.row_hash
				FROM audit_logs b WHERE a.tenant_id = $1 AND b.tenant_id = $1 AND a.seq IN (22, 23) AND b.seq IN (22, 23) AND a.id <> b.id`, tenant)
		}, want: []found{{core.ProblemReordered, 22}}},
		{name: "truncated tail", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq > 36`, tenant)
		}, want: []found{{core.ProblemTruncatedTail, 37}}},
		{name: "head moved", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `UPDATE audit_chain_heads SET row_hash = sha256(row_hash) WHERE tenant_key = $1`, tenant)
		}, want: []found{{core.ProblemHeadMismatch, n}}},
		{name: "rewritten tail, no key", tamper: func(t *testing.T, tenant string) {
			rewriteTail(t, db.Pool, tenant, 25, n+5)
		}, opts: core.VerifyOptions{PublicKey: nil}, want: nil},
		{name: "rewritten tail", tamper: func(t *testing.T, tenant string) {
			rewriteTail(t, db.Pool, tenant, 25, n+5)
		}, want: []found{{core.ProblemCheckpointMismatch, 30}}},
		{name: "truncated tail and head moved back", tamper: func(t *testing.T, tenant string) {
			rewriteTail(t, db.Pool, tenant, 25, 27)
		}, want: []found{{core.ProblemCheckpointMismatch, 30}}},
		{name: "old checkpoint replayed at a later seq", tamper: func(t *testing.T, tenant string) {
			cp := readCheckpoint(t, db.Pool, tenant, 10)
			insertCheckpoint(t, db.Pool, &cp, 35)
		}, want: []found{{core.ProblemCheckpointSignature, 35}, {core.ProblemCheckpointChain, 35}}},
		{name: "checkpoint removed", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `DELETE FROM audit_checkpoints WHERE tenant_key = $1 AND seq = 20`, tenant)
		}, want: []found{{core.ProblemCheckpointChain, 30}}},
		{name: "newest checkpoint removed, a copy held", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `DELETE FROM audit_checkpoints WHERE tenant_key = $1 AND seq = 30`, tenant)
		}, opts: core.VerifyOptions{KnownCheckpoints: []core.Checkpoint{{Seq: 30}}}, want: []found{{core.ProblemCheckpointChain, 30}}},
		{name: "checkpoint signed by another key", tamper: func(t *testing.T, tenant string) {
			signCheckpoints(t, db.Pool, otherKey, tenant, core.CheckpointKindCheckpoint, 38)
		}, want: []found{{core.ProblemCheckpointSignature, 38}}},
		{name: "truncated by retention", tamper: func(t *testing.T, tenant string) {
			signCheckpoints(t, db.Pool, testKey, tenant, core.CheckpointKindTruncation, 13)
			execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq < 13`, tenant)
		}, want: nil},
		{name: "removed without a truncation", tamper: func(t *testing.T, tenant string) {
			execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq < 13`, tenant)
		}, want: []found{{core.ProblemGap, 1}}},
		{name: "first record after a truncation replaced", tamper: func(t *testing.T, tenant string) {
			signCheckpoints(t, db.Pool, testKey, tenant, core.CheckpointKindTruncation, 13)
			execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE tenant_id = $1 AND seq < 13`, tenant)
			execSQL(t, db.Pool, `UPDATE audit_logs SET prev_hash = sha256(prev_hash) WHERE tenant_id = $1 AND seq = 13`, tenant)
		}, want: []found{{core.ProblemHashMismatch, 13}, {core.ProblemCheckpointMismatch, 13}}},
	}
	for i, tc := range cases {
		tenant := fmt.Sprintf("t%02d", i)
		t.Run(tc.name, func(t *testing.T) {
			if _, err := chaintest.Append(ctx, db.Pool, tenant, n); err != nil {
				t.Fatal(err)
			}
			cps := signCheckpoints(t, db.Pool, testKey, tenant, core.CheckpointKindCheckpoint, 10, 20, 30)
			if tc.tamper != nil {
				tc.tamper(t, tenant)
			}
			opts := tc.opts
			opts.Schema = db.Schema
			if opts.PublicKey == nil && !strings.HasSuffix(tc.name, "no key") {
				opts.PublicKey = testPub()
			}
			for j, k := range opts.KnownCheckpoints {
				opts.KnownCheckpoints[j] = cps[slices.IndexFunc(cps, func(c core.Checkpoint) bool { return c.Seq == k.Seq })]
			}
			rep, err := core.Verify(ctx, db.Pool, tenant, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := firstOfEach(rep); !slices.Equal(got, tc.want) || rep.OK != (len(tc.want) == 0) {
				t.Errorf("found %v, want %v", got, tc.want)
			}
			for _, p := range rep.Problems {
				t.Logf("%s at %d: %s", p.Kind, p.Seq, p.Reason)
			}
		})
	}
}

func readCheckpoint(t *testing.T, pool *pgxpool.Pool, tenant string, seq int64) core.Checkpoint {
	t.Helper()
	cp := core.Checkpoint{}
	var rh []byte
	err := pool.QueryRow(context.Background(), `SELECT tenant_key, kind, seq, row_hash, created_at, prev_checkpoint, key_id, signature
		FROM audit_checkpoints WHERE tenant_key = $1 AND seq = $2`, tenant, seq).
		Scan(&cp.TenantKey, &cp.Kind, &cp.Seq, &rh, &cp.CreatedAt, &cp.PrevCheckpoint, &cp.KeyID, &cp.Signature)
	if err != nil {
		t.Fatal(err)
	}
	copy(cp.RowHash[:], rh)
	return cp
}

// insertForged stores a forged record at seq whose prev_hash is the row_hash at prevSeq and whose
// own hash is right.
func insertForged(t *testing.T, pool *pgxpool.Pool, tenant string, seq, prevSeq int64) {
	t.Helper()
	var rh []byte
	if err := pool.QueryRow(context.Background(), `SELECT row_hash FROM audit_logs WHERE tenant_id = $1 AND seq = $2`, tenant, prevSeq).Scan(&rh); err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	copy(prev[:], rh)
	vals, _ := chaintest.Forged(tenant, seq, prev)
	if _, err := pool.CopyFrom(context.Background(), pgx.Identifier{"audit_logs"}, chaintest.Columns, pgx.CopyFromRows([][]any{vals})); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyWriterChains: records stored by the Writer, with fields of every kind (JSON documents
// with escapes and numbers, IPv6, no tenant, HTTP records), checkpointed by CreateCheckpoints,
// verify intact; one edit of a JSON column is then found.
func TestVerifyWriterChains(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 64, FlushInterval: 5 * time.Millisecond})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	tenants := []core.Tenant{{ID: "acme", Slug: "Acme"}, {}, {ID: "globex"}}
	at := time.Date(2026, 3, 1, 12, 30, 15, 123456789, time.UTC)
	for i := range 300 {
		r := &core.Record{Kind: core.KindUpdate, Tenant: tenants[i%3], ResourceType: "invoices", ResourceID: fmt.Sprint(i),
			OccurredAt: at.Add(time.Duration(i) * time.Second),
			Actor:      core.Actor{ID: "u-7", Type: core.ActorTenantUser, Email: "ü@example.com"},
			Diff:       map[string]core.Change{"total": {From: 10, To: 12.5 + float64(i)}, "note": {From: "a\"b\\c\u2028", To: nil}},
			Metadata:   map[string]any{"big": 1e21, "small": 1.5e-7, "list": []any{true, nil, "x"}, "ключ": "значение"},
		}
		if i%5 == 0 {
			r.Kind, r.Method, r.Route, r.Path, r.Status = core.KindHTTP, "POST", "/invoices/:id", "/invoices/"+fmt.Sprint(i), 201
			r.Duration = time.Duration(i) * time.Microsecond
			r.IP = netip.MustParseAddr("2001:db8::1")
			r.Query = map[string][]string{"q": {"a b", "c"}}
		}
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := core.CreateCheckpoints(ctx, db.Pool, db.Schema, testKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"acme", "", "globex"} {
		rep, err := core.Verify(ctx, db.Pool, k, core.VerifyOptions{Schema: db.Schema, PublicKey: testPub()})
		if err != nil || !rep.OK || rep.Rows != 100 || rep.Checkpoints != 1 {
			t.Fatalf("chain %q: %+v, %v", k, rep, err)
		}
	}
	execSQL(t, db.Pool, `UPDATE audit_logs SET metadata = metadata || '{"big": 2}' WHERE tenant_id = 'globex' AND seq = 50`)
	rep, err := core.Verify(ctx, db.Pool, "globex", core.VerifyOptions{Schema: db.Schema, PublicKey: testPub()})
	if err != nil || !slices.Equal(firstOfEach(rep), []found{{core.ProblemHashMismatch, 50}}) {
		t.Fatalf("edited metadata: %+v, %v", rep, err)
	}
}

// TestVerifyProblemCap: past MaxVerifyProblems, problems are counted, not listed, except the
// first of a kind not seen yet.
func TestVerifyProblemCap(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := chaintest.Append(ctx, db.Pool, "acme", 300); err != nil {
		t.Fatal(err)
	}
	execSQL(t, db.Pool, `UPDATE audit_logs SET action = 'x' WHERE seq <= 250`)
	execSQL(t, db.Pool, `DELETE FROM audit_logs WHERE seq > 290`)
	rep, err := core.Verify(ctx, db.Pool, "acme", core.VerifyOptions{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	want := []found{{core.ProblemHashMismatch, 1}, {core.ProblemTruncatedTail, 291}}
	if len(rep.Problems) != core.MaxVerifyProblems+1 || rep.MoreProblems != 150 || rep.OK || !slices.Equal(firstOfEach(rep), want) {
		t.Fatalf("%d problems, %d more, first of each %v", len(rep.Problems), rep.MoreProblems, firstOfEach(rep))
	}
}
